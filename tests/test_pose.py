"""Pose guidance (method.md sec. 5): JSON, rescaling, interpolation, ramp, drawing, detection adapter."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from interp.errors import InputError, ModelUnavailable
from interp.pose.keypoints import KEYPOINT_NAMES, MAX_PEOPLE, MISSING, Pose, PoseUnavailable, control_scales, interpolate_pose, pose_path

K = {name: k for k, name in enumerate(KEYPOINT_NAMES)}

# The standard OpenPose body palette (RGB), one colour per keypoint and per limb, as in ControlNet.
PALETTE = [(255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
           (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
           (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85)]


def person(**joints):
    """A person with the named joints at (x, y, c); every other joint missing."""
    return tuple(joints.get(name, MISSING) for name in KEYPOINT_NAMES)


def flat(p):
    return [v for kp in p for v in kp]


def doc(people, width=512, height=512):
    return {"canvas_width": width, "canvas_height": height,
            "people": [{"pose_keypoints_2d": list(p)} for p in people]}


# ---------------------------------------------------------------- JSON


@st.composite
def valid_poses(draw):
    w, h = draw(st.integers(1, 4096)), draw(st.integers(1, 4096))

    def keypoint():
        if draw(st.booleans()):
            x = draw(st.one_of(st.integers(0, w), st.floats(0, w)))
            y = draw(st.one_of(st.integers(0, h), st.floats(0, h)))
            c = draw(st.one_of(st.integers(1, 3), st.floats(0, 5, exclude_min=True)))
            return (x, y, c)
        finite = st.one_of(st.integers(-5, 5000), st.floats(allow_nan=False, allow_infinity=False))
        return (draw(finite), draw(finite), draw(st.sampled_from([0, 0.0])))

    n = draw(st.integers(0, 3))
    return Pose(w, h, tuple(tuple(keypoint() for _ in range(18)) for _ in range(n)))


@settings(max_examples=40, deadline=None)
@given(valid_poses())
def test_json_round_trip_is_exact(pose):
    text = json.dumps(pose.to_json())
    back = Pose.from_json(text)
    assert back == pose
    assert json.dumps(back.to_json()) == text          # ints stay ints, floats keep every bit
    assert Pose.from_json(pose.to_json()) == pose


def test_from_json_ignores_extra_fields_and_keeps_values():
    p = person(nose=(10, 20.5, 0.9), neck=(11.25, 40, 1))
    obj = {"version": 1.3, "canvas_width": 64, "canvas_height": 48,
           "people": [{"pose_keypoints_2d": flat(p), "hand_left_keypoints_2d": [1, 2, 3],
                       "face_keypoints_2d": [], "person_id": [-1]}]}
    pose = Pose.from_json(obj)
    assert (pose.canvas_width, pose.canvas_height) == (64, 48)
    assert pose.people == (p,)
    assert pose.to_json() == {"canvas_width": 64, "canvas_height": 48,
                              "people": [{"pose_keypoints_2d": flat(p)}]}


def test_missing_keypoint_may_sit_outside_the_canvas():
    p = person(nose=(10, 10, 1), neck=(-1, -1, 0))
    assert Pose.from_json(doc([flat(p)], 32, 32)).people[0][1] == (-1, -1, 0)


GOOD = flat(person(nose=(10, 20, 1), neck=(30, 40, 1)))


def _with(index, value):
    values = list(GOOD)
    values[index] = value
    return doc([values])


INVALID = [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be an object"),
    (42, "must be an object"),
    ({"canvas_height": 8, "people": []}, "canvas_width is missing"),
    ({"canvas_width": 8, "people": []}, "canvas_height is missing"),
    ({"canvas_width": 0, "canvas_height": 8, "people": []}, "canvas_width must be a positive integer"),
    ({"canvas_width": 8, "canvas_height": 7.5, "people": []}, "canvas_height must be a positive integer"),
    ({"canvas_width": "8", "canvas_height": 8, "people": []}, "canvas_width must be a positive integer"),
    ({"canvas_width": True, "canvas_height": 8, "people": []}, "canvas_width must be a positive integer"),
    ({"canvas_width": 8, "canvas_height": 8}, "people is missing"),
    ({"canvas_width": 8, "canvas_height": 8, "people": {}}, "people must be a list"),
    (doc([GOOD] * (MAX_PEOPLE + 1)), f"people has {MAX_PEOPLE + 1} entries; at most {MAX_PEOPLE}"),
    ({"canvas_width": 8, "canvas_height": 8, "people": [[1, 2]]}, "people[0] must be an object"),
    ({"canvas_width": 8, "canvas_height": 8, "people": [{}]}, "people[0].pose_keypoints_2d is missing"),
    ({"canvas_width": 8, "canvas_height": 8, "people": [{"pose_keypoints_2d": "1,2"}]},
     "people[0].pose_keypoints_2d must be a list"),
    (doc([GOOD, GOOD[:51]]),
     "people[1].pose_keypoints_2d has 51 numbers; expected 54 (18 keypoints x 3)"),
    (doc([GOOD + [0, 0, 0]]), "people[0].pose_keypoints_2d has 57 numbers; expected 54"),
    (_with(4, "40"), "people[0].pose_keypoints_2d[4] (neck y) must be a number"),
    (_with(3, True), "people[0].pose_keypoints_2d[3] (neck x) must be a number"),
    (_with(0, None), "people[0].pose_keypoints_2d[0] (nose x) must be a number"),
    (_with(8, [1]), "people[0].pose_keypoints_2d[8] (r_shoulder c) must be a number"),
    (_with(1, float("nan")), "people[0].pose_keypoints_2d[1] (nose y) must be finite"),
    (json.dumps(_with(3, 1)).replace("[10, 20, 1, 1,", "[10, 20, 1, Infinity,"),
     "people[0].pose_keypoints_2d[3] (neck x) must be finite"),
    (json.dumps(_with(3, 1)).replace("[10, 20, 1, 1,", "[10, 20, 1, NaN,"),
     "people[0].pose_keypoints_2d[3] (neck x) must be finite"),
    (json.dumps(_with(3, 1)).replace("[10, 20, 1, 1,", "[10, 20, 1, 1e999,"),
     "people[0].pose_keypoints_2d[3] (neck x) must be finite"),
    (_with(3, 513), "people[0].pose_keypoints_2d[3] (neck x) = 513 is outside the canvas width 0..512"),
    (_with(4, -0.5), "people[0].pose_keypoints_2d[4] (neck y) = -0.5 is outside the canvas height"),
    (_with(5, -1), "people[0].pose_keypoints_2d[5] (neck c) = -1 is a negative confidence"),
]


@pytest.mark.parametrize("obj, message", INVALID)
def test_invalid_json_is_rejected_naming_the_field(obj, message):
    with pytest.raises(InputError) as info:
        Pose.from_json(obj)
    assert isinstance(info.value, ValueError)
    assert message in str(info.value)


def test_json_text_string_is_parsed():
    assert Pose.from_json(json.dumps(doc([GOOD]))) == Pose.from_json(doc([GOOD]))


def test_constructor_validates_too():
    with pytest.raises(ValueError, match="canvas_width must be a positive integer"):
        Pose(0, 8)
    with pytest.raises(ValueError, match=r"people\[0\] has 17 keypoints; expected 18"):
        Pose(8, 8, (person()[:17],))
    with pytest.raises(ValueError, match=r"people\[0\]\[1\] \(neck x\) = 9 is outside"):
        Pose(8, 8, (person(neck=(9, 1, 1)),))
    lists = Pose(8, 8, [[list(kp) for kp in person(nose=(1, 2, 1))]])
    assert lists.people == (person(nose=(1, 2, 1)),)      # sequences become hashable tuples
    hash(lists)


# ---------------------------------------------------------------- rescale, interpolation, path


def test_rescaled_scales_coordinates_and_keeps_missing():
    pose = Pose(100, 50, (person(nose=(25, 10, 0.5), neck=(100, 50, 1), l_ear=(7, 9, 0)),))
    out = pose.rescaled(200, 150)
    assert (out.canvas_width, out.canvas_height) == (200, 150)
    assert out.people[0][K["nose"]] == (50.0, 30.0, 0.5)
    assert out.people[0][K["neck"]] == (200.0, 150.0, 1)
    assert out.people[0][K["l_ear"]] == (7, 9, 0)
    assert pose.rescaled(100, 50) is pose
    assert out.rescaled(100, 50) == pose
    with pytest.raises(ValueError, match="width"):
        pose.rescaled(0, 10)


def test_empty_pose():
    pose = Pose.empty(64, 32)
    assert pose.people == () and pose.to_json() == {"canvas_width": 64, "canvas_height": 32,
                                                    "people": []}


A = Pose(100, 100, (person(nose=(10, 20, 1.0), neck=(50, 50, 0.5), l_wrist=(90, 90, 1)),
                    person(nose=(1, 1, 1))))
B = Pose(100, 100, (person(nose=(30, 60, 0.5), neck=(50, 50, 1.0), r_wrist=(5, 5, 1)),))


def test_interpolation_moves_shared_keypoints_linearly():
    mid = interpolate_pose(A, B, 0.25)
    assert len(mid.people) == 1                                    # min(2, 1) people
    assert mid.people[0][K["nose"]] == (15.0, 30.0, 0.875)         # 0.75 * a + 0.25 * b
    assert mid.people[0][K["neck"]] == (50.0, 50.0, 0.625)


@pytest.mark.parametrize("t", [0.0, 0.3, 0.5, 1.0])
def test_keypoints_missing_in_either_vanish_in_every_frame(t):
    frame = interpolate_pose(A, B, t)
    for name in ("l_wrist", "r_wrist", "r_eye"):
        assert frame.people[0][K[name]] == MISSING


def test_endpoints_are_exact():
    a = Pose(640, 480, (person(nose=(0.1, 0.2, 0.3), neck=(123.456, 7.89, 0.99)),))
    b = Pose(640, 480, (person(nose=(600.7, 400.1, 0.7), neck=(0.3, 479.99, 0.01)),))
    for name in ("nose", "neck"):
        assert interpolate_pose(a, b, 0).people[0][K[name]] == a.people[0][K[name]]
        assert interpolate_pose(a, b, 1).people[0][K[name]] == b.people[0][K[name]]


@settings(max_examples=50, deadline=None)
@given(st.floats(0, 512), st.floats(0, 512), st.floats(0, 1), st.floats(0, 1))
def test_interpolated_coordinate_is_the_lerp(xa, xb, t, s):
    a = Pose(512, 512, (person(nose=(xa, 0, 1)),))
    b = Pose(512, 512, (person(nose=(xb, 512, 1)),))
    x, y, c = interpolate_pose(a, b, t).people[0][0]
    assert x == pytest.approx(xa + t * (xb - xa), abs=1e-9)
    assert y == pytest.approx(512 * t) and c == pytest.approx(1.0)
    lo, hi = sorted((t, s))                                         # monotone in t
    x_lo, x_hi = (interpolate_pose(a, b, u).people[0][0][0] for u in (lo, hi))
    assert (x_hi - x_lo) * (xb - xa) >= -1e-9


def test_interpolation_rescales_b_to_a_canvas():
    a = Pose(100, 100, (person(nose=(0, 0, 1)),))
    b = Pose(200, 400, (person(nose=(200, 400, 1)),))
    mid = interpolate_pose(a, b, 0.5)
    assert (mid.canvas_width, mid.canvas_height) == (100, 100)
    assert mid.people[0][0] == (50.0, 50.0, 1.0)


def test_interpolation_validates_t():
    with pytest.raises(ValueError, match="t must be in"):
        interpolate_pose(A, B, 1.5)
    with pytest.raises(TypeError):
        interpolate_pose(A, {"people": []}, 0.5)


def test_pose_path_interpolates_and_applies_overrides():
    positions = [0.0, 0.25, 0.5, 1.0]
    edited = Pose(50, 50, (person(neck=(25, 25, 1)),))
    path = pose_path(A, B, positions, {2: edited})
    assert len(path) == 4
    assert path[0].people[0][K["nose"]] == (10, 20, 1.0)
    assert path[1] == interpolate_pose(A, B, 0.25)
    assert path[2] == edited.rescaled(100, 100)
    assert path[2].people[0][K["neck"]] == (50.0, 50.0, 1)
    assert path[3].people[0][K["nose"]] == (30, 60, 0.5)
    with pytest.raises(ValueError, match="overrides key 4"):
        pose_path(A, B, positions, {4: edited})
    with pytest.raises(ValueError, match="positions"):
        pose_path(A, B, [0.0, 1.2], {})


# ---------------------------------------------------------------- ControlNet scale ramp


def test_control_scale_ramp_values():
    f = [0.0, 0.25, 0.5, 0.75, 1.0]
    np.testing.assert_allclose(control_scales(f, 1.5, 1.0), [1.0, 1.25, 1.5, 1.25, 1.0])
    np.testing.assert_allclose(control_scales(f, 3.5, 2.0), [2.0, 4.5, 7.0, 4.5, 2.0])
    np.testing.assert_allclose(control_scales(f, 1.0, 0.8), [0.8] * 5)


@given(st.floats(0, 1), st.floats(0, 10))
def test_control_scale_ramp_is_linear_on_each_half(f, peak):
    expected = 1.0 + 2.0 * min(f, 1.0 - f) * (peak - 1.0)
    assert control_scales([f], peak, 1.0)[0] == pytest.approx(expected, abs=1e-9)


def test_control_scales_validate():
    with pytest.raises(ValueError, match="positions"):
        control_scales([0.5, -0.1], 1.5, 1.0)
    with pytest.raises(ValueError, match="peak"):
        control_scales([0.5], float("nan"), 1.0)
    with pytest.raises(ValueError, match="global_scale"):
        control_scales([0.5], 1.5, -1.0)


# ---------------------------------------------------------------- drawing (controlnet_aux, no weights)


DRAWN = Pose(128, 128, (person(nose=(64, 16, 1), neck=(64, 60, 1), r_shoulder=(30, 60, 1),
                               l_shoulder=(98, 60, 1), l_elbow=(110, 100, 1), l_wrist=(120, 124, 1)),))


def test_render_draws_palette_joints_on_black():
    from interp.pose.draw import render_pose

    image = render_pose(DRAWN, 128, 128)
    assert image.mode == "RGB" and image.size == (128, 128)
    pixels = np.asarray(image)
    for name in ("nose", "neck", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist"):
        x, y, _ = DRAWN.people[0][K[name]]
        assert tuple(pixels[int(y), int(x)]) == PALETTE[K[name]], name
    assert tuple(pixels[38, 64]) == (0, 0, 153)            # neck-nose limb: palette[12] * 0.6
    assert tuple(pixels[60, 47]) == (153, 0, 0)            # neck-r_shoulder limb: palette[0] * 0.6
    for y, x in [(0, 0), (127, 0), (100, 20), (5, 120)]:
        assert tuple(pixels[y, x]) == (0, 0, 0)
    lit = pixels.any(axis=2)
    assert 0.05 < lit.mean() < 0.4                          # a skeleton, not a filled image


def test_render_missing_joint_draws_nothing():
    from interp.pose.draw import render_pose

    joints = list(DRAWN.people[0])
    joints[K["l_wrist"]] = MISSING
    without = np.asarray(render_pose(Pose(128, 128, (tuple(joints),)), 128, 128))
    with_wrist = np.asarray(render_pose(DRAWN, 128, 128))
    assert tuple(without[124, 120]) == (0, 0, 0)
    assert tuple(without[112, 115]) == (0, 0, 0)           # no l_elbow-l_wrist limb either
    assert tuple(with_wrist[112, 115]) != (0, 0, 0)
    assert np.array_equal(without[:90], with_wrist[:90])   # the rest is unchanged


def test_render_rescales_and_draws_every_person():
    from interp.pose.draw import render_pose

    pose = Pose(100, 100, (person(nose=(25, 50, 1)), person(r_eye=(75, 20, 1))))
    pixels = np.asarray(render_pose(pose, 200, 60))
    assert pixels.shape == (60, 200, 3)
    assert tuple(pixels[30, 50]) == PALETTE[K["nose"]]
    assert tuple(pixels[12, 150]) == PALETTE[K["r_eye"]]
    assert not pixels[:, 80:120].any()
    assert not np.asarray(render_pose(Pose.empty(10, 10), 32, 32)).any()


@pytest.mark.parametrize("x, y", [(29, 57), (29.7, 57.2), (70, 14), (13, 51)])
def test_render_centres_each_joint_on_its_pixel(x, y):
    from interp.pose.draw import render_pose

    lit = np.argwhere(np.asarray(render_pose(Pose(100, 100, (person(r_hip=(x, y, 1)),)), 100, 100))
                      .any(axis=2))
    assert lit.mean(axis=0).tolist() == [int(y), int(x)]      # a filled circle around (x, y)


def test_control_image_tensor():
    import torch
    from interp.pose.draw import control_image, render_pose

    cond = control_image(DRAWN, 64, 32)
    assert cond.shape == (3, 32, 64) and cond.dtype == torch.float32
    assert 0.0 <= float(cond.min()) and float(cond.max()) <= 1.0
    expected = np.asarray(render_pose(DRAWN, 64, 32), dtype=np.float32).transpose(2, 0, 1) / 255.0
    np.testing.assert_array_equal(cond.numpy(), expected)
    assert torch.equal(cond[:, 4, 32], torch.tensor([1.0, 0.0, 0.0]))   # nose at (32, 4), red


# ---------------------------------------------------------------- detector output conversion


def _result(*points):
    """A controlnet_aux PoseResult; points maps keypoint index -> (x, y[, score]) normalised."""
    from controlnet_aux.open_pose import BodyResult, Keypoint, PoseResult

    by_index = dict(points)
    keypoints = [Keypoint(*by_index[k]) if k in by_index else None for k in range(18)]
    return PoseResult(BodyResult(keypoints, 1.0, len(by_index)), None, None, None)


def test_pose_from_results_keeps_largest_person_in_pixels():
    from interp.pose.detect import pose_from_results

    small = _result((0, (0.1, 0.1)), (1, (0.2, 0.2)))                      # 20 x 10 px
    large = _result((0, (0.5, 0.25, 0.7)), (8, (0.9, 0.75)), (13, (0.6, 1.0)))  # 80 x 75 px
    pose = pose_from_results([small, large], 200, 100)
    assert (pose.canvas_width, pose.canvas_height) == (200, 100)
    assert len(pose.people) == 1
    got = pose.people[0]
    assert got[0] == (100.0, 25.0, 0.7)
    assert got[8] == (180.0, 75.0, 1.0)
    assert got[13] == (120.0, 100.0, 1.0)
    assert got[1] == MISSING


def test_pose_from_results_all_people_left_to_right():
    from interp.pose.detect import pose_from_results

    right = _result((0, (0.8, 0.1)), (1, (0.9, 0.9)))
    left = _result((0, (0.1, 0.5)), (1, (0.2, 0.6)))
    middle = _result((0, (0.4, 0.1)), (1, (0.6, 0.9)))
    nobody = _result()
    pose = pose_from_results([right, nobody, left, middle], 100, 100, all_people=True)
    assert [p[0][0] for p in pose.people] == pytest.approx([10.0, 40.0, 80.0])
    assert pose_from_results([nobody], 64, 64) == Pose.empty(64, 64)
    assert pose_from_results([], 64, 64, all_people=True) == Pose.empty(64, 64)
    many = [_result((0, (i / 20, 0.0)), (1, (i / 20 + 0.01 * (1 + i % 3), 0.5))) for i in range(12)]
    assert len(pose_from_results(many, 100, 100, all_people=True).people) == MAX_PEOPLE


# ---------------------------------------------------------------- detection and its cache


@pytest.mark.timeout(60)   # a hang guard, not a timing: failing offline must not wait
def test_detect_pose_offline_fails_fast(monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants, try_to_load_from_cache

    from interp.pose.detect import detect_pose

    if isinstance(try_to_load_from_cache("lllyasviel/Annotators", "body_pose_model.pth"), str):
        pytest.skip("the OpenPose body weights are cached here")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert huggingface_hub.constants.is_offline_mode()
    with pytest.raises(PoseUnavailable) as info:
        detect_pose(Image.new("RGB", (64, 64)))
    assert isinstance(info.value, ModelUnavailable)
    message = str(info.value)
    assert "detection weights are unavailable" in message
    assert "OpenPose JSON" in message and "--pose-a" in message


class FakeStore:
    def __init__(self):
        self.records, self.gets, self.puts = {}, 0, 0

    def get(self, key):
        self.gets += 1
        return self.records.get(key)

    def put(self, key, record):
        self.puts += 1
        self.records[key] = record


def _count_detections(monkeypatch):
    from interp.pose import detect

    calls = []

    def fake_detect(image, all_people=False, *, device="cpu"):
        calls.append((image.getpixel((0, 0)), all_people))
        return Pose(image.width, image.height, (person(nose=(1.5, 2, 0.9)),) * (2 if all_people else 1))

    monkeypatch.setattr(detect, "detect_pose", fake_detect)
    return calls


def test_detect_pose_cached_detects_each_input_once(monkeypatch):
    from interp.pose.detect import detect_pose_cached

    calls = _count_detections(monkeypatch)
    store = FakeStore()
    red, blue = Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")
    first = detect_pose_cached(red, store)
    assert detect_pose_cached(red.copy(), store) == first and len(calls) == 1
    assert store.puts == 1
    (record,) = store.records.values()
    assert record.tensors == {} and record.meta == {"pose": first.to_json()}
    assert len(detect_pose_cached(red, store, all_people=True).people) == 2
    detect_pose_cached(blue, store)
    assert len(calls) == 3 and store.puts == 3


def test_detect_pose_cached_survives_a_new_disk_store(monkeypatch, tmp_path):
    from interp.pose.detect import detect_pose_cached
    from interp.store import FrameStore, Record

    calls = _count_detections(monkeypatch)
    image = Image.new("RGB", (8, 8), "green")
    first = detect_pose_cached(image, FrameStore(tmp_path))
    assert detect_pose_cached(image, FrameStore(tmp_path)) == first and len(calls) == 1
    store = FakeStore()
    detect_pose_cached(image, store)
    key = next(iter(store.records))
    store.records[key] = Record(tensors={}, meta={"pose": {"canvas_width": -1}})   # corrupt entry
    assert detect_pose_cached(image, store) == first and len(calls) == 3


def test_importing_pose_does_not_import_controlnet_aux():
    code = ("import sys, interp.pose; assert 'controlnet_aux' not in sys.modules; "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
