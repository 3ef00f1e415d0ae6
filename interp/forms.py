"""The one mapping between the app's widget values and Settings / Export / FrameEdit / Segment,
keyed by the Settings field names that the CLI flags and the project file use too."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Optional

from interp import limits
from interp.checks import short
from interp.pose.keypoints import Pose
from interp.settings import PRESETS, Curve, Export, FrameEdit, Settings
from interp.timeline import Segment

FORM_FIELDS = tuple(f.name for f in dataclasses.fields(Settings))
EXPORT_FIELDS = tuple(f.name for f in dataclasses.fields(Export))
# field defaults give each widget value its type (no Settings() built: the bounds may be lowered)
_SETTINGS_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Settings)}
_EXPORT_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Export)}


def settings_from_form(values: Mapping[str, Any]) -> Settings:
    """Widget values keyed by Settings field name -> Settings; fields not given keep defaults."""
    unknown = sorted(set(values) - set(FORM_FIELDS))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; known: {list(FORM_FIELDS)}")
    out = {name: _coerce(name, value, _SETTINGS_DEFAULTS[name]) for name, value in values.items()}
    return Settings.from_dict(out)


def bounded_preset(name: str, **needs: Any) -> Settings:
    """A preset with what the model needs, every bounded field cut to this server's limits."""
    if name not in PRESETS:
        raise ValueError(f"preset={str(name)[:40]!r} is unknown; choose one of {sorted(PRESETS)}")
    return Settings(**limits.current().clamp({**_SETTINGS_DEFAULTS, **PRESETS[name], **needs}))


# Settings fields whose None is a blank widget: text (None = as the other image), sizes (0 = auto)
OPTIONAL_TEXT = ("prompt_b", "negative_prompt_b")
OPTIONAL_SIZE = ("size", "width", "height")


def form_from_settings(settings: Settings) -> dict:
    """Settings -> widget values (the inverse of settings_from_form)."""
    out = settings.to_dict()
    for name in OPTIONAL_TEXT:
        out[name] = out[name] or ""
    for name in OPTIONAL_SIZE:
        out[name] = out[name] or 0
    out["curve_points"] = [list(p) for p in settings.curve_points]
    return out


def export_from_form(values: Mapping[str, Any]) -> Export:
    """Widget values keyed by Export field name -> Export."""
    unknown = sorted(set(values) - set(EXPORT_FIELDS))
    if unknown:
        raise ValueError(f"unknown export setting(s) {unknown}; known: {list(EXPORT_FIELDS)}")
    return Export(**{k: _coerce(k, v, _EXPORT_DEFAULTS[k]) for k, v in values.items()})


def form_from_export(export: Export) -> dict:
    return {name: getattr(export, name) for name in EXPORT_FIELDS}


def segment_from_form(old: Segment, frames: Any = 0, duration: Any = 0, curve: Any = "",
                      noise_min: Any = 0, noise_max: Any = 0, seed: Any = None) -> Segment:
    """A segment's form -> Segment: 0, blank or "" mean "as the run"; fields the form does not
    show (custom points, Beta parameters, noise shape) stay as they were."""
    def number(name, value, whole):
        return None if _empty(value) or value in (0, "0") else _number(name, value, whole)
    if not (curve is None or isinstance(curve, str)):
        raise ValueError(f"curve={_short(curve)} is not allowed: expected one of "
                         f"{[c.value for c in Curve]} or '' (as the run)")
    frames, duration = number("frames", frames, True), number("duration", duration, False)
    if frames is not None and duration is not None:
        raise ValueError(f"frames={frames} and duration={duration} are both set: a segment "
                         "takes frames or seconds; set the other to 0")
    return dataclasses.replace(old, frames=frames, duration=duration, curve=curve or None,
                               noise_min=number("noise_min", noise_min, False),
                               noise_max=number("noise_max", noise_max, False),
                               seed=None if _empty(seed) else _number("seed", seed, True))


def form_from_segment(segment: Segment) -> dict:
    """Segment -> its form's values (the inverse of segment_from_form)."""
    curve = segment.curve.value if segment.curve is not None else ""
    return {"frames": segment.frames or 0, "duration": segment.duration or 0, "curve": curve,
            "noise_min": segment.noise_min or 0, "noise_max": segment.noise_max or 0,
            "seed": segment.seed}


def edit_from_form(prompt: Optional[str] = None, negative_prompt: Optional[str] = None,
                   strength: float = 1.0, keyframe: bool = False, seed: Any = None,
                   noise: Any = None, pose: Any = None) -> FrameEdit:
    """A frame's override form -> FrameEdit: blank text, seed or pose and noise 0 mean "as the run"."""
    noise = None if _empty(noise) else _coerce("noise", noise, 0.0)
    return FrameEdit(prompt=_blank_none(prompt, "prompt"),
                     negative_prompt=_blank_none(negative_prompt, "negative_prompt"),
                     strength=1.0 if _empty(strength) else _coerce("strength", strength, 1.0),
                     keyframe=_flag("keyframe", keyframe),
                     seed=None if _empty(seed) else _coerce("seed", seed, 0),
                     noise=None if noise == 0 else noise,
                     pose=None if _empty(pose) else Pose.from_json(pose))


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _blank_none(value: Any, name: str = "prompt_b") -> Optional[str]:
    """Text, or None when blank; ValueError naming the field for anything but text."""
    if not (value is None or isinstance(value, str)):
        raise ValueError(f"{name}={_short(value)} is not allowed: expected text")
    return None if _empty(value) else value


def _coerce(name: str, value: Any, default: Any) -> Any:
    """A widget's value as the type of the field's default (ints must be whole numbers)."""
    if name in OPTIONAL_TEXT:
        return _blank_none(value, name)
    if name in OPTIONAL_SIZE:
        return None if _empty(value) or value in (0, "0") else _number(name, value, whole=True)
    if name == "curve_points":
        return _points(value)
    if isinstance(default, bool):
        return _flag(name, value)
    if isinstance(default, str) and not hasattr(default, "value"):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name}={_short(value)} is not allowed: expected text")
        return value or ""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(f"{name} is empty: enter a value")
    if isinstance(default, (int, float)):
        return _number(name, value, whole=isinstance(default, int))
    return value.value if hasattr(value, "value") and not isinstance(value, str) else value


def _number(name: str, value: Any, whole: bool) -> Any:
    """A widget's number (or numeric text) as int or float; ValueError naming the field."""
    kind = "a whole number" if whole else "a number"
    if whole and isinstance(value, int):
        return int(value)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name}={_short(value)} is not a number: enter {kind}") from None
    if not math.isfinite(number) or (whole and not number.is_integer()):
        raise ValueError(f"{name}={_short(value)} is not allowed: expected {kind}")
    return int(number) if whole else number


def _flag(name: str, value: Any) -> bool:
    """A checkbox value: a bool, 0/1 or the text true/false."""
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"{name}={_short(value)} is not allowed: expected true or false")


def _short(value: Any) -> str:
    return short(value, 60)


def _points(value: Any) -> tuple:
    """Control points from a table (rows of x, y; blank rows skipped) or a list of pairs."""
    if value is None:
        return ()
    if isinstance(value, Mapping):
        value = value.get("data", [])
    if hasattr(value, "columns") and hasattr(value, "values"):  # a pandas DataFrame
        value = value.values.tolist()
    if not isinstance(value, (list, tuple)) or not all(isinstance(r, (list, tuple)) for r in value):
        raise ValueError(f"curve_points={_short(value)} is not allowed: expected a table of rows "
                         '[x, y], e.g. {"headers": ["x", "y"], "data": [[0.25, 0.1]]}')
    rows = [r for r in value if any(not _empty(v) for v in r)]
    if len(rows) > limits.current().curve_points:
        return tuple(rows)   # Settings names the bound
    try:
        return tuple((_number("curve_points x", r[0], False), _number("curve_points y", r[1], False))
                     for r in rows)
    except (ValueError, IndexError):
        raise ValueError(f"curve_points={_short(rows)} is not allowed: each row needs numbers x "
                         "and y") from None
