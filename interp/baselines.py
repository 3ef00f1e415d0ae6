"""The paper's Table 1 baselines (method.md section 8), one candidate per frame.

Each takes the render's FrameContext and both inputs' clean latents and returns {frame index: clean
latent [1, C, h, w]} for the in-between frames.
"""
from __future__ import annotations

from typing import Callable

import torch

from interp.events import DenoiseStep, FrameStarted
from interp.plan import fraction_to_index
from interp.sampling import Guidance, add_noise, denoise, derive_seed, make_generator, randn, slerp
from interp.settings import Scheme


def run(ctx, z_a: torch.Tensor, z_b: torch.Tensor) -> dict:
    """Dispatch to the scheme's function (uniform signature)."""
    schemes: dict[Scheme, Callable] = {
        Scheme.INTERPOLATE_ONLY: interpolate_only,
        Scheme.INTERPOLATE_DENOISE: interpolate_denoise,
        Scheme.DID: did,
        Scheme.DID_INDEPENDENT: did_independent,
    }
    return schemes[ctx.settings.scheme](ctx, z_a, z_b)


def _inner(ctx) -> list:
    return [n.index for n in ctx.plan.nodes[1:-1]]


def _guidance(ctx, frames: list) -> Guidance:
    conds = [ctx.path.at(i) for i in frames]
    return Guidance(torch.cat([c for c, _ in conds]), torch.cat([u for _, u in conds]),
                    ctx.settings.guidance_scale)


def interpolate_only(ctx, z_a, z_b) -> dict:
    """Baseline 1: slerp the clean latents at each frame's position; no denoising."""
    return {i: slerp(z_a, z_b, ctx.plan.nodes[i].position) for i in _inner(ctx)}


def interpolate_denoise(ctx, z_a, z_b) -> dict:
    """Baseline 2: shared noise on both inputs, more towards the middle; slerp; denoise fully."""
    s = ctx.settings
    eps = randn(z_a.shape[1:], make_generator(derive_seed(s.seed, 0), "cpu"), "cpu")[None]
    out = {}
    for i in _inner(ctx):
        if ctx.cancel is not None:
            ctx.cancel.check()
        pos = ctx.plan.nodes[i].position
        frac = s.noise_min + (s.noise_max - s.noise_min) * 2 * min(pos, 1 - pos)
        index = fraction_to_index(s.num_inference_steps, frac)
        t = ctx.timesteps[index]
        start = slerp(add_noise(ctx.scheduler, z_a, eps, t), add_noise(ctx.scheduler, z_b, eps, t),
                      pos)
        ctx.on_event(FrameStarted(i, ctx.plan.nodes[i].level, 1))
        gens = [make_generator(derive_seed(s.seed, i, 0), ctx.bundle.device)]
        with torch.no_grad():
            out[i] = denoise(ctx.bundle, ctx.scheduler, start, index, _guidance(ctx, [i]), gens,
                             s.eta, cancel=ctx.cancel,
                             on_step=lambda n, total, i=i: ctx.on_event(DenoiseStep(i, n, total)))
    return out


def did(ctx, z_a, z_b) -> dict:
    """Baseline 3: denoise-interpolate-denoise with the same noise on both inputs."""
    return _did(ctx, z_a, z_b, shared=True)


def did_independent(ctx, z_a, z_b) -> dict:
    """Baseline 4: DID with independent noise for the two inputs."""
    return _did(ctx, z_a, z_b, shared=False)


def _did(ctx, z_a, z_b, shared: bool) -> dict:
    """Latent-blending style: level by level, slerp partially denoised latents, then denoise all
    existing in-between frames together to the next level's noise level (finally to 0)."""
    plan, s = ctx.plan, ctx.settings
    levels = sorted({plan.nodes[i].level for i in plan.order})
    index_of = {lv: next(plan.nodes[i].ddim_index for i in plan.order if plan.nodes[i].level == lv)
                for lv in levels}
    gen = make_generator(derive_seed(s.seed, 0), "cpu")
    eps_a = randn(z_a.shape[1:], gen, "cpu")[None]
    eps_b = eps_a if shared else randn(z_b.shape[1:], gen, "cpu")[None]
    gens = {i: make_generator(derive_seed(s.seed, i, 0), ctx.bundle.device) for i in plan.order}
    noisy: dict = {}
    for n, level in enumerate(levels):
        t = ctx.timesteps[index_of[level]]
        known = {0: add_noise(ctx.scheduler, z_a, eps_a, t),
                 plan.nodes[-1].index: add_noise(ctx.scheduler, z_b, eps_b, t), **noisy}
        for i in (j for j in plan.order if plan.nodes[j].level == level):
            lo, hi = plan.nodes[i].parents
            ctx.on_event(FrameStarted(i, level, 1))
            noisy[i] = slerp(known[lo], known[hi], plan.nodes[i].weight)
        stop = index_of[levels[n + 1]] if n + 1 < len(levels) else -1
        order = sorted(noisy)
        with torch.no_grad():
            x = denoise(ctx.bundle, ctx.scheduler, torch.cat([noisy[i] for i in order]),
                        index_of[level], _guidance(ctx, order), [gens[i] for i in order], s.eta,
                        stop_index=stop, cancel=ctx.cancel)
        noisy = {i: x[j:j + 1] for j, i in enumerate(order)}
    return noisy
