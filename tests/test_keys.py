"""Key completeness: every Settings and FrameEdit field either changes a cache key that a render
reads (so an edit can never be answered by a stale frame) or is declared as not affecting pixels,
and that declaration is checked too. The field lists come from the dataclasses, not from a list
kept by hand: a new field fails here until it is given a changed value below."""
from __future__ import annotations

import dataclasses
from enum import Enum

import numpy as np
import pytest

from interp.models.load import load_bundle
from interp.pose.keypoints import Pose
from interp.rank import build_tiny_clip
from interp.render import Interpolator
from interp.settings import AttentionMode, Curve, FrameEdit, Settings
from interp.store import FrameStore

BASE = Settings(frames=9, num_inference_steps=6, size=64, candidates=2, prompt="a photo",
                negative_prompt="blurry", rank_positive="sharp", rank_negative="smeared",
                invert_steps=1, invert_lr=0.05, pose=True, seed=3)
# Fields that only act in some configuration: the base they are changed from.
ATTENTION_ON = {"attention": AttentionMode.INTERPOLATE}
CONTEXT = {"curve_alpha": {"curve": Curve.BETA}, "curve_beta": {"curve": Curve.BETA},
           "curve_points": {"curve": Curve.CUSTOM, "curve_points": ((0.5, 0.4),)},
           "attention_strength": ATTENTION_ON, "attention_share": ATTENTION_ON,
           "attention_blocks": ATTENTION_ON, "width": {"width": 64, "height": 64},
           "height": {"width": 64, "height": 64}}
# Values that the generic rule below would get wrong (multiples of 64, valid fractions, ...).
CHANGED = {"size": 128, "noise_min": 0.1, "noise_max": 0.8, "curve_points": ((0.5, 0.6),),
           "prompt_b": "another photo", "frames": 7, "negative_prompt_b": "grainy",
           "width": 128, "height": 128}
# Settings fields that do not affect any frame's pixels (checked below, not trusted).
NOT_PIXELS: frozenset = frozenset()


class RecordingStore(FrameStore):
    """A memory store that remembers every key a render looked up."""

    def __init__(self):
        super().__init__(None)
        self.seen: set = set()

    def get(self, key):
        self.seen.add(key)
        return super().get(key)


def _fake_detect(image, all_people=False, *, device="cpu"):
    """A detector stand-in (no weights offline): one person, or two with all_people."""
    people = [[[8.0 + k + 20 * p, 4.0 + 3 * k, 1.0] for k in range(18)] for p in range(1 + all_people)]
    return Pose.from_json({"canvas_width": image.width, "canvas_height": image.height,
                           "people": [{"pose_keypoints_2d": sum(p, [])} for p in people]})


@pytest.fixture(scope="module")
def engine():
    bundle = load_bundle("tiny-sd15")
    return Interpolator(bundle, FrameStore(None), build_tiny_clip(counter=bundle.counter))


@pytest.fixture(autouse=True)
def fake_detector(monkeypatch):
    from interp.pose import detect
    monkeypatch.setattr(detect, "detect_pose", _fake_detect)


def _changed(name: str, value):
    if name in CHANGED:
        return CHANGED[name]
    if isinstance(value, bool):
        return not value
    if isinstance(value, Enum):
        return next(m for m in type(value) if m != value)
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return round(value * 0.9, 6)
    if isinstance(value, str):
        return value + " more"
    raise AssertionError(f"no changed value for Settings.{name}={value!r}: add one to CHANGED")


def _keys(engine, photo_pair, settings, edits=None):
    """Every key the render looked up, and its images, in a fresh store."""
    engine.store = RecordingStore()
    result = engine.render(*photo_pair, settings, edits)
    return engine.store.seen, [np.asarray(im) for im in result.images]


_BASES: dict = {}


def _base_keys(engine, photo_pair, context: dict):
    """_keys of the base settings in a context, rendered once per context."""
    name = repr(sorted(context.items()))
    if name not in _BASES:
        _BASES[name] = _keys(engine, photo_pair, BASE.replace(**context))
    return _BASES[name]


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(Settings)])
def test_every_settings_field_reaches_a_key(engine, photo_pair, name):
    base = BASE.replace(**CONTEXT.get(name, {}))
    changed = base.replace(**{name: _changed(name, getattr(base, name))})
    keys, images = _base_keys(engine, photo_pair, CONTEXT.get(name, {}))
    keys2, images2 = _keys(engine, photo_pair, changed)
    if name in NOT_PIXELS:
        assert keys == keys2 and all(np.array_equal(x, y) for x, y in zip(images, images2)), name
    else:
        assert keys != keys2, f"changing Settings.{name} reuses every cached result"


EDIT = FrameEdit(prompt="a cat", negative_prompt="dark", strength=0.5, seed=11, noise=0.4,
                 candidate=0)
EDIT_CHANGES = {"prompt": "a dog", "negative_prompt": "grey", "strength": 0.8, "keyframe": True,
                "seed": 12, "noise": 0.5, "candidate": 1}


def test_every_frame_edit_field_changes_the_keys_of_that_frame_or_its_children(engine, photo_pair):
    names = {f.name for f in dataclasses.fields(FrameEdit)}
    missing = names - set(EDIT_CHANGES) - {"pose"}
    assert not missing, f"FrameEdit fields without a changed value: {missing}"
    base_keys, _ = _keys(engine, photo_pair, BASE, {4: EDIT})
    pose = _fake_detect(photo_pair[0].resize((64, 64))).to_json()
    pose["people"][0]["pose_keypoints_2d"][0] += 9.0      # the nose moves: not the interpolated pose
    for name, value in {**EDIT_CHANGES, "pose": pose}.items():
        keys, _ = _keys(engine, photo_pair, BASE, {4: EDIT.replace(**{name: value})})
        assert keys != base_keys, f"changing FrameEdit.{name} reuses every cached result"


def test_frame_keys_change_with_the_models_precision(photo_pair):
    """By hand: the same model at float32 and at bfloat16 gives other pixels, so the engine identity is
    "<model identity>|<dtype>" and no key of one render may answer the other. 5 frames, no inversion, no
    pose, no ranking: each render looks up 2 endpoint latents + 3 in-between frames = 5 keys, and the two
    renders share none of them."""
    settings = Settings(frames=5, num_inference_steps=4, size=64, candidates=1, prompt="a photo", seed=3)
    runs = {}
    for dtype in ("float32", "bfloat16"):
        bundle = load_bundle("tiny-sd15", dtype=dtype)
        engine = Interpolator(bundle, RecordingStore())
        assert engine.identity == f"{bundle.identity}|{dtype}"
        runs[dtype] = (bundle.identity, engine.store.seen, engine.render(*photo_pair, settings))
    (id32, seen32, r32), (id16, seen16, r16) = runs["float32"], runs["bfloat16"]
    assert id32 == id16                                   # the same weights: only the precision differs
    assert len(seen32) == len(seen16) == 2 + 3 and seen32.isdisjoint(seen16)
    assert r32.generated == r16.generated == [1, 2, 3]
    assert all(a.key != b.key for a, b in zip(r32.frames[1:4], r16.frames[1:4]))
    assert any(not np.array_equal(np.asarray(a.image), np.asarray(b.image))
               for a, b in zip(r32.frames[1:4], r16.frames[1:4]))   # why: the pixels do differ


def test_the_pose_detection_key_changes_with_the_detectors_identity(photo_pair, monkeypatch):
    """By hand: a pose detected once is read back from the store for the same image and detector; another
    detector (other weights) must detect again under a new key, never reuse the first one's pose."""
    from interp.pose import detect
    openpose = "controlnet_aux-openpose-body:lllyasviel/Annotators/body_pose_model.pth"
    assert detect.DETECTOR == openpose                    # the detector and the weights it runs
    calls = []

    def counting(image, all_people=False, *, device="cpu"):
        calls.append(image.size)
        return _fake_detect(image, all_people, device=device)
    monkeypatch.setattr(detect, "detect_pose", counting)
    store, image = RecordingStore(), photo_pair[0].resize((64, 64))
    first = detect.detect_pose_cached(image, store)
    assert len(calls) == 1 and len(store.seen) == 1
    assert detect.detect_pose_cached(image, store).to_json() == first.to_json()
    assert len(calls) == 1 and len(store.seen) == 1       # same image, same detector: from the store
    monkeypatch.setattr(detect, "DETECTOR", "another-openpose:retrained/body.pth")
    detect.detect_pose_cached(image, store)
    assert len(calls) == 2 and len(store.seen) == 2       # another detector: detected again, a new key
    monkeypatch.setattr(detect, "DETECTOR", openpose)
    detect.detect_pose_cached(image, store)
    assert len(calls) == 2 and len(store.seen) == 2       # back to the first detector: its key, a hit
