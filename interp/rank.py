"""CLIP ranking of candidate frames (Wang & Golland 2023, section 3.4; method.md section 6).

score(image) = cos(img, text(positive)) - cos(img, text(negative)); the argmax candidate is kept.
open_clip is imported lazily inside functions (importing it takes seconds).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import torch
from PIL import Image

from interp.errors import ModelUnavailable
from interp.hashing import file_sha256
from interp.models.hub import hub_offline

logger = logging.getLogger(__name__)

PAPER_CLIP = ("ViT-L-14", "openai")  # the paper's ranking model (OpenAI CLIP ViT-L/14)
DEFAULT_CLIP = PAPER_CLIP            # what real models rank with unless told otherwise
SMALL_CLIP = ("ViT-B-32", "laion2b_s34b_b79k")  # a smaller choice for small GPUs
TINY_CLIP_NAME = "interp-tiny-clip"  # random tiny model for tests, config in interp/clip_configs/
CONFIG_DIR = Path(__file__).with_name("clip_configs")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
TEXT_CACHE_SIZE = 64  # distinct (positive, negative) pairs kept per scorer

_config_lock = threading.Lock()


class Counter(Protocol):
    """Anything with add(name, rows), e.g. interp.models.CallCounter."""

    def add(self, name: str, rows: int) -> None: ...


class ClipScorer:
    """An open_clip model with its eval preprocessing and tokenizer, scoring images against prompts."""

    def __init__(self, model: torch.nn.Module, preprocess: Callable[[Image.Image], torch.Tensor],
                 tokenizer: Callable[[list[str]], torch.Tensor], device: str | torch.device,
                 identity: str, counter: Counter | None = None, name: str = "") -> None:
        self.model = model.eval().requires_grad_(False)
        self.preprocess = preprocess  # the model's eval transform: resize, crop, RGB, [0,1], mean/std
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.identity = identity
        self.counter = counter
        self.name = name
        self._text_cache: dict[tuple[str, str], tuple[torch.Tensor | None, torch.Tensor | None]] = {}
        self._text_lock = threading.Lock()

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the model's weights (inputs are cast to it)."""
        return next(self.model.parameters()).dtype

    def text_features(self, positive: str, negative: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Unit-norm text embeddings [D] of (positive, negative), None where empty; cached per pair."""
        _check_prompts(positive, negative)
        key = (positive, negative)
        with self._text_lock:
            if key not in self._text_cache:
                if len(self._text_cache) >= TEXT_CACHE_SIZE:
                    self._text_cache.pop(next(iter(self._text_cache)))
                self._text_cache[key] = self._encode_prompts(positive, negative)
            return self._text_cache[key]

    def _encode_prompts(self, positive: str, negative: str) -> tuple[torch.Tensor | None, ...]:
        """Encode the non-empty prompts in one batch."""
        prompts = [p for p in (positive, negative) if p.strip()]
        tokens = self.tokenizer(prompts).to(self.device)
        with torch.no_grad():
            feats = self.model.encode_text(tokens, normalize=True).float()
        if self.counter is not None:
            self.counter.add("clip_text", len(prompts))
        found = iter(feats)
        pos = next(found) if positive.strip() else None
        neg = next(found) if negative.strip() else None
        return pos, neg

    def image_features(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Unit-norm image embeddings [B, D], all images preprocessed and encoded in one batch."""
        _check_images(images)
        batch = torch.stack([self.preprocess(im) for im in images])
        batch = batch.to(self.device, dtype=self.dtype)
        with torch.no_grad():
            feats = self.model.encode_image(batch, normalize=True).float()
        if self.counter is not None:
            self.counter.add("clip", len(images))
        return feats

    def score(self, images: Sequence[Image.Image], positive: str, negative: str) -> list[float]:
        """cos(img, text(positive)) - cos(img, text(negative)) per image (paper section 3.4).

        An empty (or blank) prompt contributes 0: with no negative the score is cos(img, positive),
        with no positive it is -cos(img, negative). Both empty raises ValueError (skip ranking then).
        """
        pos, neg = self.text_features(positive, negative)
        _check_images(images)
        if len(images) == 0:
            return []
        img = self.image_features(images)
        scores = torch.zeros(img.shape[0], device=img.device)
        if pos is not None:
            scores = scores + img @ pos
        if neg is not None:
            scores = scores - img @ neg
        return [float(s) for s in scores.cpu()]


def best(scores: Sequence[float]) -> int:
    """Index of the highest score (the first one on ties): the candidate a render keeps."""
    if len(scores) == 0:
        raise ValueError("scores must not be empty")
    values = [float(s) for s in scores]
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"scores must be finite, got {values!r}")
    return max(range(len(values)), key=values.__getitem__)


def _check_prompts(positive: Any, negative: Any) -> None:
    """Both prompts are strings and at least one is non-blank."""
    for arg, value in (("positive", positive), ("negative", negative)):
        if not isinstance(value, str):
            raise TypeError(f"{arg} must be a str, got {type(value).__name__}: {value!r}")
    if not positive.strip() and not negative.strip():
        raise ValueError("positive and negative prompts are both empty; skip CLIP ranking instead")


def _check_images(images: Any) -> None:
    """A sequence of PIL images."""
    if isinstance(images, (str, bytes, Image.Image)) or not isinstance(images, Sequence):
        raise TypeError(f"images must be a sequence of PIL images, got {type(images).__name__}")
    for i, im in enumerate(images):
        if not isinstance(im, Image.Image):
            raise TypeError(f"images[{i}] must be a PIL image, got {type(im).__name__}")


def register_configs() -> None:
    """Add interp's bundled open_clip model configs (interp/clip_configs/*.json) once."""
    import open_clip

    with _config_lock:
        if TINY_CLIP_NAME not in open_clip.list_models():
            open_clip.add_model_config(CONFIG_DIR)


def _state_sha256(model: torch.nn.Module) -> str:
    """sha256 hex digest of a state dict (names, dtypes, shapes, bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _cached_weights(tag_cfg: dict, cache_dir: str | None) -> str | None:
    """Local path of a pretrained tag's weights if already downloaded (HF cache or ~/.cache/clip)."""
    from huggingface_hub import try_to_load_from_cache

    if tag_cfg.get("file"):
        return tag_cfg["file"] if os.path.isfile(tag_cfg["file"]) else None
    if tag_cfg.get("hf_hub"):
        repo_id, filename = os.path.split(tag_cfg["hf_hub"])  # as open_clip.pretrained.download_pretrained
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        if filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
        for candidate in names:
            found = try_to_load_from_cache(repo_id, candidate, cache_dir=cache_dir)
            if isinstance(found, str):
                return found
    if tag_cfg.get("url"):
        local = Path(cache_dir or "~/.cache/clip").expanduser() / os.path.basename(tag_cfg["url"])
        return str(local) if local.is_file() else None
    return None


def _resolve(name: str, pretrained: str, cache_dir: str | None) -> tuple[str, dict[str, Any]]:
    """Check that `pretrained` (tag or file) can load without blocking; return (identity, create kwargs)."""
    import open_clip

    if name not in open_clip.list_models():
        raise ModelUnavailable(f"CLIP model {name!r} is not a known open_clip config "
                               f"(e.g. {PAPER_CLIP[0]!r}, {SMALL_CLIP[0]!r}, {TINY_CLIP_NAME!r})")
    if pretrained.endswith(WEIGHT_SUFFIXES) or os.sep in pretrained or os.path.isfile(pretrained):
        if not os.path.isfile(pretrained):
            raise ModelUnavailable(f"CLIP {name!r}: weights file {pretrained!r} does not exist")
        return f"open_clip:{name}:sha256:{file_sha256(pretrained)}", {}
    tag_cfg = open_clip.get_pretrained_cfg(name, pretrained)
    if not tag_cfg:
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise ModelUnavailable(f"CLIP {name!r}: unknown pretrained tag {pretrained!r} (known: {tags})")
    if hub_offline() and _cached_weights(tag_cfg, cache_dir) is None:
        raise ModelUnavailable(f"CLIP {name!r} / {pretrained!r}: weights are not in the local cache and "
                               "HF_HUB_OFFLINE is set; download them once online or pass a local "
                               "weights file")
    # Tags trained with QuickGELU (e.g. OpenAI's) need it forced on the plain config (open_clip 3.x).
    return f"open_clip:{name}:{pretrained}", {"force_quick_gelu": bool(tag_cfg.get("quick_gelu", False))}


def load_clip_scorer(name: str = DEFAULT_CLIP[0], pretrained: str | os.PathLike = DEFAULT_CLIP[1],
                     device: str | torch.device = "cpu", counter: Counter | None = None,
                     cache_dir: str | os.PathLike | None = None) -> ClipScorer:
    """Load an open_clip model by config name and a pretrained tag or a local .safetensors/.bin/.pt file.

    Raises ModelUnavailable naming the model and the cause. With HF_HUB_OFFLINE set and the tag's weights
    not in the cache (cache_dir, else the HF cache / ~/.cache/clip) it fails at once, touching no network.
    """
    import open_clip

    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty str, got {name!r}")
    if not isinstance(pretrained, (str, os.PathLike)) or not str(pretrained):
        raise ValueError(f"pretrained must be a tag or a file path, got {pretrained!r}")
    pretrained = os.fspath(pretrained)
    register_configs()
    cache_dir = os.fspath(cache_dir) if cache_dir is not None else None
    identity, kwargs = _resolve(name, pretrained, cache_dir)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, device=device, cache_dir=cache_dir, **kwargs)
        tokenizer = open_clip.get_tokenizer(name, cache_dir=cache_dir)
    except Exception as exc:  # noqa: BLE001 - re-raised as the library's named error, with the cause
        raise ModelUnavailable(f"CLIP {name!r} / {pretrained!r} could not be loaded: {exc}") from exc
    logger.info("loaded CLIP %s", identity)
    return ClipScorer(model, preprocess, tokenizer, device, identity, counter, name=name)


def build_tiny_clip(device: str | torch.device = "cpu", counter: Counter | None = None,
                    seed: int = 0) -> ClipScorer:
    """A tiny random open_clip model (interp-tiny-clip, 32x32 images), deterministic, offline; for tests."""
    import open_clip

    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    register_configs()
    with torch.random.fork_rng(devices=[]):  # the global RNG is left untouched
        torch.manual_seed(seed)
        model, _, preprocess = open_clip.create_model_and_transforms(TINY_CLIP_NAME, pretrained=None)
    model = model.to(device)
    identity = f"open_clip:{TINY_CLIP_NAME}:sha256:{_state_sha256(model)}"
    tokenizer = open_clip.get_tokenizer(TINY_CLIP_NAME)
    return ClipScorer(model, preprocess, tokenizer, device, identity, counter, name=TINY_CLIP_NAME)
