"""The one mapping between the app's widget values and Settings / Export / FrameEdit, keyed by the
Settings field names that the CLI flags and the project file use too."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

from interp.pose.keypoints import Pose
from interp.settings import Export, FrameEdit, Settings

FORM_FIELDS = tuple(f.name for f in dataclasses.fields(Settings))
EXPORT_FIELDS = tuple(f.name for f in dataclasses.fields(Export))


def settings_from_form(values: Mapping[str, Any]) -> Settings:
    """Widget values keyed by Settings field name -> Settings; fields not given keep defaults."""
    unknown = sorted(set(values) - set(FORM_FIELDS))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; known: {list(FORM_FIELDS)}")
    defaults = Settings()
    out = {name: _coerce(name, value, getattr(defaults, name)) for name, value in values.items()}
    return Settings.from_dict(out)


def form_from_settings(settings: Settings) -> dict:
    """Settings -> widget values (the inverse of settings_from_form)."""
    out = settings.to_dict()
    out["prompt_b"] = out["prompt_b"] or ""
    out["curve_points"] = [list(p) for p in settings.curve_points]
    return out


def export_from_form(values: Mapping[str, Any]) -> Export:
    """Widget values keyed by Export field name -> Export."""
    unknown = sorted(set(values) - set(EXPORT_FIELDS))
    if unknown:
        raise ValueError(f"unknown export setting(s) {unknown}; known: {list(EXPORT_FIELDS)}")
    defaults = Export()
    return Export(**{k: _coerce(k, v, getattr(defaults, k)) for k, v in values.items()})


def form_from_export(export: Export) -> dict:
    return {name: getattr(export, name) for name in EXPORT_FIELDS}


def edit_from_form(prompt: Optional[str] = None, negative_prompt: Optional[str] = None,
                   strength: float = 1.0, keyframe: bool = False, seed: Any = None,
                   noise: Any = None, pose: Any = None) -> FrameEdit:
    """A frame's override form -> FrameEdit: blank text, seed or pose and noise 0 mean "as the run"."""
    return FrameEdit(prompt=_blank_none(prompt), negative_prompt=_blank_none(negative_prompt),
                     strength=float(1.0 if strength is None else strength),
                     keyframe=bool(keyframe),
                     seed=None if _empty(seed) else _coerce("seed", seed, 0),
                     noise=None if _empty(noise) or float(noise) == 0 else float(noise),
                     pose=None if _empty(pose) else Pose.from_json(pose).to_json())


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _blank_none(value: Optional[str]) -> Optional[str]:
    return None if _empty(value) else str(value)


def _coerce(name: str, value: Any, default: Any) -> Any:
    """A widget's value as the type of the field's default (ints must be whole numbers)."""
    if name == "prompt_b":
        return _blank_none(value)
    if name == "curve_points":
        return _points(value)
    if isinstance(default, bool):
        return bool(value)
    if isinstance(default, str) and not hasattr(default, "value"):
        return "" if value is None else str(value)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(f"{name} is empty: enter a value")
    if isinstance(default, int):
        number = float(value)
        if not number.is_integer():
            raise ValueError(f"{name}={value!r} is not allowed: expected a whole number")
        return int(number)
    if isinstance(default, float):
        return float(value)
    return value.value if hasattr(value, "value") and not isinstance(value, str) else value


def _points(value: Any) -> tuple:
    """Control points from a table (rows of x, y; blank rows skipped) or a list of pairs."""
    if value is None:
        return ()
    if isinstance(value, Mapping):
        value = value.get("data", [])
    if hasattr(value, "columns") and hasattr(value, "values"):  # a pandas DataFrame
        value = value.values.tolist()
    rows = [r for r in value if any(not _empty(v) for v in r)]
    try:
        return tuple((float(r[0]), float(r[1])) for r in rows)
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"curve_points={rows!r} is not allowed: each row needs numbers x and y"
                         ) from None
