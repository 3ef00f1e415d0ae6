"""Training loops of the toy model's stages: VAE, text encoder + UNet, open_clip scorer, ControlNet.

Every stage is reproducible: weights are drawn under fixed seeds, batches and noise come from seeded
numpy / torch Generators (the global RNGs are never used), and the loops run a fixed number of steps.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from interp.toy import nets

log = logging.getLogger(__name__)

KL_WEIGHT = 1e-6  # as Stable Diffusion's autoencoder: almost a plain autoencoder
THUMBNAIL_WEIGHT = 0.01  # pulls latent channels 0-2 toward the 8x8 average-pooled RGB (fast, right colours)
MIN_SNR_GAMMA = 5.0  # Min-SNR loss weighting (Hang et al. 2023): faster convergence at small budgets
CAPTION_DROPOUT = 0.1  # share of captions replaced by "" so classifier-free guidance works


@dataclass
class StageResult:
    """What a stage returns: its trained modules, metrics and wall time."""

    modules: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warm-up to `peak`, then cosine decay to a tenth of it."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in opt.param_groups:
        group["lr"] = lr


def images_to_tensor(batch_u8: np.ndarray) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float32 [B, 3, H, W] in [-1, 1]."""
    return torch.from_numpy(batch_u8).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of images in [-1, 1] (clamped), averaged over the batch's MSE."""
    mse = ((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2.0).pow(2).mean().item()
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


class Ema:
    """Exponential moving average of a module's parameters (with the usual (1 + n) / (10 + n) warm-up)."""

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.steps = 0
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        """Move the average toward the module's current weights."""
        self.steps += 1
        d = min(self.decay, (1.0 + self.steps) / (10.0 + self.steps))
        for k, v in module.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].mul_(d).add_(v.detach(), alpha=1.0 - d)
            else:
                self.shadow[k].copy_(v)

    def copy_to(self, module: torch.nn.Module) -> None:
        """Load the averaged weights into `module`."""
        module.load_state_dict(self.shadow)


def _log_every(step: int, steps: int, every: int) -> bool:
    return step % every == 0 or step == steps - 1


def vae_step(vae: Any, x: torch.Tensor, gen: torch.Generator, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One VAE forward: (loss, reconstruction); L1 + MSE on a posterior sample, KL, and the thumbnail term.

    The thumbnail term makes the first three latent channels an 8x8 picture of the image, so colours are
    right from the start and the decoder only has to learn the edges (and the UNet gets image-like latents).
    """
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen)
        rec = vae.decode(z).sample.float()
    kl = posterior.kl().mean() / x[0].numel()
    thumb = torch.nn.functional.avg_pool2d(x, x.shape[-1] // posterior.mean.shape[-1])
    aux = (posterior.mean[:, :3].float() - thumb).pow(2).mean()
    loss = (rec - x).abs().mean() + (rec - x).pow(2).mean() + KL_WEIGHT * kl + THUMBNAIL_WEIGHT * aux
    return loss, rec


def train_vae(images: np.ndarray, steps: int, batch: int = 16, lr: float = 1e-3, seed: int = 0,
              bf16: bool = True, log_every: int = 50) -> StageResult:
    """Train the AutoencoderKL on uint8 images [N, 64, 64, 3]; sets scaling_factor = 1 / std of latents."""
    start = time.perf_counter()
    vae = nets.build_vae(seed)
    vae.train()
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    for step in range(steps):
        set_lr(opt, lr_at(step, steps, lr, warmup=min(100, steps)))
        x = images_to_tensor(images[rng.integers(len(images), size=batch)])
        loss, rec = vae_step(vae, x, gen, bf16)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        if _log_every(step, steps, log_every):
            log.info("vae step %d/%d loss %.4f psnr %.2f dB (%.0f s)", step + 1, steps, loss.item(),
                     psnr(rec.detach(), x), time.perf_counter() - start)
    vae.eval().requires_grad_(False)
    std = latent_std(vae, images[: min(len(images), 1024)])
    vae.register_to_config(scaling_factor=float(1.0 / std))
    metrics = {"steps": steps, "batch": batch, "latent_std": std, "scaling_factor": 1.0 / std,
               "final_loss": float(loss.item())}
    return StageResult({"vae": vae}, metrics, time.perf_counter() - start)


@torch.no_grad()
def encode_all(vae: Any, images: np.ndarray, batch: int = 256, scaled: bool = True) -> torch.Tensor:
    """Posterior means of all images [N, 4, 8, 8] (times scaling_factor when `scaled`), in float32."""
    out = []
    for i in range(0, len(images), batch):
        out.append(vae.encode(images_to_tensor(images[i:i + batch])).latent_dist.mean)
    z = torch.cat(out)
    return z * vae.config.scaling_factor if scaled else z


def latent_std(vae: Any, images: np.ndarray) -> float:
    """Standard deviation of the unscaled posterior means over `images` (SD's scaling_factor is 1 / this)."""
    return float(encode_all(vae, images, scaled=False).std())


def diffusion_weights(alphas_cumprod: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Min-SNR-gamma weights for epsilon prediction: min(SNR, gamma) / SNR per sample."""
    abar = alphas_cumprod[t]
    snr = abar / (1.0 - abar)
    return torch.clamp(snr, max=MIN_SNR_GAMMA) / snr


def noisy_batch(z0: torch.Tensor, alphas_cumprod: torch.Tensor, gen: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(noisy latents, timesteps, noise) by SD's forward process q(z_t | z_0), t uniform in [0, 1000)."""
    t = torch.randint(0, len(alphas_cumprod), (z0.shape[0],), generator=gen)
    eps = torch.randn(z0.shape, generator=gen)
    abar = alphas_cumprod[t].view(-1, 1, 1, 1)
    return abar.sqrt() * z0 + (1.0 - abar).sqrt() * eps, t, eps


def drop_captions(ids: torch.Tensor, empty: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Replace each row of token ids by the empty caption's with probability CAPTION_DROPOUT."""
    drop = torch.from_numpy(rng.random(ids.shape[0]) < CAPTION_DROPOUT)
    return torch.where(drop[:, None], empty[None, :].expand_as(ids), ids)


def sd_alphas_cumprod() -> torch.Tensor:
    """Stable Diffusion's scaled-linear 1000-step schedule (beta 0.00085..0.012): cumulative alpha products."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, 0).float()


def epsilon_loss(pred: torch.Tensor, eps: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Min-SNR weighted mean squared error of the predicted noise."""
    return ((pred.float() - eps).pow(2).mean(dim=(1, 2, 3)) * weights).mean()


def run_loop(steps: int, lr: float, opt: torch.optim.Optimizer, params: list,
             step_fn: Callable[[int], torch.Tensor], on_step: Callable[[int], None], name: str,
             log_every: int) -> float:
    """A generic optimisation loop (warm-up + cosine lr, grad clipping); returns the last loss."""
    start, loss = time.perf_counter(), torch.zeros(())
    for step in range(steps):
        set_lr(opt, lr_at(step, steps, lr, warmup=min(100, steps)))
        loss = step_fn(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        on_step(step)
        if _log_every(step, steps, log_every):
            log.info("%s step %d/%d loss %.4f (%.0f s)", name, step + 1, steps, loss.item(),
                     time.perf_counter() - start)
    return float(loss.item())
