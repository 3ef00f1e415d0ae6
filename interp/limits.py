"""Every bound on a number a user can send: one frozen dataclass, lowered by an operator through
environment variables (INTERP_MAX_FRAMES=33, ...), never raised past the built-in ceiling.

The library enforces these (Settings, Export, FrameEdit, Segment, Pose, projects), so the CLI,
the API and the studio agree; the studio's sliders take their maxima from here too.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
from dataclasses import dataclass
from typing import Any, Mapping, Optional

ENV_PREFIX = "INTERP_MAX_"


@dataclass(frozen=True)
class Limits:
    """Upper bounds (inclusive); the defaults are what a real use needs and no more."""
    frames: int = 129          # 2^7 + 1: twice the paper's largest run (65 frames), per segment
    keyframes: int = 16        # images in one timeline: a long morph through many
    candidates: int = 16       # twice the paper's 8 per frame
    size: int = 1536           # long side in pixels: SDXL's widest native bucket (1536 x 640)
    steps: int = 1000          # DDIM steps S: the models are trained on 1000 timesteps
    invert_steps: int = 1000   # textual inversion: twice the paper's 500 iterations
    hold_frames: int = 300     # extra copies of the first/last frame: 10 s at 30 fps
    fps: int = 60              # video frame rate; a smooth morph needs no more
    gif_loop: int = 100        # GIF loop count (0 = forever); nobody counts past a hundred
    pose_canvas: int = 4096    # pose canvas side in pixels: 4x the largest working size
    prompt_chars: int = 2000   # per prompt; CLIP reads 77 tokens (~300 characters), the rest is cut
    curve_points: int = 129    # custom curve control points: one per frame at most
    edits: int = 127           # per-frame overrides: one per in-between frame at most
    upload_mb: int = 50        # an upload or project file in MB (the upload limit so far)
    gpu_seconds: int = 300     # GPU time one studio request may ask for: ZeroGPU's per-call maximum

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_bound(f.name, getattr(self, f.name))

    @property
    def upload_bytes(self) -> int:
        return self.upload_mb * 1024 * 1024

    def clamp(self, values: Mapping[str, Any]) -> dict:
        """Settings values (a preset) brought within these bounds; other fields unchanged."""
        out = dict(values)
        for name, bound in (("frames", self.frames), ("num_inference_steps", self.steps),
                            ("invert_steps", self.invert_steps)):
            if isinstance(out.get(name), int) and out[name] > bound:
                out[name] = bound
        if isinstance(out.get("candidates"), int) and (
                out["candidates"] > self.candidates or out["candidates"] == 0 and not self.paper_rule):
            out["candidates"] = self.candidates
        if isinstance(out.get("size"), int) and out["size"] > self.size:
            out["size"] = self.size
        return out

    @property
    def paper_rule(self) -> bool:
        """Whether candidates=0 (the paper's 8, 7, 6, ... per level) fits the candidates bound."""
        return self.candidates >= PAPER_CANDIDATES


PAPER_CANDIDATES = 8     # the most the paper's rule asks for (level 1)
# built-in bounds: an operator may lower one, never raise it
CEILINGS = {f.name: f.default for f in dataclasses.fields(Limits)}
# a lower bound would forbid every use (fps: Export's default rate is 10; gpu_seconds: a call's overhead)
FLOORS = {"frames": 3, "size": 64, "steps": 2, "fps": 10, "gpu_seconds": 10}
MULTIPLES = {"size": 64}


def env_name(field: str) -> str:
    """The environment variable that lowers a bound: frames -> INTERP_MAX_FRAMES."""
    return ENV_PREFIX + field.upper()


def current() -> Limits:
    """The bounds in force: the built-in ones lowered by INTERP_MAX_* (ValueError when invalid)."""
    names = [f.name for f in dataclasses.fields(Limits)]
    return _parse(tuple((n, os.environ.get(env_name(n))) for n in names))


@functools.lru_cache(maxsize=8)
def _parse(given: tuple) -> Limits:
    values = {}
    for name, text in given:
        if text is not None and text.strip():
            values[name] = _env_value(name, text)
    return Limits(**values)


def _env_value(name: str, text: str) -> int:
    var, ceiling = env_name(name), CEILINGS[name]
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"{var}={text!r} is not a number: give a whole number from "
                         f"{FLOORS.get(name, 1)} to {ceiling}") from None
    if not (math.isfinite(number) and number.is_integer()):
        raise ValueError(f"{var}={text!r} is not a whole number: give one from "
                         f"{FLOORS.get(name, 1)} to {ceiling}")
    if number > ceiling:
        raise ValueError(f"{var}={text!r} is above the built-in ceiling {ceiling}: an operator "
                         f"may lower this bound, not raise it")
    return int(number)


def _check_bound(name: str, value: Any) -> None:
    floor, var = FLOORS.get(name, 1), env_name(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < floor:
        raise ValueError(f"{var}={value!r} is not allowed: the bound must be a whole number >= "
                         f"{floor}")
    if value > CEILINGS[name]:
        raise ValueError(f"{var}={value!r} is above the built-in ceiling {CEILINGS[name]}")
    multiple = MULTIPLES.get(name)
    if multiple and value % multiple:
        raise ValueError(f"{var}={value!r} is not allowed: the bound must be a multiple of "
                         f"{multiple}")


def over(name: str, value: Any, bound: int, field: Optional[str] = None) -> str:
    """The message for a value past a bound: the field, the value, the bound and its variable."""
    return (f"{field or name}={value!r} is over this server's limit of {bound} "
            f"(set by {env_name(name)})")


def describe(limits: Optional[Limits] = None) -> list:
    """(variable, bound in force, built-in ceiling) for every bound, for docs and logs."""
    limits = limits or current()
    return [(env_name(f.name), getattr(limits, f.name), CEILINGS[f.name])
            for f in dataclasses.fields(Limits)]
