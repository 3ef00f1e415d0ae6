"""The frame graph: coarse-to-fine generation with keys, cache lookups, events and cancellation.

`Interpolator.render` is idempotent: it generates what is missing from the store and reuses the
rest, so editing a frame (prompt, seed, pose, noise, pick) and rendering again regenerates exactly
that frame and its descendants (interp.edits makes such edit maps).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch

from interp import baselines
from interp.attention import Injection, injected_steps
from interp.edits import check_candidate, check_edits
from interp.events import (CancelToken, DenoiseStep, Done, EventCallback, FrameReady, FrameStarted,
                           PlanReady, ignore_event)
from interp.images import prepare_pair, to_pil, to_tensor
from interp.inversion import invert
from interp.keys import endpoint_key, engine_identity, frame_key, scores_key
from interp.plan import Plan, fraction_to_index, make_plan
from interp.rank import best
from interp.results import FrameResult, RenderResult
from interp.sampling import (Control, Guidance, cfg_factor, denoise, derive_seed, make_generator,
                             noised_slerp, randn)
from interp.scheduler import by_index
from interp.settings import AttentionMode, FrameEdit, Scheme, Settings, candidates_for_level
from interp.store import FrameStore, Record
from interp.text import TextPath, plain_conditions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameContext:
    """What every frame of one render reads, built once per render."""
    bundle: Any
    identity: str                     # engine identity (model + dtype): part of every key
    store: FrameStore
    scorer: Any                       # interp.rank.ClipScorer or None
    scheduler: Any                    # DDIMScheduler with its timesteps set
    timesteps: tuple                  # DDPM timestep of each DDIM index (ascending)
    plan: Plan
    settings: Settings
    path: TextPath                    # text condition of every frame
    controls: Optional[list]          # per-frame Control, or None without pose guidance
    on_event: EventCallback
    cancel: Optional[CancelToken]
    max_batch: Optional[int]          # most candidates per denoising batch (None: all)
    warnings: list                    # messages for the user, collected during the render
    endpoints: tuple = ()             # clean latents of both inputs (endpoint attention)


@dataclass
class Job:
    """One prepared render: its context, edits, the frames made so far, and how they are made."""
    ctx: FrameContext
    edits: dict
    frames: dict                      # index -> FrameResult (the inputs from the start)
    inversion_steps: int              # textual-inversion iterations run while preparing
    latents: tuple                    # clean latents of both inputs

    @property
    def order(self) -> tuple:
        """In-between frames in generation order (coarse to fine); a baseline makes all at once."""
        plan = self.ctx.plan
        return plan.order if self.ctx.settings.scheme == Scheme.METHOD else plan.order[:1]

    def make(self, i: int) -> None:
        """Make (or reuse) frame i of the method; for a baseline, its whole sequence."""
        if self.ctx.settings.scheme == Scheme.METHOD:
            self.frames[i] = make_frame(self.ctx, i, self.frames, self.edits.get(i, FrameEdit()))
        else:
            self.frames.update(baseline_frames(self.ctx, *self.latents))

    def result(self, counts: dict) -> RenderResult:
        """The RenderResult, whole, once every frame is made."""
        ctx = self.ctx
        ordered = tuple(self.frames[i] for i in range(len(ctx.plan.nodes)))
        return RenderResult(
            frames=ordered, plan=ctx.plan, settings=ctx.settings, edits=self.edits, counts=counts,
            expected_counts=expected_counts(ordered, ctx.settings, self.inversion_steps,
                                            ctx.max_batch),
            warnings=tuple(ctx.warnings), inversion_steps=self.inversion_steps)


class Interpolator:
    """Renders sequences over one loaded ModelBundle, a frame store and an optional CLIP scorer."""

    def __init__(self, bundle, store: Optional[FrameStore] = None, scorer=None,
                 max_batch: Optional[int] = None):
        """max_batch: most candidates denoised together (None = all of a frame in one batch);
        lower it when a frame's batch (x2 for CFG) does not fit in memory."""
        if max_batch is not None and (not isinstance(max_batch, int) or max_batch < 1):
            raise ValueError(f"max_batch={max_batch!r} must be a positive integer or None")
        self.bundle = bundle
        self.store = store if store is not None else FrameStore()
        self.scorer = scorer
        self.max_batch = max_batch
        self.identity = engine_identity(bundle)

    def render(self, image_a, image_b, settings: Settings,
               edits: Optional[Mapping[int, FrameEdit]] = None, *, pose_a=None, pose_b=None,
               on_event: EventCallback = ignore_event,
               cancel: Optional[CancelToken] = None) -> RenderResult:
        """Generate (or reuse) every frame of the sequence, coarse to fine."""
        start = self.bundle.counter.snapshot()
        job = self.prepare(image_a, image_b, settings, edits, pose_a=pose_a, pose_b=pose_b,
                           on_event=on_event, cancel=cancel)
        for i in job.order:
            job.make(i)
        result = job.result(self.bundle.counter.since(start))
        on_event(Done(result))
        return result

    def prepare(self, image_a, image_b, settings: Settings,
                edits: Optional[Mapping[int, FrameEdit]] = None, *, pose_a=None, pose_b=None,
                plan: Optional[Plan] = None, on_event: EventCallback = ignore_event,
                cancel: Optional[CancelToken] = None) -> "Job":
        """Everything before the first in-between frame: inputs, plan (given: a timeline's plan
        of this segment, made on this model's schedule), text conditions, poses."""
        edits = check_edits(edits or {}, settings.frames)
        # 1. Inputs at one size, and their clean latents (cached by content).
        a, b = prepare_pair(image_a, image_b, settings, self.bundle.native_size)
        z_a, z_b = self._endpoint_latents(a), self._endpoint_latents(b)
        # 2. The plan on this model's DDIM schedule; callers see it before any frame.
        scheduler = self.bundle.make_scheduler(settings.num_inference_steps)
        timesteps = tuple(by_index(scheduler).tolist())
        plan = plan if plan is not None else make_plan(settings, timesteps)
        on_event(PlanReady(plan, settings, (a, b)))
        last = len(plan.nodes) - 1
        frames = {0: self._endpoint(plan, 0, a, z_a), last: self._endpoint(plan, last, b, z_b)}
        for i in (0, last):
            on_event(FrameReady(frames[i]))
        # 3. Text conditions (plain or textual inversion) and the pose path.
        conds, inverted = self._conditions(a, b, settings, on_event, cancel)
        positions = [n.position for n in plan.nodes]
        ctx = FrameContext(
            bundle=self.bundle, identity=self.identity, store=self.store, scorer=self.scorer,
            scheduler=scheduler, timesteps=timesteps, plan=plan, settings=settings,
            path=TextPath(self.bundle, conds, positions, edits),
            controls=self._controls(a, b, settings, edits, positions, pose_a, pose_b, on_event,
                                    cancel),
            on_event=on_event, cancel=cancel, max_batch=self.max_batch, warnings=[],
            endpoints=(z_a, z_b))
        return Job(ctx, edits, frames, inverted, (z_a, z_b))

    # -- what a render prepares ----------------------------------------------------------------
    def _endpoint_latents(self, image) -> torch.Tensor:
        """An input's clean latent from the store, or encoded and stored; always the stored copy,
        so a frame made from it is the same bit for bit whether the latent was just encoded or not
        (a fresh VAE output can have another memory layout, which CPU kernels round differently)."""
        key = endpoint_key(self.identity, image)
        record = self.store.get(key)
        if record is None:
            with torch.no_grad():
                z = self.bundle.encode_images(to_tensor([image]).to(self.bundle.device,
                                                                    self.bundle.dtype))
            record = Record(tensors={"latents": z.float().cpu()}).copy()
            self.store.put(key, record)
        return record.tensors["latents"].float()

    def _endpoint(self, plan: Plan, index: int, image, z: torch.Tensor) -> FrameResult:
        node = plan.nodes[index]
        return FrameResult(index=node.index, position=node.position, level=0,
                           key=endpoint_key(self.identity, image), images=(image,), latents=z)

    def _conditions(self, a, b, settings, on_event, cancel) -> tuple:
        """(TextConditions, inversion iterations run here: 0 when plain or reused from the store)."""
        if settings.invert_steps == 0:
            return plain_conditions(self.bundle, settings), 0
        images = to_tensor([a, b]).to(self.bundle.device)
        result = invert(self.bundle, images, settings, self.store, on_event, cancel)
        return result.conds, 0 if result.reused else settings.invert_steps

    def _controls(self, a, b, settings, edits, positions, pose_a, pose_b, on_event,
                  cancel) -> Optional[list]:
        """Per-frame Control (rendered pose, ramped scale), or None when pose guidance is off."""
        if not settings.pose:
            return None
        from interp.pose.control import frame_controls
        return frame_controls(self.bundle, self.store, a, b, settings, edits, positions,
                              pose_a, pose_b, on_event=on_event, cancel=cancel)


# -- one frame of the method ---------------------------------------------------------------------

def make_frame(ctx: FrameContext, i: int, frames: Mapping[int, FrameResult],
               edit: FrameEdit) -> FrameResult:
    """Make (or reuse) frame i's candidates from its parents' chosen latents, then choose one."""
    node = ctx.plan.nodes[i]
    lo, hi = (frames[p] for p in node.parents)
    settings = ctx.settings
    k = candidates_for_level(settings, node.level)
    ddim_index = (fraction_to_index(settings.num_inference_steps, edit.noise)
                  if edit.noise is not None else node.ddim_index)
    base = edit.seed if edit.seed is not None else derive_seed(settings.seed, i)
    seeds = tuple(derive_seed(base, c) for c in range(k))
    cond, uncond = ctx.path.at(i)
    control = ctx.controls[i] if ctx.controls is not None else None
    key = frame_key(identity=ctx.identity, settings=settings, node=node, ddim_index=ddim_index,
                    seeds=seeds, cond=cond, uncond=uncond, control=control,
                    parents=[(lo.key, lo.chosen), (hi.key, hi.chosen)])
    record = ctx.store.get(key)
    generated = record is None
    if generated:
        ctx.on_event(FrameStarted(i, node.level, k))
        record = generate(ctx, i, (lo.latent, hi.latent), ddim_index,
                          Guidance(cond, uncond, settings.guidance_scale), control, seeds)
        ctx.store.put(key, record)
    images = tuple(record.images)
    scores = candidate_scores(ctx, key, images)
    frame = FrameResult(index=i, position=node.position, level=node.level, key=key,
                        images=images, latents=record.tensors["latents"], scores=scores,
                        chosen=choose(i, edit, scores, k), generated=generated, seeds=seeds,
                        ddim_index=ddim_index, timestep=ctx.timesteps[ddim_index],
                        parents=node.parents)
    ctx.on_event(FrameReady(frame))
    return frame


def generate(ctx: FrameContext, i: int, parents: tuple, ddim_index: int, guidance: Guidance,
             control: Optional[Control], seeds: tuple) -> Record:
    """All candidates of one frame (in batches of max_batch): shared-noise slerp, DDIM, decode."""
    bundle = ctx.bundle
    z_lo, z_hi = (z.float() for z in parents)
    gens = [make_generator(s, bundle.device) for s in seeds]
    eps = torch.cat([randn(z_lo.shape[1:], g, "cpu")[None] for g in gens])
    start = noised_slerp(ctx.scheduler, z_lo, z_hi, ctx.plan.nodes[i].weight, eps,
                         ctx.timesteps[ddim_index])
    size = ctx.max_batch or len(gens)
    injection = frame_injection(ctx, i, eps[:1])
    chunks = []
    for lo in range(0, len(gens), size):
        part = gens[lo:lo + size]
        batch_control = None if control is None else Control(
            control.images.expand(len(part), *control.images.shape[1:]),
            control.scales.expand(len(part)))
        with torch.no_grad():
            chunks.append(denoise(bundle, ctx.scheduler, start[lo:lo + size], ddim_index,
                                  guidance, part, ctx.settings.eta, control=batch_control,
                                  cancel=ctx.cancel, injection=injection,
                                  on_step=lambda n, total: ctx.on_event(DenoiseStep(i, n, total))))
    latents = torch.cat(chunks)
    with torch.no_grad():
        images = to_pil(bundle.decode_latents(latents.to(bundle.dtype)).float())
    return Record(tensors={"latents": latents.float().cpu()}, images=tuple(images))


def frame_injection(ctx: FrameContext, i: int, eps: torch.Tensor) -> Optional[Injection]:
    """Frame i's endpoint attention (interp.attention), or None when it is off: the endpoints'
    latents, text conditions and poses, and the noise of the frame's first candidate."""
    s = ctx.settings
    if s.attention == AttentionMode.OFF or s.attention_strength == 0:
        return None
    last = len(ctx.plan.nodes) - 1
    (cond_a, uncond_a), (cond_b, uncond_b) = ctx.path.at(0), ctx.path.at(last)
    control = None
    if ctx.controls is not None:
        ends = (ctx.controls[0], ctx.controls[last])
        control = Control(torch.cat([c.images for c in ends]), torch.cat([c.scales for c in ends]))
    return Injection(s.attention, s.attention_strength, s.attention_share, s.attention_blocks,
                     ctx.plan.nodes[i].position, torch.cat(ctx.endpoints), eps,
                     torch.cat([cond_a, cond_b]), torch.cat([uncond_a, uncond_b]), control)


def candidate_scores(ctx: FrameContext, key: str, images: tuple) -> Optional[tuple]:
    """CLIP scores of the candidates (cached apart from the frame), or None without ranking."""
    settings = ctx.settings
    if len(images) < 2 or not (settings.rank_positive or settings.rank_negative):
        return None
    if ctx.scorer is None:
        msg = "ranking prompts are set but no CLIP model is loaded: using the first candidate"
        if msg not in ctx.warnings:
            log.warning(msg)
            ctx.warnings.append(msg)
        return None
    skey = scores_key(key, ctx.scorer.identity, settings.rank_positive, settings.rank_negative)
    record = ctx.store.get(skey)
    if record is None:
        scores = ctx.scorer.score(list(images), settings.rank_positive, settings.rank_negative)
        record = Record(tensors={}, meta={"scores": [float(s) for s in scores]})
        ctx.store.put(skey, record)
    return tuple(record.meta["scores"])


def choose(i: int, edit: FrameEdit, scores: Optional[tuple], k: int) -> int:
    """The user's pick, else the best CLIP score, else the first candidate."""
    if edit.candidate is not None:
        return check_candidate(i, edit.candidate, k)
    return 0 if scores is None else best(scores)


# -- the baselines -----------------------------------------------------------------------------------

def baseline_frames(ctx: FrameContext, z_a: torch.Tensor, z_b: torch.Tensor) -> dict:
    """Table 1 baselines: one candidate per frame, computed fresh (no frame cache), decoded together."""
    latents = baselines.run(ctx, z_a, z_b)
    order = sorted(latents)
    with torch.no_grad():
        decoded = ctx.bundle.decode_latents(torch.cat([latents[i] for i in order]).to(
            ctx.bundle.device, ctx.bundle.dtype))
    out = {}
    for i, image in zip(order, to_pil(decoded.float())):
        node = ctx.plan.nodes[i]
        out[i] = FrameResult(index=i, position=node.position, level=node.level, key="",
                             images=(image,), latents=latents[i].cpu(), generated=True,
                             parents=node.parents)
        ctx.on_event(FrameReady(out[i]))
    return out


# -- counts --------------------------------------------------------------------------------------------

def expected_counts(frames, settings: Settings, inversion_steps: int,
                    max_batch: Optional[int] = None) -> dict:
    """Analytic minimum of UNet rows: sum over generated frames of K x (DDIM steps run) x CFG,
    plus 2 x CFG rows per textual-inversion iteration run (one step on A, one on B), plus with
    endpoint attention 2 endpoint rows x CFG per injected step of each candidate batch."""
    if settings.scheme != Scheme.METHOD:
        return {}
    factor = cfg_factor(settings.guidance_scale)
    gen = [f for f in frames if f.generated]
    rows = sum(len(f.images) * (f.ddim_index + 1) * factor for f in gen)
    endpoint_rows = 0
    if settings.attention != AttentionMode.OFF and settings.attention_strength > 0:
        for f in gen:
            steps = injected_steps(settings.attention_share, f.ddim_index + 1)
            batches = -(-len(f.images) // (max_batch or len(f.images)))
            endpoint_rows += 2 * steps * factor * batches
    return {"unet_rows": rows + 2 * inversion_steps * factor + endpoint_rows,
            "vae_decode_rows": sum(len(f.images) for f in gen),
            "inversion_steps": inversion_steps, "endpoint_rows": endpoint_rows}
