"""SDXL as a model family, on the tiny SDXL-shaped model: its conditioning (both text encoders,
the pooled embedding, add_time_ids), and every feature of the method on it (inversion, ranking,
pose ControlNet, per-frame overrides, the frame cache)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from interp.edits import regenerate
from interp.errors import ModelUnavailable
from interp.models.load import load_bundle
from interp.pose.keypoints import Pose
from interp.rank import build_tiny_clip
from interp.render import Interpolator
from interp.settings import FrameEdit, Settings
from interp.store import FrameStore

FAST = Settings(frames=5, num_inference_steps=8, size=64, candidates=2, prompt="a photo",
                negative_prompt="blurry", guidance_scale=5.0)


@pytest.fixture(scope="module")
def bundle():
    return load_bundle("tiny-sdxl")


def _pose(dx: float) -> Pose:
    points = [[10.0 + 2 * k + dx, 5.0 + 3 * k, 1.0] for k in range(18)]
    return Pose.from_json({"canvas_width": 64, "canvas_height": 64,
                           "people": [{"pose_keypoints_2d": sum(points, [])}]})


def test_condition_is_both_penultimate_states_and_the_pooled_projection(bundle):
    emb = bundle.encode_prompt("a red cat")
    ids = [tok("a red cat", padding="max_length", max_length=77, truncation=True,
               return_tensors="pt").input_ids for tok in (bundle.tokenizer, bundle.tokenizer_2)]
    assert bundle.tokenizer.pad_token_id == 49407 and bundle.tokenizer_2.pad_token_id == 0
    one = bundle.text_encoder(ids[0], output_hidden_states=True).hidden_states[-2]
    two = bundle.text_encoder_2(ids[1], output_hidden_states=True)
    assert emb.shape == (1, 78, 32 + 64)
    torch.testing.assert_close(emb[:, :77], torch.cat([one, two.hidden_states[-2]], -1))
    torch.testing.assert_close(emb[0, 77, :64], two.text_embeds[0])
    assert torch.all(emb[0, 77, 64:] == 0)
    assert torch.all(bundle.encode_prompt("", negative=True) == 0)      # as SDXL's pipelines
    assert not torch.all(bundle.encode_prompt("") == 0)                 # a positive "" is encoded


def test_unet_gets_text_embeds_and_the_time_ids_of_the_latents(bundle):
    seen = []
    hook = bundle.unet.register_forward_pre_hook(
        lambda m, args, kw: seen.append((kw["encoder_hidden_states"], kw["added_cond_kwargs"])),
        with_kwargs=True)
    try:
        emb = torch.cat([bundle.encode_prompt("a"), bundle.encode_prompt("b")])
        bundle.unet_forward(torch.zeros(2, 4, 8, 6), 10, emb)
    finally:
        hook.remove()
    hidden, added = seen[0]
    assert hidden.shape == (2, 77, 96)
    torch.testing.assert_close(added["text_embeds"], emb[:, 77, :64])
    # original (h, w), crop (top, left), target (h, w): the latents' pixel size, never cropped
    assert added["time_ids"].tolist() == [[64, 48, 0, 0, 64, 48]] * 2


def test_render_counts_and_cache(bundle, photo_pair):
    engine = Interpolator(bundle, FrameStore())
    first = engine.render(*photo_pair, FAST)
    # By hand: S = 8, noise 0.30 / 0.55 -> DDIM index 4 (5 steps) for the middle frame, 2 (3 steps)
    # for frames 1 and 3; 2 candidates x 2 (CFG).
    assert first.counts["rows"]["unet"] == (5 + 3 + 3) * 2 * 2
    assert all(np.isfinite(np.asarray(im, dtype=float)).all() for im in first.images)
    again = engine.render(*photo_pair, FAST)
    assert {k: n for k, n in again.counts["rows"].items() if n} == {}
    redo = engine.render(*photo_pair, FAST, regenerate({}, 2, seed=5))
    assert redo.generated == [1, 2, 3]        # the middle frame and its subtree
    finest = engine.render(*photo_pair, FAST, regenerate({}, 3, seed=5))
    assert finest.generated == [3]


def test_inversion_ranking_pose_and_overrides(bundle, photo_pair):
    scorer = build_tiny_clip(counter=bundle.counter)
    engine = Interpolator(bundle, FrameStore(), scorer)
    settings = FAST.replace(invert_steps=2, invert_lr=0.05, rank_positive="sharp", pose=True)
    edits = {1: FrameEdit(prompt="a cat", strength=0.5), 3: FrameEdit(pose=_pose(9).to_json())}
    result = engine.render(*photo_pair, settings, edits, pose_a=_pose(0), pose_b=_pose(20))
    assert result.inversion_steps == 2
    assert all(f.scores is not None and len(f.scores) == 2 for f in result.frames[1:-1])
    assert result.counts["rows"]["controlnet"] == result.counts["rows"]["unet"] - 2 * 2 * 2
    again = engine.render(*photo_pair, settings, edits, pose_a=_pose(0), pose_b=_pose(20))
    assert again.generated == [] and again.inversion_steps == 0
    changed = engine.render(*photo_pair, settings, {**edits, 3: FrameEdit(prompt="a dog")},
                            pose_a=_pose(0), pose_b=_pose(20))
    assert changed.generated == [3]


def test_a_controlnet_of_another_family_is_refused_by_name(tmp_path):
    sd15 = load_bundle("tiny-sd15")
    sd15.controlnet.save_pretrained(tmp_path / "cn15")
    with pytest.raises(ModelUnavailable, match="SD ControlNet.*SDXL"):
        load_bundle("tiny-sdxl", controlnet=str(tmp_path / "cn15"))
    sdxl = load_bundle("tiny-sdxl")
    sdxl.controlnet.save_pretrained(tmp_path / "cnxl")
    with pytest.raises(ModelUnavailable, match="SDXL ControlNet.*model is SD "):
        load_bundle("tiny-sd15", controlnet=str(tmp_path / "cnxl"))


def test_float16_keeps_sdxl_vae_in_float32_without_the_fp16_fix():
    half = load_bundle("tiny-sdxl", dtype="float16")
    assert half.dtype == torch.float16 and half.vae_dtype == torch.float32
    assert load_bundle("tiny-sd15", dtype="float16").vae_dtype == torch.float16
    z = half.encode_images(torch.zeros(1, 3, 64, 64))
    assert z.dtype == torch.float16 and half.decode_latents(z).dtype == torch.float32
