"""The DDIM schedule: Stable Diffusion's DDIM configuration (its one owner), a model's configuration
from its own scheduler file, and timesteps indexed by DDIM index (index 0 = the least noisy).

The paper's code samples SD 2.1 with DDIM on SD's scaled-linear betas 0.00085..0.012, T = 1000;
SD 1.x and SDXL use the same betas.
"""
from __future__ import annotations

from typing import Mapping, Optional

import numpy as np
import torch

SD_DDIM: dict = {
    "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "clip_sample": False, "set_alpha_to_one": False,
    "steps_offset": 1, "timestep_spacing": "leading", "prediction_type": "epsilon",
}
# Keys a model's own scheduler file may change; everything else stays SD's DDIM setting.
_MODEL_KEYS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "prediction_type",
               "steps_offset", "trained_betas", "rescale_betas_zero_snr")


def ddim_config(loaded: Optional[Mapping] = None) -> dict:
    """A DDIM config: SD's DDIM defaults with a model's betas and prediction type (from `loaded`)."""
    from diffusers import DDIMScheduler

    base = dict(SD_DDIM)
    for key in _MODEL_KEYS:
        if loaded and loaded.get(key) is not None:
            base[key] = loaded[key]
    config = dict(DDIMScheduler(**base).config)
    return {k: v for k, v in config.items() if not k.startswith("_")}


def make_scheduler(config: Optional[Mapping], num_inference_steps: int):
    """A fresh DDIMScheduler (schedulers hold state) with its timesteps set for S steps."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(dict(SD_DDIM if config is None else config))
    scheduler.set_timesteps(num_inference_steps)
    return scheduler


def by_index(scheduler) -> torch.Tensor:
    """The scheduler's timesteps indexed by DDIM index (ascending: index 0 is the least noisy)."""
    return scheduler.timesteps.flip(0)


def ddim_timesteps(num_inference_steps: int, config: Optional[Mapping] = None) -> np.ndarray:
    """Ascending DDPM timestep of each DDIM index 0..S-1 (diffusers' set_timesteps(S))."""
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) \
            or num_inference_steps < 1:
        raise ValueError(f"num_inference_steps={num_inference_steps!r} is not allowed: expected an "
                         "integer >= 1")
    scheduler = make_scheduler(config, num_inference_steps)
    return np.asarray(by_index(scheduler).cpu().numpy(), dtype=np.int64).copy()
