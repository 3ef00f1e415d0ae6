"""Run-wide Settings, per-frame FrameEdit overrides, presets and their validation.

Field names follow diffusers (num_inference_steps, guidance_scale, negative_prompt, ...); the same
names are the CLI flags (with dashes), the app's mapping and the project file's keys.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Any, Mapping, Optional

from interp import limits
from interp.checks import check, is_int, real, short, string, whole
from interp.pose.keypoints import Pose


class Scheme(str, Enum):
    """Interpolation schemes: the paper's method and its Table 1 baselines."""
    METHOD = "method"                      # add noise - interpolate - denoise (the paper)
    INTERPOLATE_ONLY = "interpolate_only"  # decode slerp(z_A, z_B, t)
    INTERPOLATE_DENOISE = "interpolate_denoise"
    DID = "did"                            # denoise - interpolate - denoise, shared noise
    DID_INDEPENDENT = "did_independent"    # DID with independent noise per input


class Curve(str, Enum):
    """Schedule curves mapping frame index to position in [0, 1]."""
    UNIFORM = "uniform"
    EASE_IN = "ease_in"
    EASE_OUT = "ease_out"
    EASE_IN_OUT = "ease_in_out"
    BETA = "beta"        # inverse CDF of Beta(curve_alpha, curve_beta), as AID/PAID
    CUSTOM = "custom"    # monotone interpolation through curve_points


class NoiseShape(str, Enum):
    """How the noise fraction grows from the finest level (min) to the coarsest (max)."""
    LINEAR = "linear"
    CONVEX = "convex"    # x^2
    CONCAVE = "concave"  # sqrt(x)


class Fit(str, Enum):
    """How an input is brought to the target aspect ratio."""
    CROP = "crop"  # centre-crop
    PAD = "pad"    # letterbox with black


class AttentionMode(str, Enum):
    """How a frame's self-attention uses the endpoints (interp.attention; beyond the paper)."""
    OFF = "off"
    INTERPOLATE = "interpolate"   # keys/values mixed from the endpoints (DiffMorpher, AID inner)
    EXTEND = "extend"             # attend to own + each endpoint's tokens (AID fused outer)


class AttentionBlocks(str, Enum):
    """Which UNet blocks' self-attention is injected."""
    UP = "up"          # the decoder half (DiffMorpher's choice)
    MID_UP = "mid_up"  # the bottleneck and the decoder
    ALL = "all"        # every self-attention layer


@dataclass(frozen=True)
class Settings:
    """Everything a run depends on, apart from the inputs, per-frame edits and the model."""
    # frames and schedule
    frames: int = 17                 # total frames including both inputs (>= 3)
    curve: Curve = Curve.UNIFORM
    curve_alpha: float = 1.0         # Beta curve parameters (> 0)
    curve_beta: float = 1.0
    curve_points: tuple = ()         # ((x, y), ...) control points in [0,1]^2 for Curve.CUSTOM
    noise_min: float = 0.30          # fraction of the DDIM schedule at the finest level (paper: 0.30)
    noise_max: float = 0.55          # fraction at the coarsest level (paper: 0.55)
    noise_shape: NoiseShape = NoiseShape.LINEAR
    # sampling
    scheme: Scheme = Scheme.METHOD
    num_inference_steps: int = 200   # S, DDIM steps of the full schedule (paper: >= 200)
    eta: float = 0.1                 # DDIM eta (paper code: mostly 0.1)
    guidance_scale: float = 7.5      # classifier-free guidance (paper: 7.5)
    seed: int = 0                    # run seed; frame/candidate generators derive from it
    candidates: int = 0              # per frame; 0 = paper rule 8, 7, 6, ... never below 3
    # text
    prompt: str = ""                 # shared prompt, or prompt of image A when prompt_b is set
    prompt_b: Optional[str] = None   # prompt of image B (None: same as prompt)
    negative_prompt: str = ""        # shared negative, or negative of image A when set for B too
    negative_prompt_b: Optional[str] = None  # negative of image B (None: shared, as the paper)
    invert_steps: int = 0            # textual inversion iterations (0 = off; paper: 500)
    invert_lr: float = 1e-4          # Adam learning rate (paper: 1e-4)
    # pose
    pose: bool = False               # pose guidance through the OpenPose ControlNet
    pose_all_people: bool = False    # False: keep the largest person; True: all, left to right
    control_peak: float = 1.5        # ControlNet scale at the middle frame (1.0 at the ends)
    controlnet_conditioning_scale: float = 1.0  # global multiplier of the ramp
    # ranking
    rank_positive: str = ""          # CLIP positive text; empty with rank_negative empty = no ranking
    rank_negative: str = ""
    # endpoint attention (beyond the paper; interp.attention)
    attention: AttentionMode = AttentionMode.OFF
    attention_strength: float = 1.0  # 0 = the paper's frames, 1 = full injection (measured best)
    attention_share: float = 1.0     # the first share of each frame's denoising steps
    attention_blocks: AttentionBlocks = AttentionBlocks.ALL
    # inputs
    size: Optional[int] = None       # long side in pixels (multiple of 64); None: the model's
    #                                  native area (512^2, 768^2, 1024^2) at the input's aspect
    width: Optional[int] = None      # exact working size (both, multiples of 64): wins over size
    height: Optional[int] = None
    fit: Fit = Fit.CROP

    def __post_init__(self) -> None:
        validate(self)

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)

    @property
    def prompt_pair(self) -> tuple:
        """(prompt of A, prompt of B)."""
        return self.prompt, self.prompt if self.prompt_b is None else self.prompt_b

    @property
    def negative_pair(self) -> tuple:
        """(negative prompt of A, of B): one shared negative unless negative_prompt_b is set."""
        b = self.negative_prompt if self.negative_prompt_b is None else self.negative_prompt_b
        return self.negative_prompt, b

    def to_dict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "Settings":
        return cls(**_coerce_fields(cls, data))


@dataclass(frozen=True)
class Export:
    """Video export knobs."""
    fps: float = 10.0
    pingpong: bool = False     # play forward then backward (no repeated turn-around frames)
    gif_loop: int = 0          # GIF loop count; 0 = forever
    hold_first: int = 0        # extra copies of the first frame
    hold_last: int = 0         # extra copies of the last frame

    def __post_init__(self) -> None:
        lim = limits.current()
        real("fps", self.fps)
        check(self.fps > 0, "fps", self.fps, "a positive number")
        if self.fps > lim.fps:
            raise ValueError(f"fps={self.fps!r} is not allowed: expected at most {lim.fps}, "
                             f"this server's limit, set by {limits.env_name('fps')}")
        check(isinstance(self.pingpong, bool), "pingpong", self.pingpong, "true or false")
        whole("gif_loop", self.gif_loop, 0, lim.gif_loop, "gif_loop", " (0 = forever)")
        for name in ("hold_first", "hold_last"):
            whole(name, getattr(self, name), 0, lim.hold_frames, "hold_frames")

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "Export":
        return cls(**_coerce_fields(cls, data))


@dataclass(frozen=True)
class FrameEdit:
    """One frame's overrides; every field None/default means "as the run says"."""
    prompt: Optional[str] = None           # positive prompt override
    negative_prompt: Optional[str] = None  # negative prompt override
    strength: float = 1.0                  # 0 = interpolated condition, 1 = the override's embedding
    keyframe: bool = False                 # the override becomes an anchor of the text path
    seed: Optional[int] = None             # explicit seed for this frame's candidates
    noise: Optional[float] = None          # schedule fraction overriding the level's noise
    pose: Optional[Pose] = None            # overrides the interpolated pose (JSON is parsed once)
    candidate: Optional[int] = None        # user's pick among the frame's candidates

    def __post_init__(self) -> None:
        lim = limits.current()
        real("strength", self.strength)
        check(0.0 <= self.strength <= 1.0, "strength", self.strength, "a number in [0, 1]")
        if self.noise is not None:
            real("noise", self.noise)
            check(0.0 < self.noise < 1.0, "noise", self.noise, "a fraction in (0, 1)")
        if self.candidate is not None:
            whole("candidate", self.candidate, 0, lim.candidates - 1, "candidates")
        if self.seed is not None:
            check(is_int(self.seed) and 0 <= self.seed < 2**63, "seed", self.seed,
                   "an integer in [0, 2^63)")
        for name in ("prompt", "negative_prompt"):
            string(name, getattr(self, name), lim, optional=True)
        check(isinstance(self.keyframe, bool), "keyframe", self.keyframe, "true or false")
        if self.pose is not None and not isinstance(self.pose, Pose):
            check(isinstance(self.pose, (dict, str)), "pose", self.pose,
                  "an OpenPose JSON object or null")
            object.__setattr__(self, "pose", Pose.from_json(self.pose))

    def replace(self, **changes: Any) -> "FrameEdit":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The fields that are set, JSON-ready (the pose as OpenPose JSON)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if getattr(self, f.name) != f.default}
        if self.pose is not None:
            out["pose"] = self.pose.to_json()
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "FrameEdit":
        return cls(**_coerce_fields(cls, data))


PRESETS: dict = {
    "draft": dict(num_inference_steps=25, frames=9, eta=0.0, candidates=1, invert_steps=0),
    "balanced": dict(num_inference_steps=50, frames=17, eta=0.1, candidates=3, invert_steps=100),
    "paper": dict(num_inference_steps=200, frames=17, eta=0.1, guidance_scale=7.5, noise_min=0.30,
                  noise_max=0.55, candidates=0, invert_steps=500, invert_lr=1e-4, control_peak=1.5),
}


def preset(name: str, **overrides: Any) -> Settings:
    """Settings of a named preset (draft, balanced, paper) with explicit overrides on top."""
    if name not in PRESETS:
        raise ValueError(f"preset={name!r} is unknown; choose one of {sorted(PRESETS)}")
    return Settings(**{**PRESETS[name], **overrides})


def candidates_for_level(settings: Settings, level: int) -> int:
    """Candidates per frame: fixed, or the paper's 8 at level 1, one fewer per level, never below 3."""
    if settings.candidates > 0:
        return settings.candidates
    return max(8 - (level - 1), 3)


def validate(s: Settings) -> None:
    """Raise ValueError naming the first impossible field; upper bounds come from interp.limits."""
    lim = limits.current()
    whole("frames", s.frames, 3, lim.frames, "frames", " (both inputs included)")
    whole("num_inference_steps", s.num_inference_steps, 2, lim.steps, "steps")
    for name in _REAL_FIELDS:
        real(name, getattr(s, name))
    check(0.0 < s.noise_min <= s.noise_max < 1.0, "noise_min/noise_max",
           (s.noise_min, s.noise_max), "fractions with 0 < noise_min <= noise_max < 1")
    check(0.0 <= s.eta <= 1.0, "eta", s.eta, "a number in [0, 1]")
    check(0.0 <= s.guidance_scale <= 50.0, "guidance_scale", s.guidance_scale, "in [0, 50]")
    check(s.curve_alpha > 0 and s.curve_beta > 0, "curve_alpha/curve_beta",
           (s.curve_alpha, s.curve_beta), "positive numbers")
    _candidates(s.candidates, lim)
    whole("invert_steps", s.invert_steps, 0, lim.invert_steps, "invert_steps", " (0 = off)")
    check(0.0 < s.invert_lr < 1.0, "invert_lr", s.invert_lr, "a number in (0, 1)")
    for name in ("size", "width", "height"):
        value = getattr(s, name)
        if value is not None:
            whole(name, value, 64, lim.size, "size", " in pixels")
            check(value % 64 == 0, name, value, "a multiple of 64 (64, 128, ..., 512, ...)")
    check((s.width is None) == (s.height is None), "width/height", (s.width, s.height),
          "both or neither (the exact working size)")
    real("attention_strength", s.attention_strength)
    real("attention_share", s.attention_share)
    check(0.0 <= s.attention_strength <= 1.0, "attention_strength", s.attention_strength,
          "a number in [0, 1]")
    check(0.0 < s.attention_share <= 1.0, "attention_share", s.attention_share,
          "a share of the steps in (0, 1]")
    check(is_int(s.seed) and 0 <= s.seed < 2**63, "seed", s.seed, "an integer in [0, 2^63)")
    check(0.0 <= s.control_peak <= 10.0, "control_peak", s.control_peak, "in [0, 10]")
    check(0.0 <= s.controlnet_conditioning_scale <= 10.0, "controlnet_conditioning_scale",
           s.controlnet_conditioning_scale, "in [0, 10]")
    for name in ("prompt", "negative_prompt", "rank_positive", "rank_negative", "prompt_b",
                 "negative_prompt_b"):
        string(name, getattr(s, name), lim, optional=name.endswith("_b"))
    for name in ("pose", "pose_all_people"):
        check(isinstance(getattr(s, name), bool), name, getattr(s, name), "true or false")
    _curve_points(s, lim)


_REAL_FIELDS = ("noise_min", "noise_max", "eta", "guidance_scale", "curve_alpha", "curve_beta",
                "invert_lr", "control_peak", "controlnet_conditioning_scale")


def _candidates(value: Any, lim: "limits.Limits") -> None:
    whole("candidates", value, 0, lim.candidates, "candidates", " (0 = the paper's rule)")
    if value == 0 and not lim.paper_rule:
        raise ValueError(f"candidates=0 (the paper's {limits.PAPER_CANDIDATES}, 7, 6, ... per "
                         f"level) is not allowed here: this server allows at most "
                         f"{lim.candidates} ({limits.env_name('candidates')}); choose 1 to "
                         f"{lim.candidates}")


def _curve_points(s: Settings, lim: "limits.Limits") -> None:
    points = s.curve_points
    check(isinstance(points, (tuple, list)), "curve_points", points, "a list of (x, y) pairs")
    if len(points) > lim.curve_points:
        raise ValueError(f"curve_points has {len(points)} points, over this server's limit of "
                         f"{lim.curve_points} (set by {limits.env_name('curve_points')})")
    for i, point in enumerate(points):
        check(isinstance(point, (tuple, list)) and len(point) == 2, f"curve_points[{i}]", point,
               "an (x, y) pair")
        for value in point:
            real(f"curve_points[{i}]", value)
    if s.curve == Curve.CUSTOM:
        check(len(points) >= 1, "curve_points", points,
               "at least one (x, y) point for the custom curve")


def _plain(value: Any) -> Any:
    """A JSON-ready copy: enums become their value, tuples lists."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


_ENUMS = {"curve": Curve, "noise_shape": NoiseShape, "scheme": Scheme, "fit": Fit,
          "attention": AttentionMode, "attention_blocks": AttentionBlocks}


def _coerce_fields(cls: type, data: dict) -> dict:
    """Check keys against the dataclass and turn JSON values back into enums and tuples."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; known: {sorted(names)}")
    out = dict(data)
    for name, enum in _ENUMS.items():
        if name in out and not isinstance(out[name], enum):
            try:
                out[name] = enum(out[name])
            except ValueError:
                raise ValueError(f"{name}={out[name]!r} is not one of "
                                 f"{[e.value for e in enum]}") from None
    if "curve_points" in out:
        out["curve_points"] = _pairs(out["curve_points"])
    return out


def _pairs(points: Any) -> tuple:
    """JSON control points [[x, y], ...] -> ((x, y), ...); ValueError naming the field."""
    bound = limits.current().curve_points
    try:
        if isinstance(points, (str, bytes, Mapping)) or len(points) > bound:
            raise TypeError
        return tuple((float(x), float(y)) for x, y in points)
    except (TypeError, ValueError):
        if isinstance(points, (list, tuple)) and len(points) > bound:
            raise ValueError(f"curve_points has {len(points)} points, over this server's limit "
                             f"of {bound} (set by {limits.env_name('curve_points')})") from None
        raise ValueError(f"curve_points={short(points)} is not allowed: expected a list of "
                         "[x, y] number pairs, e.g. [[0.25, 0.1], [0.75, 0.9]]") from None
