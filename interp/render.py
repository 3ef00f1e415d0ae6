"""The frame graph: coarse-to-fine generation with keys, cache lookups, events and cancellation.

`Interpolator.render` is idempotent: it generates what is missing from the store and reuses the
rest, so editing a frame (prompt, seed, pose, noise, pick) and rendering again regenerates exactly
that frame and its descendants. `regenerate` and `select` return edited edit maps for that call.
"""
from __future__ import annotations

import logging
import random
from typing import Mapping, Optional

import torch

from interp import baselines
from interp.events import (CancelToken, DenoiseStep, Done, EventCallback, FrameReady, FrameStarted,
                     ignore_event)
from interp.images import prepare_pair, to_pil, to_tensor
from interp.keys import endpoint_key, frame_key, scores_key, tensor_key
from interp.plan import Plan, fraction_to_index, make_plan
from interp.results import FrameResult, RenderResult
from interp.sampling import (Control, Guidance, cfg_factor, denoise, derive_seed, make_generator,
                       noised_slerp, randn)
from interp.settings import FrameEdit, Scheme, Settings, candidates_for_level
from interp.store import FrameStore, Record
from interp.inversion import invert
from interp.text import TextPath, plain_conditions

log = logging.getLogger(__name__)


def regenerate(edits: Mapping[int, FrameEdit], frame: int, seed: Optional[int] = None) -> dict:
    """Edits that re-roll `frame` with a new seed (random when None); its pick is cleared."""
    seed = random.SystemRandom().randrange(2**63) if seed is None else seed
    old = edits.get(frame, FrameEdit())
    return {**edits, frame: FrameEdit(**{**old.__dict__, "seed": seed, "candidate": None})}


def select(edits: Mapping[int, FrameEdit], frame: int, candidate: int) -> dict:
    """Edits that pin candidate `candidate` of `frame` (its children then regenerate)."""
    old = edits.get(frame, FrameEdit())
    return {**edits, frame: FrameEdit(**{**old.__dict__, "candidate": candidate})}


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
        # Frames depend on the weights and on the precision they ran in.
        self.identity = f"{bundle.identity}|{str(bundle.dtype).replace('torch.', '')}"

    def render(self, image_a, image_b, settings: Settings,
               edits: Optional[Mapping[int, FrameEdit]] = None, *, pose_a=None, pose_b=None,
               on_event: EventCallback = ignore_event,
               cancel: Optional[CancelToken] = None) -> RenderResult:
        """Generate (or reuse) every frame of the sequence, coarse to fine."""
        edits = dict(edits or {})
        # 1. Inputs at one size, and their clean latents (cached by content).
        a, b = prepare_pair(image_a, image_b, settings.size, settings.fit)
        start = self.bundle.counter.snapshot()
        z_a, z_b = self._endpoint_latents(a), self._endpoint_latents(b)
        # 2. The plan: positions, tree, noise levels on this model's DDIM schedule.
        scheduler = self.bundle.make_scheduler()
        scheduler.set_timesteps(settings.num_inference_steps)
        timesteps = scheduler.timesteps.flip(0).tolist()
        plan = make_plan(settings, timesteps)
        _check_edits(edits, plan)
        # 3. Text conditions (plain or textual inversion) and the pose path.
        conds, inverted = self._conditions(a, b, settings, on_event, cancel)
        positions = [n.position for n in plan.nodes]
        path = TextPath(self.bundle, conds, positions, edits)
        controls = self._controls(a, b, settings, edits, positions, pose_a, pose_b)
        # 4. Endpoints, then every in-between frame in generation order.
        frames: dict = {0: self._endpoint(plan, 0, a, z_a), plan.nodes[-1].index:
                        self._endpoint(plan, len(plan.nodes) - 1, b, z_b)}
        warnings: list = []
        if settings.scheme != Scheme.METHOD:
            self._render_baseline(plan, settings, scheduler, z_a, z_b, path, frames, on_event,
                                  cancel)
        else:
            for i in plan.order:
                frames[i] = self._frame(i, plan, settings, scheduler, frames, path, controls,
                                        edits.get(i, FrameEdit()), warnings, on_event, cancel)
        result = RenderResult([frames[i] for i in range(len(plan.nodes))], plan, settings, edits,
                              warnings=warnings)
        result.counts = _delta(start, self.bundle.counter.snapshot())
        result.inversion_steps = inverted
        result.expected_counts = expected_counts(result)
        on_event(Done(result))
        return result

    # -- pieces ------------------------------------------------------------------------------
    def _endpoint_latents(self, image) -> torch.Tensor:
        key = endpoint_key(self.identity, image)
        record = self.store.get(key)
        if record is None:
            with torch.no_grad():
                z = self.bundle.encode_images(to_tensor([image]).to(self.bundle.device,
                                                                    self.bundle.dtype))
            record = Record(tensors={"latents": z.float().cpu()})
            self.store.put(key, record)
        return record.tensors["latents"].float()

    def _conditions(self, a, b, settings, on_event, cancel) -> tuple:
        """(TextConditions, inversion iterations run here: 0 when plain or reused from the store)."""
        if settings.invert_steps == 0:
            return plain_conditions(self.bundle, settings), 0
        images = to_tensor([a, b]).to(self.bundle.device)
        result = invert(self.bundle, images, settings, self.store, on_event, cancel)
        return result.conds, 0 if result.reused else settings.invert_steps

    def _endpoint(self, plan: Plan, index: int, image, z: torch.Tensor) -> FrameResult:
        node = plan.nodes[index]
        return FrameResult(index=node.index, position=node.position, level=0,
                           key=endpoint_key(self.identity, image), images=(image,),
                           latents=z)

    def _controls(self, a, b, settings, edits, positions, pose_a, pose_b) -> Optional[list]:
        """Per-frame Control (rendered pose, ramped scale), or None when pose guidance is off."""
        if not settings.pose:
            return None
        from interp.pose.control import frame_controls
        return frame_controls(self.bundle, self.store, a, b, settings, edits, positions,
                              pose_a, pose_b)

    def _frame(self, i, plan, settings, scheduler, frames, path, controls, edit, warnings,
               on_event, cancel) -> FrameResult:
        """Make (or reuse) frame i's candidates from its parents' chosen latents, then choose."""
        node = plan.nodes[i]
        lo, hi = (frames[p] for p in node.parents)
        k = candidates_for_level(settings, node.level)
        ddim_index = (fraction_to_index(settings.num_inference_steps, edit.noise)
                      if edit.noise is not None else node.ddim_index)
        base = edit.seed if edit.seed is not None else derive_seed(settings.seed, i)
        seeds = tuple(derive_seed(base, c) for c in range(k))
        cond, uncond = path.at(i)
        control = controls[i] if controls is not None else None
        key = frame_key(identity=self.identity, settings=settings, index=i,
                        position=node.position, level=node.level, weight=node.weight,
                        ddim_index=ddim_index, candidates=k, seeds=list(seeds),
                        cond_key=tensor_key(cond), uncond_key=tensor_key(uncond),
                        control_key=tensor_key(control.images) if control else None,
                        control_scale=float(control.scales[0]) if control else None,
                        parents=[(lo.key, lo.chosen), (hi.key, hi.chosen)])
        record = self.store.get(key)
        generated = record is None
        if generated:
            on_event(FrameStarted(i, node.level, k))
            gens = [make_generator(s, self.bundle.device) for s in seeds]
            record = self._generate(i, lo.latent, hi.latent, node.weight, ddim_index, scheduler,
                                    Guidance(cond, uncond, settings.guidance_scale), control,
                                    gens, settings.eta, on_event, cancel)
            self.store.put(key, record)
        latents, images = record.tensors["latents"], tuple(record.images)
        scores = self._scores(key, images, settings, warnings)
        chosen = _choose(i, edit, scores, k)
        on_event(FrameReady(i, images, scores, chosen, generated, key))
        return FrameResult(index=i, position=node.position, level=node.level, key=key,
                           images=images, latents=latents, scores=scores, chosen=chosen,
                           generated=generated, seeds=seeds, ddim_index=ddim_index,
                           timestep=int(scheduler.timesteps.flip(0)[ddim_index]),
                           parents=node.parents)

    def _generate(self, i, z_lo, z_hi, weight, ddim_index, scheduler, guidance, control, gens,
                  eta, on_event, cancel) -> Record:
        """All candidates of one frame in one batch: shared-noise slerp, DDIM, decode."""
        t = int(scheduler.timesteps.flip(0)[ddim_index])
        eps = torch.cat([randn(z_lo.shape[1:], g, "cpu")[None] for g in gens])
        start = noised_slerp(scheduler, z_lo.float(), z_hi.float(), weight, eps, t)
        size = self.max_batch or len(gens)
        chunks = []
        for lo in range(0, len(gens), size):
            part = gens[lo:lo + size]
            batch_control = None
            if control is not None:
                batch_control = Control(control.images.expand(len(part), *control.images.shape[1:]),
                                        control.scales.expand(len(part)))
            with torch.no_grad():
                chunks.append(denoise(self.bundle, scheduler, start[lo:lo + size], ddim_index,
                                      guidance, part, eta, control=batch_control, cancel=cancel,
                                      on_step=lambda n, total: on_event(DenoiseStep(i, n, total))))
        latents = torch.cat(chunks)
        with torch.no_grad():
            images = to_pil(self.bundle.decode_latents(latents.to(self.bundle.dtype)).float())
        return Record(tensors={"latents": latents.float().cpu()}, images=tuple(images))

    def _scores(self, key, images, settings, warnings) -> Optional[tuple]:
        """CLIP scores of the candidates (cached apart from the frame), or None without ranking."""
        if len(images) < 2 or not (settings.rank_positive or settings.rank_negative):
            return None
        if self.scorer is None:
            msg = "ranking prompts are set but no CLIP model is loaded: using the first candidate"
            if msg not in warnings:
                log.warning(msg)
                warnings.append(msg)
            return None
        skey = scores_key(key, self.scorer.identity, settings.rank_positive,
                          settings.rank_negative)
        record = self.store.get(skey)
        if record is None:
            scores = self.scorer.score(list(images), settings.rank_positive,
                                       settings.rank_negative)
            record = Record(tensors={}, meta={"scores": [float(s) for s in scores]})
            self.store.put(skey, record)
        return tuple(record.meta["scores"])

    def _render_baseline(self, plan, settings, scheduler, z_a, z_b, path, frames, on_event,
                         cancel) -> None:
        """Table 1 baselines: one candidate per frame, computed fresh (no frame cache)."""
        latents = baselines.run(settings.scheme, self.bundle, scheduler, plan, settings, z_a, z_b,
                                path, on_event, cancel)
        with torch.no_grad():
            order = sorted(latents)
            decoded = self.bundle.decode_latents(
                torch.cat([latents[i] for i in order]).to(self.bundle.device, self.bundle.dtype))
        for i, image in zip(order, to_pil(decoded.float())):
            node = plan.nodes[i]
            frames[i] = FrameResult(index=i, position=node.position, level=node.level,
                                    key="", images=(image,), latents=latents[i].cpu(),
                                    generated=True, parents=node.parents)
            on_event(FrameReady(i, (image,), None, 0, True, ""))


def _choose(i: int, edit: FrameEdit, scores, k: int) -> int:
    """The user's pick, else the CLIP argmax, else the first candidate."""
    if edit.candidate is not None:
        if edit.candidate >= k:
            raise ValueError(f"candidate={edit.candidate} for frame {i} is out of range: "
                             f"it has {k} candidates (0..{k - 1})")
        return edit.candidate
    if scores is None:
        return 0
    return max(range(len(scores)), key=lambda c: (scores[c], -c))


def _check_edits(edits: Mapping[int, FrameEdit], plan: Plan) -> None:
    last = len(plan.nodes) - 1
    for i, edit in edits.items():
        if not isinstance(edit, FrameEdit):
            raise TypeError(f"edits[{i}] must be a FrameEdit, got {type(edit).__name__}")
        if not 0 < i < last:
            raise ValueError(f"edit for frame {i} is out of range: in-between frames are 1..{last - 1}")


def _delta(before: dict, after: dict) -> dict:
    return {kind: {name: after[kind].get(name, 0) - before[kind].get(name, 0)
                   for name in after[kind]} for kind in after}


def expected_counts(result: RenderResult) -> dict:
    """Analytic minimum of UNet rows: sum over generated frames of K x (DDIM steps run) x CFG,
    plus 2 x CFG rows per textual-inversion iteration actually run."""
    if result.settings.scheme != Scheme.METHOD:
        return {}
    factor = cfg_factor(result.settings.guidance_scale)
    gen = [f for f in result.frames if f.generated]
    invert_rows = 2 * result.inversion_steps  # one step on A and one on B per iteration
    return {"unet_rows": sum(len(f.images) * (f.ddim_index + 1) * factor for f in gen)
            + invert_rows * factor,
            "vae_decode_rows": sum(len(f.images) for f in gen),
            "inversion_steps": result.inversion_steps}
