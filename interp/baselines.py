"""The paper's Table 1 baselines (method.md section 8), one candidate per frame.

Each returns {frame index: clean latent [1, C, h, w]} for the in-between frames.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from interp.events import CancelToken, DenoiseStep, EventCallback, FrameStarted
from interp.plan import Plan, fraction_to_index
from interp.sampling import (Guidance, add_noise, denoise, derive_seed, make_generator, randn, slerp)
from interp.scheduler import by_index
from interp.settings import Scheme, Settings


def run(scheme: Scheme, bundle, scheduler, plan: Plan, settings: Settings, z_a, z_b, path,
        on_event: EventCallback, cancel: Optional[CancelToken]) -> dict:
    """Dispatch to the scheme's function (uniform signature)."""
    schemes: dict[Scheme, Callable] = {
        Scheme.INTERPOLATE_ONLY: interpolate_only,
        Scheme.INTERPOLATE_DENOISE: interpolate_denoise,
        Scheme.DID: did,
        Scheme.DID_INDEPENDENT: did_independent,
    }
    return schemes[scheme](bundle, scheduler, plan, settings, z_a, z_b, path, on_event, cancel)


def _inner(plan: Plan) -> list:
    return [n.index for n in plan.nodes[1:-1]]


def interpolate_only(bundle, scheduler, plan, settings, z_a, z_b, path, on_event, cancel) -> dict:
    """Baseline 1: slerp the clean latents at each frame's position; no denoising."""
    return {i: slerp(z_a, z_b, plan.nodes[i].position) for i in _inner(plan)}


def interpolate_denoise(bundle, scheduler, plan, settings, z_a, z_b, path, on_event,
                        cancel) -> dict:
    """Baseline 2: shared noise on both inputs, more towards the middle; slerp; denoise fully."""
    gen = make_generator(derive_seed(settings.seed, 0), "cpu")
    eps = randn(z_a.shape[1:], gen, "cpu")[None]
    timesteps = by_index(scheduler)
    out = {}
    for i in _inner(plan):
        cancel is not None and cancel.check()
        pos = plan.nodes[i].position
        frac = settings.noise_min + (settings.noise_max - settings.noise_min) * 2 * min(pos, 1 - pos)
        index = fraction_to_index(settings.num_inference_steps, frac)
        t = int(timesteps[index])
        start = slerp(add_noise(scheduler, z_a, eps, t), add_noise(scheduler, z_b, eps, t), pos)
        on_event(FrameStarted(i, plan.nodes[i].level, 1))
        cond, uncond = path.at(i)
        gens = [make_generator(derive_seed(settings.seed, i, 0), bundle.device)]
        with torch.no_grad():
            out[i] = denoise(bundle, scheduler, start, index,
                             Guidance(cond, uncond, settings.guidance_scale), gens, settings.eta,
                             cancel=cancel,
                             on_step=lambda n, total, i=i: on_event(DenoiseStep(i, n, total)))
    return out


def did(bundle, scheduler, plan, settings, z_a, z_b, path, on_event, cancel) -> dict:
    """Baseline 3: denoise-interpolate-denoise with the same noise on both inputs."""
    return _did(bundle, scheduler, plan, settings, z_a, z_b, path, on_event, cancel, shared=True)


def did_independent(bundle, scheduler, plan, settings, z_a, z_b, path, on_event, cancel) -> dict:
    """Baseline 4: DID with independent noise for the two inputs."""
    return _did(bundle, scheduler, plan, settings, z_a, z_b, path, on_event, cancel, shared=False)


def _did(bundle, scheduler, plan, settings, z_a, z_b, path, on_event, cancel, shared) -> dict:
    """Latent-blending style: level by level, slerp partially denoised latents, then denoise all
    existing in-between frames together to the next level's noise level (finally to 0)."""
    timesteps = by_index(scheduler)
    levels = sorted({plan.nodes[i].level for i in plan.order})
    index_of = {lv: next(plan.nodes[i].ddim_index for i in plan.order if plan.nodes[i].level == lv)
                for lv in levels}
    gen = make_generator(derive_seed(settings.seed, 0), "cpu")
    eps_a = randn(z_a.shape[1:], gen, "cpu")[None]
    eps_b = eps_a if shared else randn(z_b.shape[1:], gen, "cpu")[None]
    noisy: dict = {}
    gens = {i: make_generator(derive_seed(settings.seed, i, 0), bundle.device) for i in plan.order}
    for n, level in enumerate(levels):
        t = int(timesteps[index_of[level]])
        ends = {0: add_noise(scheduler, z_a, eps_a, t),
                plan.nodes[-1].index: add_noise(scheduler, z_b, eps_b, t)}
        for i in (j for j in plan.order if plan.nodes[j].level == level):
            lo, hi = plan.nodes[i].parents
            on_event(FrameStarted(i, level, 1))
            noisy[i] = slerp({**ends, **noisy}[lo], {**ends, **noisy}[hi], plan.nodes[i].weight)
        stop = index_of[levels[n + 1]] if n + 1 < len(levels) else -1
        noisy = _denoise_all(bundle, scheduler, noisy, index_of[level], stop, path, gens, settings,
                             cancel)
    return noisy


def _denoise_all(bundle, scheduler, noisy, start, stop, path, gens, settings, cancel) -> dict:
    """Denoise every existing in-between frame from DDIM index start to stop in one batch."""
    order = sorted(noisy)
    conds = [path.at(i) for i in order]
    guidance = Guidance(torch.cat([c for c, _ in conds]), torch.cat([u for _, u in conds]),
                        settings.guidance_scale)
    with torch.no_grad():
        x = denoise(bundle, scheduler, torch.cat([noisy[i] for i in order]), start, guidance,
                    [gens[i] for i in order], settings.eta, stop_index=stop, cancel=cancel)
    return {i: x[j:j + 1] for j, i in enumerate(order)}
