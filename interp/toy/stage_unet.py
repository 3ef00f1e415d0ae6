"""Diffusion stages of the toy model: text encoder + UNet jointly, then a pose ControlNet on the frozen pair.

Epsilon prediction on Stable Diffusion's scaled-linear 1000-step schedule, so the paper's noise fractions
mean the same here; 10% of captions are dropped to "" for classifier-free guidance; Min-SNR weighting
and an EMA of the weights make a short CPU budget go further.
"""
from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import torch

from interp.toy import nets
from interp.toy.stages import (Ema, StageResult, diffusion_weights, drop_captions, epsilon_loss, noisy_batch,
                               run_loop, sd_alphas_cumprod)


def token_ids(tokenizer: Any, captions: list[str]) -> torch.Tensor:
    """Token ids [N, 77] of captions, each distinct caption tokenised once."""
    cache: dict[str, torch.Tensor] = {}
    for text in captions:
        if text not in cache:
            cache[text] = tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length,
                                    truncation=True, return_tensors="pt").input_ids[0]
    return torch.stack([cache[text] for text in captions])


def train_unet(latents: torch.Tensor, ids: torch.Tensor, empty_ids: torch.Tensor, steps: int,
               batch: int = 64, lr: float = 1e-3, seed: int = 0, ema_decay: float = 0.998,
               log_every: int = 50) -> StageResult:
    """Train CLIPTextModel + UNet2DConditionModel jointly on scaled latents [N, 4, 8, 8] and ids [N, 77]."""
    start = time.perf_counter()
    text_encoder, unet = nets.build_text_encoder(seed), nets.build_unet(seed + 1)
    text_encoder.train()
    unet.train()
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    ema_u, ema_t = Ema(unet, ema_decay), Ema(text_encoder, ema_decay)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    abar = sd_alphas_cumprod()

    def step_fn(step: int) -> torch.Tensor:
        idx = torch.from_numpy(rng.integers(len(latents), size=batch))
        noisy, t, eps = noisy_batch(latents[idx], abar, gen)
        cond = text_encoder(drop_captions(ids[idx], empty_ids, rng))[0]
        pred = unet(noisy, t, encoder_hidden_states=cond).sample
        return epsilon_loss(pred, eps, diffusion_weights(abar, t))

    def on_step(step: int) -> None:
        ema_u.update(unet)
        ema_t.update(text_encoder)

    last = run_loop(steps, lr, opt, params, step_fn, on_step, "unet+text", log_every)
    ema_u.copy_to(unet)
    ema_t.copy_to(text_encoder)
    for module in (unet, text_encoder):
        module.eval().requires_grad_(False)
    metrics = {"steps": steps, "batch": batch, "lr": lr, "ema_decay": ema_decay, "final_loss": last,
               "params_unet": nets.param_count(unet), "params_text_encoder": nets.param_count(text_encoder)}
    return StageResult({"unet": unet, "text_encoder": text_encoder}, metrics, time.perf_counter() - start)


def train_controlnet(unet: Any, text_encoder: Any, latents: torch.Tensor, ids: torch.Tensor,
                     empty_ids: torch.Tensor, controls: torch.Tensor, steps: int, batch: int = 32,
                     lr: float = 1e-3, seed: int = 0, ema_decay: float = 0.995,
                     log_every: int = 50) -> StageResult:
    """Train a ControlNet (copied from the UNet) on skeleton images [N, 3, 64, 64] in [0, 1]; UNet frozen."""
    start = time.perf_counter()
    controlnet = nets.build_controlnet(unet, seed)
    controlnet.train()
    frozen = copy.deepcopy(unet).requires_grad_(False).eval()
    params = list(controlnet.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    ema = Ema(controlnet, ema_decay)
    rng = np.random.default_rng(seed + 7)
    gen = torch.Generator().manual_seed(seed + 7)
    abar = sd_alphas_cumprod()

    def step_fn(step: int) -> torch.Tensor:
        idx = torch.from_numpy(rng.integers(len(latents), size=batch))
        noisy, t, eps = noisy_batch(latents[idx], abar, gen)
        with torch.no_grad():
            cond = text_encoder(drop_captions(ids[idx], empty_ids, rng))[0]
        down, mid = controlnet(noisy, t, encoder_hidden_states=cond, controlnet_cond=controls[idx],
                               conditioning_scale=1.0, return_dict=False)
        pred = frozen(noisy, t, encoder_hidden_states=cond, down_block_additional_residuals=down,
                      mid_block_additional_residual=mid).sample
        return epsilon_loss(pred, eps, diffusion_weights(abar, t))

    last = run_loop(steps, lr, opt, params, step_fn, lambda s: ema.update(controlnet), "controlnet", log_every)
    ema.copy_to(controlnet)
    controlnet.eval().requires_grad_(False)
    metrics = {"steps": steps, "batch": batch, "lr": lr, "ema_decay": ema_decay, "final_loss": last,
               "params_controlnet": nets.param_count(controlnet)}
    return StageResult({"controlnet": controlnet}, metrics, time.perf_counter() - start)


def control_tensor(images: list) -> torch.Tensor:
    """Skeleton images (PIL) -> float32 [N, 3, H, W] in [0, 1], the ControlNet's condition range."""
    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(255.0).contiguous()
