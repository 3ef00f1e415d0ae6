"""GPU seconds a render needs, estimated from its plan's model rows, against what a Space allows.

On a ZeroGPU Space, `spaces.GPU(duration=...)` takes seconds or a callable that is given the
decorated function's own arguments and returns seconds (huggingface.co/docs/hub/spaces-zerogpu,
"Dynamic duration"); the default is 60 s, and a request above the platform's per-call maximum
fails before it runs ("illegal duration"; HF staff: 5 minutes at most, zero-gpu-explorers/README
discussion 7). `estimate_budget` gives the duration to ask for and, when the render cannot fit,
a message naming the estimate, the cap and what to lower.

No GPU was measured in this project. The seconds per row below are conservative figures derived
from public A100 numbers (fal-ai/stable-diffusion-benchmarks: diffusers + torch 2.1 SDPA, fp16,
50 steps with CFG = 100 UNet rows: SD 1.5 at 512^2 in 1.591 s end to end, <= 0.016 s/row; SDXL at
1024^2 in 5.933 s, <= 0.059 s/row), taken ~1.5x slower for this code's small per-frame batches and
for ZeroGPU's half-H200 slice (about an A100's compute). Replace them with benchmarks/gpu.py's
figures when a GPU is at hand.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Collection, Mapping, Optional

from interp import limits
from interp.attention import injected_steps
from interp.images import working_size
from interp.plan import Plan, fraction_to_index, make_plan
from interp.sampling import cfg_factor
from interp.settings import AttentionMode, FrameEdit, Scheme, Settings, candidates_for_level
from interp.timeline import Layout, Timeline, layout, segment_settings

INVERSION_FACTOR = 3.0   # an inversion row is a forward and a backward pass (~2 forwards)
MARGIN = 1.25            # on the compute estimate, for what the figures do not model


@dataclass(frozen=True)
class Rows:
    """Model rows of a render (samples through a network; classifier-free guidance doubles them)."""
    unet: int = 0          # denoising UNet rows, endpoint-attention rows included
    endpoint: int = 0      # of which endpoint-attention rows
    controlnet: int = 0    # ControlNet rows: with pose guidance, one per denoising UNet row
    inversion: int = 0     # UNet rows of textual inversion (each with a backward pass)
    vae_decode: int = 0    # images decoded: every candidate
    vae_encode: int = 0    # images encoded: keyframes, and 2 augmented images per inversion iteration
    clip: int = 0          # candidates scored by CLIP

    def __add__(self, other: "Rows") -> "Rows":
        return Rows(*(getattr(self, f.name) + getattr(other, f.name)
                      for f in dataclasses.fields(self)))


@dataclass(frozen=True)
class RowCost:
    """Seconds per row at `area` pixels on a ZeroGPU slice (UNet, ControlNet and VAE scale
    linearly with the pixel count; CLIP sees 224^2 whatever the size), plus a fixed cost per call."""
    area: int
    unet: float
    controlnet: float
    vae_decode: float
    vae_encode: float
    clip: float
    overhead: float        # per GPU call: weights onto the GPU, prompt encoding, cache writes


COSTS = {
    # SD 1.x / 2.x at 512^2: UNet 0.025 s (public <= 0.016 x ~1.5); ControlNet 0.42 x the UNet (its
    # 361 M / 859 M parameters); VAE decode 0.06 s, encode 0.04 s; ViT-L/14 0.01 s per image;
    # 10 s per call to move ~3.5 GB of fp16 weights (UNet, ControlNet, CLIP) and encode prompts.
    "sd": RowCost(512 * 512, unet=0.025, controlnet=0.011, vae_decode=0.06, vae_encode=0.04,
                  clip=0.01, overhead=10.0),
    # SDXL at 1024^2: UNet 0.09 s (public <= 0.059 x 1.5); ControlNet 0.49 x (1.25 B / 2.57 B);
    # its VAE may run in float32 (no fp16-fix cached): decode 0.5 s, encode 0.3 s; ~10 GB of weights.
    "sdxl": RowCost(1024 * 1024, unet=0.09, controlnet=0.044, vae_decode=0.5, vae_encode=0.3,
                    clip=0.01, overhead=20.0),
}


class GpuBudgetExceeded(ValueError):
    """A request whose estimated GPU time is above what the Space allows per request."""


@dataclass(frozen=True)
class GpuBudget:
    """The estimate of one request and what to ask the GPU decorator for."""
    rows: Rows
    seconds: float         # estimated GPU seconds: overhead + MARGIN x compute
    cap: int               # the most one request may ask for (limits: INTERP_MAX_GPU_SECONDS)
    problem: Optional[str]  # why it cannot run within the cap (None: it fits)

    @property
    def fits(self) -> bool:
        return self.problem is None

    @property
    def duration(self) -> int:
        """Whole seconds for spaces.GPU(duration=...): the estimate rounded up, at most the cap."""
        return min(self.cap, math.ceil(self.seconds))

    def check(self) -> None:
        """Raise GpuBudgetExceeded (a ValueError) with the message when it does not fit."""
        if self.problem is not None:
            raise GpuBudgetExceeded(self.problem)


# -- rows of a plan -----------------------------------------------------------------------------

def segment_rows(settings: Settings, edits: Optional[Mapping[int, FrameEdit]] = None,
                 frames: Optional[Collection[int]] = None, max_batch: Optional[int] = None,
                 invert: bool = True) -> Rows:
    """Rows of one two-image render (both endpoint encodes included): every in-between frame, or
    only `frames` (local numbers), with nothing reused from the cache; `invert=False` when the
    inversion is known to be cached."""
    plan = make_plan(settings)
    todo = [n.index for n in plan.nodes[1:-1] if frames is None or n.index in frames]
    rows = _frame_rows(plan, settings, edits or {}, todo, max_batch)
    factor = cfg_factor(settings.guidance_scale)
    steps = settings.invert_steps if invert else 0
    return rows + Rows(inversion=2 * factor * steps, vae_encode=2 + 2 * steps)


def timeline_rows(timeline: Timeline, settings: Settings, fps: float = 10.0,
                  edits: Optional[Mapping[int, FrameEdit]] = None,
                  frames: Optional[Collection[int]] = None, max_batch: Optional[int] = None,
                  invert: bool = True) -> Rows:
    """Rows of a timeline render: each segment's, with `edits` and `frames` in global numbers (a
    segment with none of `frames` inverts nothing); each keyframe is encoded once."""
    where = layout(timeline, settings, fps)
    total = Rows(vae_encode=len(timeline.keyframes))
    for s in range(len(timeline.pairs)):
        local_edits, local_frames = _localise(where, s, edits or {}, frames)
        seg = segment_rows(segment_settings(timeline, settings, s, fps), local_edits, local_frames,
                           max_batch, invert and local_frames != set())
        total = total + dataclasses.replace(seg, vae_encode=seg.vae_encode - 2)
    return total


def frames_to_redo(timeline: Timeline, settings: Settings, frame: int, fps: float = 10.0,
                   itself: bool = True) -> frozenset:
    """Global numbers of the frames a change to `frame` remakes: its descendants, and itself
    unless only its candidate pick changed (itself=False)."""
    where = layout(timeline, settings, fps)
    s, local = where.locate(frame)
    plan = make_plan(segment_settings(timeline, settings, s, fps))
    redo = set(plan.descendants(local)) | ({local} if itself else set())
    return frozenset(where.global_index(s, i) for i in redo)


def _localise(where: Layout, s: int, edits: Mapping[int, FrameEdit],
              frames: Optional[Collection[int]]) -> tuple:
    """Segment s's edits and frames in its local numbers (None: all of its frames)."""
    local = {where.global_index(s, i): i for i in range(where.counts[s])}
    seg_edits = {local[g]: e for g, e in edits.items() if g in local}
    seg_frames = None if frames is None else {local[g] for g in frames if g in local}
    return seg_edits, seg_frames


def _frame_rows(plan: Plan, settings: Settings, edits: Mapping[int, FrameEdit], todo: list,
                max_batch: Optional[int]) -> Rows:
    """Rows of the in-between frames `todo` under the settings' scheme."""
    if settings.scheme == Scheme.INTERPOLATE_ONLY:
        return Rows(vae_decode=len(todo))
    if settings.scheme == Scheme.INTERPOLATE_DENOISE:
        return _interpolate_denoise_rows(plan, settings, todo)
    rows = Rows()
    for i in todo:
        rows = rows + _method_frame(plan, settings, edits.get(i), i, max_batch)
    return rows


def _method_frame(plan: Plan, settings: Settings, edit: Optional[FrameEdit], i: int,
                  max_batch: Optional[int]) -> Rows:
    """One frame of the method (or of DiD, one candidate and no control): K x (d + 1) x CFG UNet
    rows, plus 2 endpoint rows x CFG per injected step and candidate batch with attention on."""
    node, method = plan.nodes[i], settings.scheme == Scheme.METHOD
    k = candidates_for_level(settings, node.level) if method else 1
    d = node.ddim_index
    if method and edit is not None and edit.noise is not None:
        d = fraction_to_index(settings.num_inference_steps, edit.noise)
    factor = cfg_factor(settings.guidance_scale)
    unet, endpoint = k * (d + 1) * factor, 0
    if method and settings.attention != AttentionMode.OFF and settings.attention_strength > 0:
        batches = -(-k // (max_batch or k))
        endpoint = 2 * injected_steps(settings.attention_share, d + 1) * factor * batches
    ranked = method and k > 1 and bool(settings.rank_positive or settings.rank_negative)
    return Rows(unet=unet + endpoint, endpoint=endpoint,
                controlnet=unet + endpoint if method and settings.pose else 0,
                vae_decode=k, clip=k if ranked else 0)


def _interpolate_denoise_rows(plan: Plan, settings: Settings, todo: list) -> Rows:
    """Baseline 2: each frame denoised fully from a noise level that grows toward the middle."""
    s, factor = settings, cfg_factor(settings.guidance_scale)
    unet = 0
    for i in todo:
        pos = plan.nodes[i].position
        frac = s.noise_min + (s.noise_max - s.noise_min) * 2 * min(pos, 1 - pos)
        unet += (fraction_to_index(s.num_inference_steps, frac) + 1) * factor
    return Rows(unet=unet, vae_decode=len(todo))


# -- seconds --------------------------------------------------------------------------------------

def compute_seconds(rows: Rows, family: str, width: int, height: int) -> float:
    """GPU seconds of the rows at a width x height working size (no margin, no overhead)."""
    cost = _cost(family)
    scale = width * height / cost.area
    pixels = (rows.unet * cost.unet + rows.inversion * INVERSION_FACTOR * cost.unet
              + rows.controlnet * cost.controlnet + rows.vae_decode * cost.vae_decode
              + rows.vae_encode * cost.vae_encode)
    return pixels * scale + rows.clip * cost.clip


def estimate_seconds(rows: Rows, family: str, width: int, height: int) -> float:
    """Estimated GPU seconds of one request: the call overhead + MARGIN x the compute."""
    return _cost(family).overhead + MARGIN * compute_seconds(rows, family, width, height)


def gpu_cap() -> int:
    """The most GPU seconds one request may ask for: 300 (ZeroGPU's per-call maximum), lowered by
    INTERP_MAX_GPU_SECONDS (e.g. 120 for visitors who are not signed in)."""
    return limits.current().gpu_seconds


def estimate_budget(rows: Rows, family: str, width: int, height: int, settings: Settings,
                    cap: Optional[int] = None) -> GpuBudget:
    """The GpuBudget of a request of `rows` at width x height: its estimate, the cap (default
    gpu_cap()) and, above the cap, a message naming both and what to lower."""
    cap = gpu_cap() if cap is None else cap
    seconds = estimate_seconds(rows, family, width, height)
    problem = None
    if seconds > cap:
        problem = (f"This render needs about {math.ceil(seconds)} s of GPU time (estimated from "
                   f"{rows.unet + rows.inversion} UNet rows at {width} x {height}), more than the "
                   f"{cap} s this Space allows per request. Lower "
                   f"{_what_to_lower(rows, family, width, height, settings)} to fit.")
    return GpuBudget(rows, seconds, cap, problem)


def request_budget(engine, timeline: Timeline, settings: Settings, fps: float = 10.0, *,
                   edits: Optional[Mapping[int, FrameEdit]] = None,
                   frames: Optional[Collection[int]] = None, invert: bool = True,
                   cap: Optional[int] = None) -> GpuBudget:
    """The GpuBudget of rendering `timeline` on an Interpolator: its model family, its batch size
    and the working size of the first keyframe (timeline_rows, then estimate_budget)."""
    bundle = engine.bundle
    first = timeline.keyframes[0].image
    width, height = working_size(first.width, first.height, settings, bundle.native_size)
    rows = timeline_rows(timeline, settings, fps, edits, frames, engine.max_batch, invert)
    return estimate_budget(rows, bundle.family, width, height, settings, cap)


def _what_to_lower(rows: Rows, family: str, width: int, height: int, settings: Settings) -> str:
    """The knobs behind the estimate, largest share first, with their values, then the size."""
    def share(**fields) -> float:
        return compute_seconds(Rows(**fields), family, width, height)
    parts = [
        (share(unet=rows.unet - rows.endpoint, vae_decode=rows.vae_decode, clip=rows.clip),
         f"the frames ({settings.frames}), DDIM steps ({settings.num_inference_steps}) or "
         f"candidates ({settings.candidates or 'the paper rule'})"),
        (share(inversion=rows.inversion, vae_encode=rows.vae_encode if rows.inversion else 0),
         f"the inversion iterations ({settings.invert_steps})"),
        (share(unet=rows.endpoint), "endpoint attention (turn it off)"),
        (share(controlnet=rows.controlnet), "pose guidance (turn it off)"),
    ]
    named = [text for seconds, text in sorted(parts, key=lambda p: -p[0]) if seconds > 0]
    return ", ".join(named + [f"the size ({width} x {height})"])


def _cost(family: str) -> RowCost:
    if family not in COSTS:
        raise ValueError(f"family={family!r} has no GPU cost figures: expected one of {sorted(COSTS)}")
    return COSTS[family]
