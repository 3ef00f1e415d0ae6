"""Shared-noise forward diffusion, slerp, seeded generators and our own DDIM loop.

The loop runs over diffusers' DDIMScheduler and the bundle's models: it starts at any DDIM index
from given latents, applies classifier-free guidance with given embeddings and optional ControlNet
residuals with a per-sample scale, and processes all candidates of a frame (x2 for CFG) in one batch.
"""
from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from interp.events import CancelToken
from interp.scheduler import by_index

SLERP_EPS = 1e-7


def slerp(p0: torch.Tensor, p1: torch.Tensor, weight: float) -> torch.Tensor:
    """Spherical interpolation with one global angle over the flattened tensors, in float64 (method.md 2)."""
    if p0.shape != p1.shape:
        raise ValueError(f"slerp needs equal shapes, got {tuple(p0.shape)} and {tuple(p1.shape)}")
    a, b = p0.double(), p1.double()
    na, nb = a.flatten().norm(), b.flatten().norm()
    if na == 0 or nb == 0:
        return ((1 - weight) * a + weight * b).to(p0.dtype)
    cos = torch.clamp((a.flatten() @ b.flatten()) / (na * nb), -1 + SLERP_EPS, 1 - SLERP_EPS)
    theta = torch.arccos(cos)
    s = torch.sin(theta)
    out = torch.sin((1 - weight) * theta) / s * a + torch.sin(weight * theta) / s * b
    return out.to(p0.dtype)


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (run seed, frame, candidate): independent streams per frame/candidate."""
    digest = hashlib.sha256(",".join(str(int(p)) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch.Generator on `device` (CPU generators for MPS) seeded with `seed`."""
    dev = torch.device(device)
    gen_device = "cpu" if dev.type == "mps" else dev
    return torch.Generator(device=gen_device).manual_seed(int(seed))


def randn(shape: Sequence[int], generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
    """float32 standard normal noise from `generator`, moved to `device`."""
    return torch.randn(tuple(shape), generator=generator, device=generator.device).to(device)


def add_noise(scheduler, z0: torch.Tensor, eps: torch.Tensor, timestep: int) -> torch.Tensor:
    """Forward diffusion q(z_t | z_0) = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps."""
    t = torch.full((z0.shape[0],), int(timestep), dtype=torch.long)
    return scheduler.add_noise(z0.float(), eps.float(), t.to(z0.device))


def noised_slerp(scheduler, z_lo: torch.Tensor, z_hi: torch.Tensor, weight: float,
                 eps: torch.Tensor, timestep: int) -> torch.Tensor:
    """The method's start latents: noise both parents with the SAME eps, then slerp (method.md 2).

    z_lo, z_hi: [1, C, h, w]; eps: [K, C, h, w] one sample per candidate. Returns [K, C, h, w].
    """
    out = []
    for k in range(eps.shape[0]):
        l1 = add_noise(scheduler, z_lo, eps[k:k + 1], timestep)
        l2 = add_noise(scheduler, z_hi, eps[k:k + 1], timestep)
        out.append(slerp(l1, l2, weight))
    return torch.cat(out)


@dataclass(frozen=True)
class Control:
    """ControlNet input for a batch: images [B,3,H,W] in [0,1] and a scale per sample [B]."""
    images: torch.Tensor
    scales: torch.Tensor


@dataclass(frozen=True)
class Guidance:
    """Text conditions for a batch: cond [B,77,d] (or [1,...]), uncond [1 or B,77,d] and the CFG scale."""
    cond: torch.Tensor
    uncond: torch.Tensor
    guidance_scale: float

    @property
    def cfg(self) -> bool:
        return self.guidance_scale > 1.0


def cfg_factor(guidance_scale: float) -> int:
    """UNet rows per sample and step: 2 with classifier-free guidance, else 1."""
    return 2 if guidance_scale > 1.0 else 1


def _expand(t: torch.Tensor, batch: int) -> torch.Tensor:
    return t if t.shape[0] == batch else t.expand(batch, *t.shape[1:])


def predict(bundle, x: torch.Tensor, timestep, guidance: Guidance,
            control: Optional[Control] = None) -> torch.Tensor:
    """One guided model prediction for a batch (uncond and cond halves in ONE UNet call)."""
    batch = x.shape[0]
    cond, uncond = _expand(guidance.cond, batch), _expand(guidance.uncond, batch)
    if guidance.cfg:
        x_in, emb = torch.cat([x, x]), torch.cat([uncond, cond])
    else:
        x_in, emb = x, cond
    x_in, emb = x_in.to(bundle.dtype), emb.to(bundle.dtype)
    down = mid = None
    if control is not None:
        reps = 2 if guidance.cfg else 1
        images = _expand(control.images, batch).repeat(reps, 1, 1, 1).to(bundle.device, bundle.dtype)
        scales = _expand(control.scales, batch).repeat(reps).to(bundle.device)
        down, mid = bundle.controlnet_forward(x_in, timestep, emb, images, scales)
    out = bundle.unet_forward(x_in, timestep, emb, down, mid).float()
    if not guidance.cfg:
        return out
    out_u, out_c = out.chunk(2)
    return out_u + guidance.guidance_scale * (out_c - out_u)


def denoise(bundle, scheduler, latents: torch.Tensor, start_index: int, guidance: Guidance,
            generators: Sequence[torch.Generator], eta: float = 0.0, stop_index: int = -1,
            control: Optional[Control] = None, on_step: Callable[[int, int], None] | None = None,
            cancel: Optional[CancelToken] = None, injection=None) -> torch.Tensor:
    """DDIM from DDIM index `start_index` down to `stop_index` (-1 = clean latents), batched.

    Starts exactly at the noise level the latents were made at (no skipped steps). Each sample's
    stochastic (eta > 0) noise comes from its own generator. `injection` (interp.attention): the
    endpoints' self-attention joins the first steps' UNet calls.
    """
    if len(generators) != latents.shape[0]:
        raise ValueError(f"need one generator per sample: {len(generators)} for {latents.shape[0]}")
    timesteps = by_index(scheduler)
    if not (stop_index < start_index < len(timesteps)):
        raise ValueError(f"start_index={start_index} must be in ({stop_index}, {len(timesteps)})")
    x = latents.float().to(bundle.device)
    total = start_index - stop_index
    injected = injection.steps(total) if injection is not None else 0
    with _installed(bundle, injection, injected) as state:
        for n, index in enumerate(range(start_index, stop_index, -1)):
            if cancel is not None:
                cancel.check()
            t = timesteps[index]
            if n < injected:
                model_out = _predict_with_endpoints(bundle, scheduler, state, x, t, guidance,
                                                    control)
            else:
                model_out = predict(bundle, x, t, guidance, control)
            noise = None
            if eta > 0:
                noise = torch.cat([randn(x.shape[1:], g, x.device)[None] for g in generators])
            x = scheduler.step(model_out, t, x, eta=eta, variance_noise=noise).prev_sample
            if on_step is not None:
                on_step(n + 1, total)
    return x


def _installed(bundle, injection, steps: int):
    """interp.attention.installed when some steps are injected, else a context doing nothing."""
    if not steps:
        return contextlib.nullcontext(None)
    from interp.attention import installed
    return installed(bundle.unet, injection)


def _predict_with_endpoints(bundle, scheduler, state, x: torch.Tensor, t, guidance: Guidance,
                            control: Optional[Control]) -> torch.Tensor:
    """One prediction of the frame rows, with the endpoint rows (noised to t) in the same call."""
    inj, frames = state.injection, x.shape[0]
    ends = add_noise(scheduler, inj.latents.to(x.device), inj.eps.expand(2, *inj.eps.shape[1:]).to(
        x.device), int(t))
    rows = Guidance(torch.cat([_expand(guidance.cond, frames), inj.cond.to(guidance.cond)]),
                    torch.cat([_expand(guidance.uncond, frames), inj.uncond.to(guidance.uncond)]),
                    guidance.guidance_scale)
    both = None
    if control is not None:
        both = Control(torch.cat([_expand(control.images, frames), inj.control.images.to(
                           control.images)]),
                       torch.cat([_expand(control.scales, frames), inj.control.scales.to(
                           control.scales)]))
    state.frames = frames
    try:
        return predict(bundle, torch.cat([x, ends]), t, rows, both)[:frames]
    finally:
        state.frames = 0
