"""interp.gpu_budget: model rows from the plan (counted by hand), seconds, the Space's cap.

The hand counts use S = 10 DDIM steps, noise 0.30 / 0.55: lo = int(3.0) = 3, hi = int(5.5) = 5,
so with 5 frames the middle frame 2 (level 1) starts at DDIM index 5 (6 steps) and frames 1 and 3
(level 2) at index 3 (4 steps); with 3 frames the one in-between frame gets hi (6 steps).
"""
import pytest
from PIL import Image

from interp import gpu_budget as gb
from interp.gpu_budget import Rows, estimate_budget, frames_to_redo, segment_rows, timeline_rows
from interp.settings import AttentionMode, FrameEdit, Scheme, Settings, preset
from interp.timeline import Keyframe, Segment, Timeline

SMALL = Settings(frames=5, num_inference_steps=10, candidates=2, prompt="a photo")
RANK = dict(rank_positive="high quality, detailed", rank_negative="blurry, distorted")


def _keyframes(n):
    return [Keyframe(Image.new("RGB", (64, 64), (40 * k, 0, 0))) for k in range(n)]


def test_rows_of_a_plain_render_by_hand():
    # 2 candidates x 2 (CFG) rows x (6 + 4 + 4) steps; 3 frames x 2 candidates decoded; A, B encoded
    assert segment_rows(SMALL) == Rows(unet=56, vae_decode=6, vae_encode=2)
    assert segment_rows(SMALL.replace(guidance_scale=1.0)) == Rows(unet=28, vae_decode=6, vae_encode=2)
    # the paper's rule: 8 candidates at level 1, 7 at level 2: 2 x (8 x 6 + 7 x 4 x 2) = 208
    assert segment_rows(SMALL.replace(candidates=0)).unet == 208


def test_pose_ranking_and_inversion_add_their_rows():
    rows = segment_rows(SMALL.replace(pose=True, invert_steps=4, **RANK))
    # ControlNet on every denoising row; CLIP scores every candidate; inversion: 4 iterations x
    # (one step on A + one on B) x 2 (CFG) = 16 rows, and 2 augmented images encoded per iteration
    assert rows == Rows(unet=56, controlnet=56, inversion=16, vae_decode=6, vae_encode=2 + 8, clip=6)
    assert segment_rows(SMALL.replace(invert_steps=4), invert=False).inversion == 0


def test_endpoint_attention_rows_per_injected_step_and_batch():
    on = SMALL.replace(attention=AttentionMode.INTERPOLATE, attention_share=0.5)
    # injected steps = ceil(0.5 x steps): 3 for frame 2, 2 for frames 1 and 3; 2 endpoint rows x
    # 2 (CFG) each: 4 x (3 + 2 + 2) = 28 per candidate batch
    assert segment_rows(on) == Rows(unet=56 + 28, endpoint=28, vae_decode=6, vae_encode=2)
    assert segment_rows(on, max_batch=1).endpoint == 56            # two batches of one candidate
    assert segment_rows(on.replace(attention_strength=0.0)).endpoint == 0
    posed = segment_rows(on.replace(pose=True))
    assert posed.controlnet == posed.unet == 84                   # the endpoints carry their poses


def test_only_the_frames_to_make_and_noise_overrides():
    assert segment_rows(SMALL, frames={3}) == Rows(unet=2 * 2 * 4, vae_decode=2, vae_encode=2)
    # frame 1 noised to 0.8 of the schedule: int(10 x 0.8) = 8, 9 steps instead of 4
    assert segment_rows(SMALL, {1: FrameEdit(noise=0.8)}).unet == 2 * 2 * (6 + 9 + 4)


def test_baseline_rows():
    rows = {s: segment_rows(SMALL.replace(scheme=s)) for s in Scheme}
    assert rows[Scheme.INTERPOLATE_ONLY] == Rows(vae_decode=3, vae_encode=2)
    # one candidate; positions 0.25, 0.5, 0.75 -> noise 0.425, 0.55, 0.425 -> indices 4, 5, 4
    assert rows[Scheme.INTERPOLATE_DENOISE].unet == 2 * (5 + 6 + 5)
    assert rows[Scheme.DID].unet == rows[Scheme.DID_INDEPENDENT].unet == 2 * (6 + 4 + 4)


def test_timeline_rows_and_frames_to_redo():
    three = Timeline(_keyframes(3), (Segment(frames=5), Segment(frames=3)))
    # segment 0 as SMALL (56 rows), segment 1 one frame of 6 steps x 2 candidates x 2; 3 keyframes
    assert timeline_rows(three, SMALL) == Rows(unet=56 + 24, vae_decode=6 + 2, vae_encode=3)
    # global frames: segment 0 is 0..4, segment 1 is 4..6; frame 5 is segment 1's middle
    assert frames_to_redo(three, SMALL, 5) == {5}
    assert frames_to_redo(three, SMALL, 2) == {1, 2, 3}
    assert frames_to_redo(three, SMALL, 2, itself=False) == {1, 3}
    assert timeline_rows(three, SMALL, frames={5}) == Rows(unet=24, vae_decode=2, vae_encode=3)
    inverted = timeline_rows(three, SMALL.replace(invert_steps=4), frames={5})  # segment 1's only
    assert (inverted.inversion, inverted.vae_encode) == (16, 3 + 8)
    assert timeline_rows(three, SMALL, edits={5: FrameEdit(noise=0.8)}).unet == 56 + 2 * 2 * 9
    looped = Timeline(_keyframes(3), (Segment(frames=5), Segment(frames=3), Segment(frames=3)), True)
    assert timeline_rows(looped, SMALL) == Rows(unet=56 + 24 + 24, vae_decode=10, vae_encode=3)
    two = Timeline(_keyframes(2), (Segment(frames=5),))
    assert timeline_rows(two, SMALL.replace(invert_steps=4)) == segment_rows(SMALL.replace(invert_steps=4))


def test_nine_frame_middle_redoes_every_in_between():
    two = Timeline(_keyframes(2))
    assert frames_to_redo(two, SMALL.replace(frames=9), 4) == {1, 2, 3, 4, 5, 6, 7}
    with pytest.raises(ValueError, match="out of range"):
        frames_to_redo(two, SMALL.replace(frames=9), 8)
    with pytest.raises(ValueError, match="keyframe"):
        frames_to_redo(Timeline(_keyframes(3)), SMALL, 4)      # keyframe 1 is global frame 4


def test_seconds_scale_with_the_pixels_except_clip():
    assert gb.compute_seconds(Rows(unet=100), "sd", 512, 512) == pytest.approx(100 * 0.025)
    assert gb.compute_seconds(Rows(unet=100), "sd", 1024, 512) == pytest.approx(2 * 100 * 0.025)
    assert gb.compute_seconds(Rows(inversion=10), "sd", 512, 512) == pytest.approx(10 * 3 * 0.025)
    assert gb.compute_seconds(Rows(clip=10), "sd", 1024, 1024) == pytest.approx(10 * 0.01)
    assert gb.compute_seconds(Rows(unet=100), "sdxl", 1024, 1024) == pytest.approx(100 * 0.09)
    assert gb.estimate_seconds(Rows(unet=100), "sd", 512, 512) == pytest.approx(10 + 1.25 * 2.5)
    with pytest.raises(ValueError, match="family='flux'"):
        gb.compute_seconds(Rows(), "flux", 512, 512)


def test_balanced_sd15_render_fits_the_space():
    """By hand: S = 50 -> level indices 27, 23, 19, 15 for 1, 2, 4, 8 frames; 3 candidates x 2:
    6 x (28 + 2 x 24 + 4 x 20 + 8 x 16) = 1704 UNet rows; inversion 100 x 2 x 2 = 400 rows (x3 for
    the backward pass), 2 + 200 encodes; 45 decodes and CLIP scores. Seconds: 42.6 + 30 + 2.7 +
    8.08 + 0.45 = 83.83 of compute, x 1.25 + 10 = 114.79 -> ask for 115 s."""
    settings = preset("balanced", prompt="a photo", **RANK)
    rows = segment_rows(settings)
    assert rows == Rows(unet=1704, inversion=400, vae_decode=45, vae_encode=202, clip=45)
    budget = estimate_budget(rows, "sd", 512, 512, settings)
    assert budget.seconds == pytest.approx(114.7875)
    assert (budget.duration, budget.cap, budget.fits) == (115, 300, True)
    budget.check()


def test_paper_sd15_render_is_refused_with_what_to_lower(monkeypatch):
    """By hand: S = 200 -> indices 110, 93, 76, 60; candidates 8, 7, 6, 5: 2 x (8 x 111 + 2 x 7 x 94
    + 4 x 6 x 77 + 8 x 5 x 61) = 12984 rows (324.6 s); inversion 500 x 4 = 2000 rows (150 s) and
    1002 encodes (40.08 s); 86 decodes (5.16 s), 86 scores (0.86 s): 520.7 x 1.25 + 10 = 660.9 s."""
    settings = preset("paper", prompt="a photo", **RANK)
    rows = segment_rows(settings)
    assert (rows.unet, rows.inversion, rows.vae_encode, rows.vae_decode) == (12984, 2000, 1002, 86)
    budget = estimate_budget(rows, "sd", 512, 512, settings)
    assert budget.seconds == pytest.approx(660.875)
    assert budget.duration == 300 and not budget.fits
    assert budget.problem == (
        "This render needs about 661 s of GPU time (estimated from 14984 UNet rows at 512 x 512), "
        "more than the 300 s this Space allows per request. Lower the frames (17), DDIM steps (200) "
        "or candidates (the paper rule), the inversion iterations (500), the size (512 x 512) to fit.")
    with pytest.raises(gb.GpuBudgetExceeded, match="661 s"):
        budget.check()


def test_the_cap_follows_its_variable(monkeypatch):
    balanced = preset("balanced", prompt="a photo", **RANK)
    rows = segment_rows(balanced)
    monkeypatch.setenv("INTERP_MAX_GPU_SECONDS", "120")
    assert gb.gpu_cap() == 120 and estimate_budget(rows, "sd", 512, 512, balanced).fits
    monkeypatch.setenv("INTERP_MAX_GPU_SECONDS", "100")
    budget = estimate_budget(rows, "sd", 512, 512, balanced)
    assert budget.duration == 100 and "more than the 100 s" in budget.problem
    monkeypatch.setenv("INTERP_MAX_GPU_SECONDS", "301")
    with pytest.raises(ValueError, match="INTERP_MAX_GPU_SECONDS.*ceiling"):
        gb.gpu_cap()


def test_pose_and_attention_are_named_when_they_cost_most():
    settings = SMALL.replace(pose=True, attention=AttentionMode.EXTEND)
    budget = estimate_budget(segment_rows(settings), "sd", 512, 512, settings, cap=10)
    assert budget.problem.endswith("Lower the frames (5), DDIM steps (10) or candidates (2), "
                                   "endpoint attention (turn it off), pose guidance (turn it off), "
                                   "the size (512 x 512) to fit.")


def _measured(counts: dict) -> dict:
    return {k: counts["rows"].get(k, 0) for k in ("unet", "controlnet", "vae_decode", "vae_encode")}


def _predicted(rows: Rows) -> dict:
    return {"unet": rows.unet + rows.inversion, "controlnet": rows.controlnet,
            "vae_decode": rows.vae_decode, "vae_encode": rows.vae_encode}


@pytest.mark.parametrize("scheme", [Scheme.METHOD, Scheme.DID, Scheme.INTERPOLATE_DENOISE])
def test_the_counts_are_what_a_tiny_render_runs(photo_pair, scheme):
    """The rows counted from the plan are the model rows a real render runs (tiny SD 1.5: pose,
    2 inversion iterations, endpoint attention on half the steps, one noise override)."""
    from interp.models.load import load_bundle
    from interp.pose.keypoints import Pose
    from interp.render import Interpolator
    pose = Pose.from_json({"canvas_width": 64, "canvas_height": 64, "people": [{
        "pose_keypoints_2d": sum(([10.0 + 2 * k, 5.0 + 3 * k, 1.0] for k in range(18)), [])}]})
    settings = SMALL.replace(size=64, pose=True, invert_steps=2, invert_lr=0.1, scheme=scheme,
                             attention=AttentionMode.INTERPOLATE, attention_share=0.5)
    edits = {1: FrameEdit(noise=0.8)}
    result = Interpolator(load_bundle("tiny-sd15")).render(*photo_pair, settings, edits,
                                                           pose_a=pose, pose_b=pose)
    assert _measured(result.counts) == _predicted(segment_rows(settings, edits))


def test_the_counts_are_what_a_tiny_timeline_runs(photo_pair):
    from interp.models.load import load_bundle
    from interp.render import Interpolator
    from interp.sequence import render_timeline
    images = [*photo_pair, photo_pair[0].transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    timeline = Timeline([Keyframe(im) for im in images], (Segment(frames=5), Segment(frames=3)))
    settings = SMALL.replace(size=64, invert_steps=1, invert_lr=0.1)
    result = render_timeline(Interpolator(load_bundle("tiny-sd15")), timeline, settings)
    assert _measured(result.counts) == _predicted(timeline_rows(timeline, settings))


def test_request_budget_reads_the_engine_and_the_first_keyframe(photo_pair):
    from interp.models.load import load_bundle
    from interp.render import Interpolator
    engine = Interpolator(load_bundle("tiny-sd15"))
    a, b = photo_pair
    timeline = Timeline([Keyframe(a.resize((300, 200))), Keyframe(b)], (Segment(frames=5),))
    budget = estimate_budget(segment_rows(SMALL), "sd", 128, 64, SMALL)   # long side 128 of 3:2
    assert gb.request_budget(engine, timeline, SMALL.replace(size=128)) == budget
    assert budget.seconds == pytest.approx(10 + 1.25 * (56 * 0.025 + 6 * 0.06 + 2 * 0.04) / 32)
