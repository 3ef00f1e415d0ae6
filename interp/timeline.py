"""A keyframe timeline: a sequence through K >= 2 images.

Each segment (keyframe i -> i + 1) is a two-image morph of the paper's method with its own frame
count (or duration at the export fps), schedule curve, noise range and seed, defaulting to the run's
Settings. A keyframe appears once in the sequence: segment s contributes its frames after its first
keyframe; `loop` adds a segment from the last keyframe back to the first and drops that repeated
first frame, so the sequence plays seamlessly when repeated. Two keyframes are exactly the two-image
render: the same Settings, the same frame keys.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Optional

from PIL import Image

from interp import limits
from interp.checks import check, is_int, real, whole
from interp.images import load_image
from interp.pose.keypoints import Pose
from interp.settings import Curve, NoiseShape, Settings

# Settings fields a segment may override (None: the run's value).
SEGMENT_FIELDS = ("frames", "curve", "curve_alpha", "curve_beta", "curve_points", "noise_min",
                  "noise_max", "noise_shape", "seed")
_ENUMS = {"curve": Curve, "noise_shape": NoiseShape}


@dataclass(frozen=True)
class Keyframe:
    """One image of the timeline with its optional prompt, negative prompt and pose."""
    image: Image.Image                      # (a path or bytes is loaded when the Keyframe is made)
    prompt: Optional[str] = None            # None: the run's prompt
    negative_prompt: Optional[str] = None   # None: the run's negative prompt
    pose: Optional[Pose] = None             # None: detected when pose guidance is on

    def __post_init__(self) -> None:
        if not isinstance(self.image, Image.Image):      # a path or encoded bytes: load it now
            object.__setattr__(self, "image", load_image(self.image))
        for name in ("prompt", "negative_prompt"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"Keyframe.{name} must be a string or None, got {value!r}")
        if self.pose is not None and not isinstance(self.pose, Pose):
            raise TypeError(f"Keyframe.pose must be a Pose or None, got {type(self.pose).__name__}")


@dataclass(frozen=True)
class Segment:
    """Overrides of one segment (keyframe i -> i + 1); every None means "as the run"."""
    frames: Optional[int] = None            # frames including both keyframes (>= 3)
    duration: Optional[float] = None        # seconds at the export fps (instead of frames)
    curve: Optional[Curve] = None
    curve_alpha: Optional[float] = None
    curve_beta: Optional[float] = None
    curve_points: Optional[tuple] = None
    noise_min: Optional[float] = None
    noise_max: Optional[float] = None
    noise_shape: Optional[NoiseShape] = None
    seed: Optional[int] = None

    def __post_init__(self) -> None:
        if self.frames is not None and self.duration is not None:
            raise ValueError("a segment takes frames or duration, not both")
        if self.duration is not None and not (isinstance(self.duration, (int, float))
                                              and math.isfinite(self.duration) and self.duration > 0):
            raise ValueError(f"duration={self.duration!r} is not allowed: expected seconds > 0")
        for name, enum in _ENUMS.items():
            value = getattr(self, name)
            if value is not None and not isinstance(value, enum):
                try:
                    object.__setattr__(self, name, enum(value))
                except ValueError:
                    raise ValueError(f"{name}={value!r} is not one of "
                                     f"{[e.value for e in enum]}") from None
        if self.curve_points is not None:
            object.__setattr__(self, "curve_points",
                               tuple(tuple(float(v) for v in p) for p in self.curve_points))
        self._check_numbers()

    def _check_numbers(self) -> None:
        """The overrides that are set, within the bounds Settings has for them."""
        if self.frames is not None:
            whole("frames", self.frames, 3, limits.current().frames, "frames",
                  " (both keyframes included)")
        for name in ("noise_min", "noise_max", "curve_alpha", "curve_beta"):
            value = getattr(self, name)
            if value is not None:
                real(name, value)
                check(value > 0 and (value < 1 or name.startswith("curve")), name, value,
                      "a fraction in (0, 1)" if name.startswith("noise") else "a number > 0")
        if self.noise_min is not None and self.noise_max is not None:
            check(self.noise_min <= self.noise_max, "noise_min/noise_max",
                  (self.noise_min, self.noise_max), "noise_min <= noise_max")
        if self.seed is not None:
            check(is_int(self.seed) and 0 <= self.seed < 2**63, "seed", self.seed,
                  "an integer in [0, 2^63)")

    def to_dict(self) -> dict:
        """The fields that are set, JSON-ready."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = value.value if hasattr(value, "value") else (
                    [list(p) for p in value] if f.name == "curve_points" else value)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Segment":
        if not isinstance(data, dict):
            raise ValueError(f"a segment is an object of fields, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown segment field(s) {unknown}; known: {sorted(names)}")
        return cls(**data)


@dataclass(frozen=True)
class Timeline:
    """Keyframes, one Segment per segment (or none: all as the run), and the loop option."""
    keyframes: tuple
    segments: tuple = ()
    loop: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "keyframes", tuple(self.keyframes))
        if len(self.keyframes) < 2:
            raise ValueError(f"a timeline needs at least 2 keyframes, got {len(self.keyframes)}")
        if not all(isinstance(k, Keyframe) for k in self.keyframes):
            raise TypeError("keyframes must be Keyframe objects")
        count = len(self.keyframes) - 1 + bool(self.loop)
        segments = tuple(self.segments) or (Segment(),) * count
        if len(segments) != count:
            raise ValueError(f"{len(segments)} segment(s) given for {len(self.keyframes)} keyframes"
                             f"{' with loop' if self.loop else ''}: expected {count}")
        if not all(isinstance(s, Segment) for s in segments):
            raise TypeError("segments must be Segment objects")
        object.__setattr__(self, "segments", segments)

    @property
    def pairs(self) -> tuple:
        """(start keyframe, end keyframe) of every segment; a loop's last one ends at keyframe 0."""
        k = len(self.keyframes)
        return tuple((s, (s + 1) % k) for s in range(len(self.segments)))

    def replace(self, **changes: Any) -> "Timeline":
        return dataclasses.replace(self, **changes)


def keyframe_name(k: int) -> str:
    """The letter a keyframe goes by (0 -> "A", 25 -> "Z", 26 -> "AA")."""
    name = ""
    k += 1
    while k:
        k, rest = divmod(k - 1, 26)
        name = chr(ord("A") + rest) + name
    return name


def two_image(image_a, image_b, settings: Settings, pose_a=None, pose_b=None) -> Timeline:
    """The timeline of a two-image render: B's prompt and negative from settings.prompt_b and
    negative_prompt_b (None: the run's)."""
    return Timeline((Keyframe(image_a, pose=pose_a),
                     Keyframe(image_b, prompt=settings.prompt_b,
                              negative_prompt=settings.negative_prompt_b, pose=pose_b)))


def segment_frames(segment: Segment, settings: Settings, fps: float) -> int:
    """A segment's frame count: its own, from its duration at `fps` (seconds between its keyframes
    = (frames - 1) / fps), or the run's."""
    if segment.frames is not None:
        return segment.frames
    if segment.duration is not None:
        return max(3, round(segment.duration * fps) + 1)
    return settings.frames


def segment_settings(timeline: Timeline, settings: Settings, s: int, fps: float = 10.0) -> Settings:
    """The Settings of segment s: the run's, with the segment's overrides and its keyframes' prompts.
    Only fields whose value changes are replaced (two keyframes with no overrides: the run's own)."""
    seg, (i, j) = timeline.segments[s], timeline.pairs[s]
    start, end = timeline.keyframes[i], timeline.keyframes[j]
    changes = {name: getattr(seg, name) for name in SEGMENT_FIELDS
               if getattr(seg, name) is not None and name != "frames"}
    changes["frames"] = segment_frames(seg, settings, fps)
    for field, field_b, pair in (("prompt", "prompt_b", settings.prompt_pair),
                                 ("negative_prompt", "negative_prompt_b", settings.negative_pair)):
        a = getattr(start, field) if getattr(start, field) is not None else getattr(settings, field)
        b = getattr(end, field) if getattr(end, field) is not None else getattr(settings, field)
        if (a, b) != pair:
            changes.update({field: a, field_b: None if b == a else b})
    changes = {k: v for k, v in changes.items() if getattr(settings, k) != v}
    return settings.replace(**changes) if changes else settings


@dataclass(frozen=True)
class Layout:
    """Where each segment's frames sit in the whole sequence (global frame numbers)."""
    counts: tuple                     # frames per segment, both keyframes included
    loop: bool = False

    @property
    def offsets(self) -> tuple:
        """Global number of each segment's first frame."""
        out, offset = [], 0
        for n in self.counts:
            out.append(offset)
            offset += n - 1
        return tuple(out)

    @property
    def total(self) -> int:
        """Frames in the sequence: sum of segment frames minus shared keyframes (and the seam)."""
        return sum(self.counts) - (len(self.counts) - 1) - (1 if self.loop else 0)

    @property
    def keyframes(self) -> tuple:
        """Global numbers of the keyframes."""
        return self.offsets if self.loop else self.offsets + (self.total - 1,)

    def global_index(self, s: int, local: int) -> int:
        """Global number of frame `local` of segment s (a loop's last frame is frame 0)."""
        g = self.offsets[s] + local
        return 0 if self.loop and g == self.total else g

    def locate(self, index: int, what: str = "frame") -> tuple:
        """(segment, local index) of an in-between frame given by its global number; ValueError
        (starting with `what`) for any other number."""
        last = self.total if self.loop else self.total - 1
        if isinstance(index, bool) or not isinstance(index, int) or not 0 < index < last:
            raise ValueError(f"{what} {index!r} is out of range: in-between frames are "
                             f"1..{last - 1} (keyframes are the input images)")
        if index in self.keyframes:
            raise ValueError(f"frame {index} is a keyframe (an input image): it cannot be edited")
        s = max(k for k, off in enumerate(self.offsets) if off < index)
        return s, index - self.offsets[s]


def layout(timeline: Timeline, settings: Settings, fps: float = 10.0) -> Layout:
    """The timeline's Layout from its segments' frame counts (no model needed)."""
    return Layout(tuple(segment_frames(s, settings, fps) for s in timeline.segments), timeline.loop)
