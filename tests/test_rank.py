"""CLIP ranking (method.md section 6) on a tiny random open_clip model: scores, caching, batching, loading."""
from __future__ import annotations

import hashlib
import threading
from collections import defaultdict

import numpy as np
import pytest
import torch
from hypothesis import given, settings as hsettings, strategies as st
from PIL import Image

from interp.errors import ModelUnavailable
from interp.rank import (
    best,
    SMALL_CLIP, PAPER_CLIP, TINY_CLIP_NAME, ClipScorer, build_tiny_clip, load_clip_scorer,
)

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's published normalisation constants
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
POS, NEG = "high quality, detailed, 2D", "blurry, distorted, 3D render"


def save_clip(scorer, path):
    """Write a scorer's weights as a local file load_clip_scorer reads (.safetensors or torch)."""
    state = {k: v.detach().cpu().contiguous() for k, v in scorer.model.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


class Counter:
    """Records add(name, rows) like interp.models.CallCounter."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = defaultdict(int)
        self.rows: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def add(self, name: str, rows: int) -> None:
        with self._lock:
            self.calls[name] += 1
            self.rows[name] += rows


def _images(n: int, size=(32, 32), seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(n)]


def _text(scorer: ClipScorer, prompt: str) -> torch.Tensor:
    import open_clip

    with torch.no_grad():
        t = scorer.model.encode_text(open_clip.tokenize([prompt]))[0]
    return t / t.norm()


def _direct_cos(scorer: ClipScorer, pixels: torch.Tensor, prompt: str) -> torch.Tensor:
    """cos(img, text) computed straight from encode_image / encode_text."""
    with torch.no_grad():
        img = scorer.model.encode_image(pixels)
    img = img / img.norm(dim=-1, keepdim=True)
    return img @ _text(scorer, prompt)


@pytest.fixture(scope="module")
def tiny() -> ClipScorer:
    return build_tiny_clip()


@pytest.fixture()
def counted() -> tuple[ClipScorer, Counter]:
    counter = Counter()
    return build_tiny_clip(counter=counter), counter


def test_scores_equal_direct_computation(tiny):
    images = _images(5)
    pixels = torch.stack([tiny.preprocess(im) for im in images])
    expected = _direct_cos(tiny, pixels, POS) - _direct_cos(tiny, pixels, NEG)
    got = tiny.score(images, POS, NEG)
    assert len(got) == 5
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5, rtol=0)
    assert best(got) == int(np.argmax(expected.numpy()))


def test_empty_negative_or_positive_drops_that_term(counted):
    scorer, counter = counted
    images = _images(3, seed=1)
    pixels = torch.stack([scorer.preprocess(im) for im in images])
    cos_pos, cos_neg = _direct_cos(scorer, pixels, POS).numpy(), _direct_cos(scorer, pixels, NEG).numpy()
    np.testing.assert_allclose(scorer.score(images, POS, ""), cos_pos, atol=1e-5, rtol=0)
    np.testing.assert_allclose(scorer.score(images, "", NEG), -cos_neg, atol=1e-5, rtol=0)
    assert counter.rows["clip_text"] == 2  # one prompt encoded per pair, never the empty one
    for pos, neg in [("", ""), ("  ", ""), ("", "\n")]:
        with pytest.raises(ValueError, match="both empty"):
            scorer.score(images, pos, neg)


def test_preprocess_resizes_crops_and_normalises(tiny):
    im = _images(1, size=(64, 48), seed=2)[0]
    # Shorter side 48 -> 32 (bicubic): 42 x 32; centre crop 32 x 32 from left = round(10 / 2) = 5.
    small = np.asarray(im.resize((42, 32), Image.BICUBIC).crop((5, 0, 37, 32)), dtype=np.float32) / 255.0
    raw = torch.from_numpy(small).permute(2, 0, 1)[None]
    manual = (raw - torch.tensor(OPENAI_MEAN)[:, None, None]) / torch.tensor(OPENAI_STD)[:, None, None]
    expected = _direct_cos(tiny, manual, POS) - _direct_cos(tiny, manual, NEG)
    unnormalised = _direct_cos(tiny, raw, POS) - _direct_cos(tiny, raw, NEG)
    got = tiny.score([im], POS, NEG)
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5, rtol=0)
    assert abs(got[0] - float(unnormalised[0])) > 1e-4  # the check can tell a missing normalisation


def test_all_images_in_one_batch(counted, monkeypatch):
    scorer, counter = counted
    shapes = []
    original = scorer.model.encode_image

    def spy(pixels, **kwargs):
        shapes.append(tuple(pixels.shape))
        assert not torch.is_grad_enabled()
        return original(pixels, **kwargs)

    monkeypatch.setattr(scorer.model, "encode_image", spy)
    scorer.score(_images(6, size=(40, 40)), POS, NEG)
    assert shapes == [(6, 3, 32, 32)]
    assert (counter.calls["clip"], counter.rows["clip"]) == (1, 6)


def test_text_features_computed_once_per_pair(counted):
    scorer, counter = counted
    images = _images(2)
    first = scorer.score(images, POS, NEG)
    assert (counter.calls["clip_text"], counter.rows["clip_text"]) == (1, 2)
    assert scorer.score(images, POS, NEG) == first
    assert counter.rows["clip_text"] == 2  # cached: no text work the second time
    scorer.score(images, NEG, POS)  # another pair (order matters)
    assert counter.rows["clip_text"] == 4
    assert counter.rows["clip"] == 6


def test_text_cache_is_thread_safe(counted):
    scorer, counter = counted
    images = _images(1)
    threads = [threading.Thread(target=scorer.score, args=(images, POS, NEG)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counter.rows["clip_text"] == 2
    assert counter.rows["clip"] == 4


def test_best_is_first_argmax():
    assert best([0.1, 0.3, 0.3, -1.0]) == 1
    assert best([-2.0]) == 0
    with pytest.raises(ValueError, match="empty"):
        best([])
    with pytest.raises(ValueError, match="finite"):
        best([0.0, float("nan")])


@hsettings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-2, 2, allow_nan=False), min_size=1, max_size=12))
def test_best_property(scores):
    i = best(scores)
    assert scores[i] == max(scores) and max(scores) not in scores[:i]


def test_argument_validation(tiny):
    with pytest.raises(TypeError, match="positive"):
        tiny.score(_images(1), None, NEG)
    with pytest.raises(TypeError, match=r"images\[1\]"):
        tiny.score([_images(1)[0], np.zeros((32, 32, 3))], POS, NEG)
    with pytest.raises(TypeError, match="images"):
        tiny.score(_images(1)[0], POS, NEG)
    assert tiny.score([], POS, NEG) == []


def test_tiny_build_is_deterministic_and_leaves_global_rng(tiny):
    state = torch.get_rng_state()
    again = build_tiny_clip(seed=0)
    other = build_tiny_clip(seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    assert again.identity == tiny.identity != other.identity
    images = _images(3)
    assert again.score(images, POS, NEG) == tiny.score(images, POS, NEG) != other.score(images, POS, NEG)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_local_file_round_trip(tiny, tmp_path, suffix):
    path = save_clip(tiny, tmp_path / f"tiny{suffix}")
    loaded = load_clip_scorer(TINY_CLIP_NAME, str(path))
    images = _images(4, size=(48, 40))
    assert loaded.score(images, POS, NEG) == tiny.score(images, POS, NEG)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.identity == f"open_clip:{TINY_CLIP_NAME}:sha256:{digest}"


@pytest.mark.parametrize("name, pretrained", [SMALL_CLIP, PAPER_CLIP])
@pytest.mark.timeout(60)   # a hang guard, not a timing: failing offline must not wait
def test_offline_hub_weights_fail_fast(monkeypatch, tmp_path, name, pretrained):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailable, match=f"{name}.*{pretrained}.*HF_HUB_OFFLINE"):
        load_clip_scorer(name, pretrained, cache_dir=tmp_path)  # an empty cache: nothing to find


def test_unloadable_requests_name_model_and_cause(tmp_path):
    with pytest.raises(ModelUnavailable, match="'no-such-model'.*not a known"):
        load_clip_scorer("no-such-model", "openai")
    with pytest.raises(ModelUnavailable, match="'ViT-B-32'.*unknown pretrained tag 'nope'"):
        load_clip_scorer("ViT-B-32", "nope")
    with pytest.raises(ModelUnavailable, match="does not exist"):
        load_clip_scorer(TINY_CLIP_NAME, str(tmp_path / "missing.safetensors"))
    wrong = tmp_path / "wrong.safetensors"
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(wrong))
    with pytest.raises(ModelUnavailable, match=f"'{TINY_CLIP_NAME}'.*could not be loaded"):
        load_clip_scorer(TINY_CLIP_NAME, str(wrong))
