"""OpenPose body poses (method.md section 5): the Pose type and its JSON form, interpolation, the ramp.

A Pose holds people on a pixel canvas; each person is 18 (x, y, c) keypoints in the COCO order with
neck (KEYPOINT_NAMES), c = confidence, 0 = missing. The file form is the OpenPose JSON written by
OpenPose and the sd-webui-controlnet pose editor. Drawing (interp.pose.draw) and detection
(interp.pose.detect) go through controlnet_aux, imported lazily there.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from interp import limits
from interp.errors import InputError, ModelUnavailable

KEYPOINT_NAMES: tuple[str, ...] = (
    "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear",
)
NUM_KEYPOINTS = 18
MAX_PEOPLE = 10
MISSING: tuple[float, float, float] = (0.0, 0.0, 0.0)

Keypoint = tuple[float, float, float]
Person = tuple[Keypoint, ...]

class PoseUnavailable(ModelUnavailable):
    """Pose detection weights (OpenPose body model) cannot be loaded; draw the pose or give a JSON file."""


def _check_number(value: Any, path: str) -> None:
    """A JSON number: int or float, not bool, finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{path} must be a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path} must be finite, got {value!r}")
    if isinstance(value, int) and abs(value) > 2**53:   # beyond what JSON readers keep exactly
        raise ValueError(f"{path} must be at most 2^53 in size, got {str(value)[:20]}...")


def _check_canvas_size(value: Any, path: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{path} must be a positive integer, got {str(value)[:40]}")
    if value > limits.current().pose_canvas:
        raise ValueError(limits.over("pose_canvas", value, limits.current().pose_canvas, path))


def _check_keypoint(kp: Sequence[Any], width: int, height: int, path: Any) -> None:
    """Validate one (x, y, c); path(j) names component j (0 = x, 1 = y, 2 = c)."""
    for j in range(3):
        _check_number(kp[j], path(j))
    x, y, c = kp
    if c < 0:
        raise ValueError(f"{path(2)} = {c!r} is a negative confidence; use 0 for a missing keypoint")
    if c > 0 and not 0 <= x <= width:
        raise ValueError(f"{path(0)} = {x!r} is outside the canvas width 0..{width}")
    if c > 0 and not 0 <= y <= height:
        raise ValueError(f"{path(1)} = {y!r} is outside the canvas height 0..{height}")


def _json_path(i: int, k: int) -> Any:
    return lambda j: (f"people[{i}].pose_keypoints_2d[{3 * k + j}] "
                      f"({KEYPOINT_NAMES[k]} {'xyc'[j]})")


def _parse_person(obj: Any, i: int, width: int, height: int) -> Person:
    """One entry of "people": its pose_keypoints_2d, validated; hands and face ignored."""
    if not isinstance(obj, dict):
        raise ValueError(f"people[{i}] must be an object, got {type(obj).__name__}")
    if "pose_keypoints_2d" not in obj:
        raise ValueError(f"people[{i}].pose_keypoints_2d is missing")
    flat = obj["pose_keypoints_2d"]
    if not isinstance(flat, list):
        raise ValueError(f"people[{i}].pose_keypoints_2d must be a list of numbers, "
                         f"got {type(flat).__name__}")
    if len(flat) != 3 * NUM_KEYPOINTS:
        raise ValueError(f"people[{i}].pose_keypoints_2d has {len(flat)} numbers; expected "
                         f"{3 * NUM_KEYPOINTS} ({NUM_KEYPOINTS} keypoints x 3)")
    person = tuple(tuple(flat[3 * k:3 * k + 3]) for k in range(NUM_KEYPOINTS))
    for k, kp in enumerate(person):
        _check_keypoint(kp, width, height, _json_path(i, k))
    return person


def _load_json_object(obj: Any) -> dict:
    if isinstance(obj, (str, bytes, bytearray)):
        try:
            obj = json.loads(obj)
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"pose JSON is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"pose JSON must be an object with canvas_width, canvas_height and people, "
                         f"got {type(obj).__name__}")
    return obj


def _parse(obj: Any) -> "Pose":
    data = _load_json_object(obj)
    for name in ("canvas_width", "canvas_height"):
        if name not in data:
            raise ValueError(f"{name} is missing")
        _check_canvas_size(data[name], name)
    width, height = data["canvas_width"], data["canvas_height"]
    if "people" not in data:
        raise ValueError("people is missing (use [] for no people)")
    people = data["people"]
    if not isinstance(people, list):
        raise ValueError(f"people must be a list, got {type(people).__name__}")
    if len(people) > MAX_PEOPLE:
        raise ValueError(f"people has {len(people)} entries; at most {MAX_PEOPLE} are allowed")
    parsed = tuple(_parse_person(p, i, width, height) for i, p in enumerate(people))
    return Pose(width, height, parsed)


@dataclass(frozen=True)
class Pose:
    """People's 18 OpenPose body keypoints (x, y, confidence) in pixels of a canvas (method.md sec. 5)."""
    canvas_width: int
    canvas_height: int
    people: tuple[Person, ...] = ()

    def __post_init__(self) -> None:
        _check_canvas_size(self.canvas_width, "canvas_width")
        _check_canvas_size(self.canvas_height, "canvas_height")
        if isinstance(self.people, (str, bytes)) or not isinstance(self.people, Sequence):
            raise ValueError(f"people must be a sequence of people, got {type(self.people).__name__}")
        if len(self.people) > MAX_PEOPLE:
            raise ValueError(f"people has {len(self.people)} entries; at most {MAX_PEOPLE} are allowed")
        people = tuple(self._check_person(p, i) for i, p in enumerate(self.people))
        object.__setattr__(self, "people", people)

    def _check_person(self, person: Any, i: int) -> Person:
        if not isinstance(person, Sequence) or len(person) != NUM_KEYPOINTS:
            n = len(person) if isinstance(person, Sequence) else type(person).__name__
            raise ValueError(f"people[{i}] has {n} keypoints; expected {NUM_KEYPOINTS}")
        out = []
        for k, kp in enumerate(person):
            if not isinstance(kp, Sequence) or len(kp) != 3:
                raise ValueError(f"people[{i}][{k}] ({KEYPOINT_NAMES[k]}) must be (x, y, c), got {kp!r}")
            _check_keypoint(kp, self.canvas_width, self.canvas_height,
                            lambda j, k=k: f"people[{i}][{k}] ({KEYPOINT_NAMES[k]} {'xyc'[j]})")
            out.append(tuple(kp))
        return tuple(out)

    @classmethod
    def from_json(cls, obj: dict | str) -> "Pose":
        """Parse OpenPose JSON (dict or text); InputError (a ValueError) naming the bad field path."""
        try:
            return _parse(obj)
        except ValueError as exc:
            raise InputError(f"invalid pose JSON: {exc}") from None

    def to_json(self) -> dict:
        """The OpenPose JSON dict; numbers exactly as stored, so from_json(to_json()) == self."""
        return {
            "canvas_width": self.canvas_width,
            "canvas_height": self.canvas_height,
            "people": [{"pose_keypoints_2d": [v for kp in person for v in kp]}
                       for person in self.people],
        }

    @classmethod
    def empty(cls, width: int, height: int) -> "Pose":
        """A pose with no people on a width x height canvas."""
        return cls(width, height, ())

    def rescaled(self, width: int, height: int) -> "Pose":
        """The same pose on a width x height canvas (coordinates scaled; missing keypoints kept)."""
        _check_canvas_size(width, "width")
        _check_canvas_size(height, "height")
        if (width, height) == (self.canvas_width, self.canvas_height):
            return self

        def scale(kp: Keypoint) -> Keypoint:
            x, y, c = kp
            if c <= 0:
                return kp
            return (min(max(x * width / self.canvas_width, 0.0), float(width)),
                    min(max(y * height / self.canvas_height, 0.0), float(height)), c)

        return Pose(width, height, tuple(tuple(scale(kp) for kp in p) for p in self.people))


def _check_unit(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number in [0, 1], got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


def _lerp_keypoint(ka: Keypoint, kb: Keypoint, t: float, width: int, height: int) -> Keypoint:
    if ka[2] <= 0 or kb[2] <= 0:
        return MISSING
    x = min(max((1.0 - t) * ka[0] + t * kb[0], 0.0), float(width))
    y = min(max((1.0 - t) * ka[1] + t * kb[1], 0.0), float(height))
    return (x, y, (1.0 - t) * ka[2] + t * kb[2])


def interpolate_pose(a: Pose, b: Pose, t: float) -> Pose:
    """Pose at position t (method.md sec. 5): shared keypoints lerped, others missing in every frame.

    People are matched by index (extras dropped); b is first rescaled to a's canvas. Coordinates and
    confidence are (1 - t) * a + t * b, so t = 0 gives a's and t = 1 gives b's values exactly.
    """
    if not isinstance(a, Pose) or not isinstance(b, Pose):
        raise TypeError(f"a and b must be Pose, got {type(a).__name__} and {type(b).__name__}")
    t = _check_unit(t, "t")
    w, h = a.canvas_width, a.canvas_height
    b = b.rescaled(w, h)
    people = tuple(tuple(_lerp_keypoint(ka, kb, t, w, h) for ka, kb in zip(pa, pb))
                   for pa, pb in zip(a.people, b.people))
    return Pose(w, h, people)


def _check_positions(positions: Any) -> np.ndarray:
    f = np.asarray(positions, dtype=np.float64)
    if f.ndim != 1:
        raise ValueError(f"positions must be a 1-D sequence, got shape {f.shape}")
    if not np.all(np.isfinite(f)) or np.any(f < 0.0) or np.any(f > 1.0):
        raise ValueError(f"positions must lie in [0, 1], got {f.tolist()!r}")
    return f


def control_scales(positions: Sequence[float] | np.ndarray, peak: float,
                   global_scale: float = 1.0) -> np.ndarray:
    """ControlNet scale per frame: (peak - 2|f - 0.5|(peak - 1)) * global_scale (method.md sec. 5)."""
    f = _check_positions(positions)
    for name, value in (("peak", peak), ("global_scale", global_scale)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
            raise TypeError(f"{name} must be a number, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return (peak - 2.0 * np.abs(f - 0.5) * (peak - 1.0)) * global_scale


def pose_path(pose_a: Pose, pose_b: Pose, positions: Sequence[float] | np.ndarray,
              overrides: Mapping[int, Pose] | None = None) -> list[Pose]:
    """Per-frame poses: interpolate_pose at each position; overrides[i] (rescaled to a's canvas) wins."""
    f = _check_positions(positions)
    overrides = dict(overrides or {})
    for i, pose in overrides.items():
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < len(f):
            raise ValueError(f"overrides key {i!r} is not a frame index in 0..{len(f) - 1}")
        if not isinstance(pose, Pose):
            raise TypeError(f"overrides[{i}] must be a Pose, got {type(pose).__name__}")
    w, h = pose_a.canvas_width, pose_a.canvas_height
    return [overrides[i].rescaled(w, h) if i in overrides else interpolate_pose(pose_a, pose_b, t)
            for i, t in enumerate(f.tolist())]
