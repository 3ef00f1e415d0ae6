"""Pose guidance wired into rendering: per-frame controls, ramp, overrides, photo-style pre-pass."""
import numpy as np
import pytest
import torch

from interp.pose import control as pose_control
from interp.models.load import load_bundle
from interp.pose.keypoints import Pose
from interp.render import Interpolator
from interp.settings import FrameEdit, Settings
from interp.store import FrameStore

SETTINGS = Settings(frames=5, num_inference_steps=10, size=64, candidates=1, prompt="a person",
                    pose=True, control_peak=2.0, guidance_scale=1.0)


def _pose(dx: float) -> Pose:
    points = [[10.0 + 2 * k + dx, 5.0 + 3 * k, 1.0] for k in range(18)]
    points[3] = [0.0, 0.0, 0.0]  # right elbow missing in both
    return Pose.from_json({"canvas_width": 64, "canvas_height": 64,
                           "people": [{"pose_keypoints_2d": sum(points, [])}]})


@pytest.fixture(scope="module")
def bundle():
    return load_bundle("tiny-sd15")


def test_controlnet_sees_each_frames_rendered_pose_with_ramped_scale(bundle, photo_pair):
    pa, pb = _pose(0.0), _pose(20.0)
    seen = []
    hook = bundle.controlnet.register_forward_pre_hook(
        lambda m, args, kw: seen.append(kw["controlnet_cond"][0].float().clone()),
        with_kwargs=True)
    try:
        result = Interpolator(bundle).render(*photo_pair, SETTINGS, pose_a=pa, pose_b=pb)
    finally:
        hook.remove()
    controls = pose_control.frame_controls(bundle, FrameStore(), *photo_pair_resized(photo_pair),
                                           SETTINGS, {}, [0, .25, .5, .75, 1], pa, pb)
    scales = [float(c.scales[0]) for c in controls]
    assert scales == pytest.approx([1.0, 1.5, 2.0, 1.5, 1.0])  # the paper's ramp, peak 2
    # By hand: 5 uniform frames sit at t = i / 4, and pose A and B differ only by 20 px in x, so frame i's
    # keypoint k is at (10 + 2k + 20t, 5 + 3k): the skeleton moves 5 px right per frame. OpenPose draws each
    # joint as a radius-4 dot in its palette colour after the limbs: lit columns span 15 - 4 .. 49 + 4 at
    # t = 0.25; joint 17 (left ear, drawn last) is (255, 0, 85) and joint 2 (right shoulder, not covered:
    # the elbow after it is missing) is (255, 170, 0).
    assert [f.position for f in result.frames] == [0.0, 0.25, 0.5, 0.75, 1.0]
    pixels = {i: (controls[i].images[0].permute(1, 2, 0).numpy() * 255).round().astype(int) for i in (1, 2, 3)}
    for i in (1, 2, 3):
        dx = 5 * i
        assert controls[i].images[0].shape == (3, 64, 64) and pixels[i][0, 0].tolist() == [0, 0, 0]
        lit = np.nonzero(pixels[i].any(axis=-1))[1]
        assert (lit.min(), lit.max()) == (10 + dx - 4, 44 + dx + 4)
        assert pixels[i][5 + 3 * 17, 10 + 2 * 17 + dx].tolist() == [255, 0, 85]
        assert pixels[i][5 + 3 * 2, 10 + 2 * 2 + dx].tolist() == [255, 170, 0]
    for i in (1, 2):                       # the next frame's skeleton is this one, 5 px to the right
        assert np.array_equal(pixels[i + 1][:, 5:], pixels[i][:, :-5]) and not pixels[i + 1][:, :5].any()
    # generation order 2, 1, 3: the first calls carry frame 2's skeleton, and so on
    steps = [f.ddim_index + 1 for f in (result.frames[2], result.frames[1], result.frames[3])]
    firsts = [seen[0], seen[steps[0]], seen[steps[0] + steps[1]]]
    for got, i in zip(firsts, (2, 1, 3)):
        assert torch.allclose(got, controls[i].images[0], atol=1e-6)


def photo_pair_resized(pair):
    from interp.images import prepare_pair
    return prepare_pair(*pair, Settings(size=64), 512)


def test_pose_override_regenerates_only_that_frame_and_descendants(bundle, photo_pair):
    engine = Interpolator(bundle, FrameStore())
    pa, pb = _pose(0.0), _pose(20.0)
    first = engine.render(*photo_pair, SETTINGS, pose_a=pa, pose_b=pb)
    edits = {1: FrameEdit(pose=_pose(12.0).to_json())}
    second = engine.render(*photo_pair, SETTINGS, edits, pose_a=pa, pose_b=pb)
    assert second.generated == [1]
    edits = {2: FrameEdit(pose=_pose(-8.0).to_json())}
    third = engine.render(*photo_pair, SETTINGS, edits, pose_a=pa, pose_b=pb)
    assert third.generated == [1, 2, 3]
    assert not np.array_equal(np.asarray(first.images[2]), np.asarray(third.images[2]))


def test_photo_prepass_runs_when_nobody_is_found(bundle, photo_pair, monkeypatch):
    calls = []

    def fake_detect(image, store, all_people, device="cpu"):
        calls.append(image.size)
        return _pose(0.0) if len(calls) == 2 else Pose.empty(*image.size)
    monkeypatch.setattr(pose_control, "detect_pose_cached", fake_detect)
    before = bundle.counter.snapshot()["rows"]["unet"]
    a, _ = photo_pair_resized(photo_pair)
    pose = pose_control.detect_with_prepass(bundle, a, FrameStore(), False, "cpu")
    assert pose.people and calls == [(64, 64), (64, 64)]
    rows = bundle.counter.snapshot()["rows"]["unet"] - before
    assert rows == 30 * 2  # 30 of 50 DDIM steps, with CFG


def test_pose_guidance_without_detector_weights_fails_with_a_named_error(bundle, photo_pair):
    from interp.pose.keypoints import PoseUnavailable
    with pytest.raises(PoseUnavailable, match="pose-a"):
        Interpolator(bundle).render(*photo_pair, SETTINGS)


def _detect_only_on_photos(original_images):
    """A detector stand-in: nobody in the original inputs, a person in anything else (the pre-pass)."""
    originals = {im.tobytes() for im in original_images}

    def fake(image, all_people=False, *, device="cpu"):
        return Pose.empty(*image.size) if image.tobytes() in originals else _pose(0.0)
    return fake


def test_prepass_is_cached_and_a_repeated_pose_render_makes_no_model_call(bundle, photo_pair,
                                                                          monkeypatch):
    from interp.events import StageProgress
    from interp.pose import detect
    monkeypatch.setattr(detect, "detect_pose", _detect_only_on_photos(photo_pair_resized(photo_pair)))
    engine, events = Interpolator(bundle, FrameStore()), []
    first = engine.render(*photo_pair, SETTINGS, on_event=events.append)
    prepass = [e for e in events if isinstance(e, StageProgress) and e.stage == "pose pre-pass"]
    assert [e.step for e in prepass] == list(range(1, 31)) * 2     # 30 steps for A, then for B
    assert first.counts["rows"]["unet"] > first.expected_counts["unet_rows"]   # the pre-pass ran
    again = engine.render(*photo_pair, SETTINGS)
    assert {k: n for k, n in again.counts["rows"].items() if n} == {}


def test_cancel_during_the_prepass_stops_it_within_a_step(bundle, photo_pair, monkeypatch):
    from interp.errors import Cancelled
    from interp.events import CancelToken, StageProgress
    from interp.pose import detect
    monkeypatch.setattr(detect, "detect_pose", _detect_only_on_photos(photo_pair_resized(photo_pair)))
    token, store = CancelToken(), FrameStore()

    def cancel_at_step_3(event):
        if isinstance(event, StageProgress) and event.stage == "pose pre-pass" and event.step == 3:
            token.cancel()
    before = bundle.counter.snapshot()["calls"]["unet"]
    with pytest.raises(Cancelled):
        Interpolator(bundle, store).render(*photo_pair, SETTINGS, on_event=cancel_at_step_3,
                                           cancel=token)
    assert bundle.counter.snapshot()["calls"]["unet"] - before == 3
