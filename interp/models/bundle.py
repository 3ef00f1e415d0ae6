"""ModelBundle: the networks of a latent diffusion model (VAE, UNet, text encoder(s), optional ControlNet),
with calls that cast inputs to its device and dtype and count the work (interp.models.load loads one).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from interp.errors import ModelUnavailable
from interp.models.family import SDXL, encode, family_of, unet_inputs
from interp.scheduler import make_scheduler


TEXT_CACHE_SIZE = 256  # distinct token sequences kept per bundle
COUNTER_NAMES = ("unet", "controlnet", "vae_encode", "vae_decode", "text_encoder", "clip", "clip_text")


class CallCounter:
    """Thread-safe counts of model work: calls and rows (samples) per network name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        self.rows: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)

    def add(self, name: str, rows: int) -> None:
        """Record one call of network `name` that processed `rows` samples."""
        with self._lock:
            self.calls[name] = self.calls.get(name, 0) + 1
            self.rows[name] = self.rows.get(name, 0) + int(rows)

    def snapshot(self) -> dict:
        """A copy: {"calls": {...}, "rows": {...}}."""
        with self._lock:
            return {"calls": dict(self.calls), "rows": dict(self.rows)}

    def since(self, before: dict) -> dict:
        """Counts made since the snapshot `before`: {"calls": {...}, "rows": {...}}."""
        after = self.snapshot()
        return {kind: {name: after[kind].get(name, 0) - before[kind].get(name, 0)
                       for name in after[kind]} for kind in after}

    def reset(self) -> None:
        """Set every count to zero."""
        with self._lock:
            self.calls = dict.fromkeys(COUNTER_NAMES, 0)
            self.rows = dict.fromkeys(COUNTER_NAMES, 0)


@dataclass
class ModelBundle:
    """Every network of one model, loaded once; the methods cast inputs to its device/dtype and count calls."""

    vae: AutoencoderKL
    unet: UNet2DConditionModel
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    scheduler_config: dict  # DDIMScheduler config with the model's prediction_type
    controlnet: ControlNetModel | None
    device: torch.device
    dtype: torch.dtype
    identity: str  # model ids + revision, or content hash; goes into frame keys
    counter: CallCounter = field(default_factory=CallCounter)
    name: str = ""  # the preset, id or path as requested
    text_encoder_2: Any = None  # SDXL: CLIPTextModelWithProjection (OpenCLIP bigG)
    tokenizer_2: Any = None     # SDXL: its tokenizer (pads with "!")
    # Condition tensors by prompt: the weights never change, so a prompt is encoded once.
    _text_cache: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _text_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def make_scheduler(self, num_inference_steps: int) -> DDIMScheduler:
        """A fresh DDIM scheduler with its timesteps set (one per render: schedulers hold state)."""
        return make_scheduler(self.scheduler_config, num_inference_steps)

    @property
    def native_size(self) -> int:
        """The side of the square the model was trained at: 512 (SD 1.x), 768 (SD 2.x-768), 1024."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent cell along each side (8 for Stable Diffusion)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def prediction_type(self) -> str:
        """What the UNet predicts: "epsilon" or "v_prediction"."""
        return self.scheduler_config["prediction_type"]

    def _cast(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(device=self.device, dtype=self.dtype)

    @property
    def family(self) -> str:
        """"sd" (1.x / 2.x) or "sdxl" (interp.models.family)."""
        return family_of(self.unet)

    @property
    def vae_dtype(self) -> torch.dtype:
        """The VAE's dtype: float32 when a float16 VAE asks to be upcast (SDXL's VAE overflows in fp16)."""
        return next(self.vae.parameters()).dtype

    def encode_prompt(self, prompt: str, negative: bool = False) -> torch.Tensor:
        """The condition tensor [1, L, d] of a prompt (interp.models.family), cached: the weights
        never change, so each distinct prompt is encoded once per bundle."""
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
        zeros = negative and not prompt and self.family == SDXL   # as family.encode does
        key = (prompt, zeros)
        with self._text_lock:
            if key in self._text_cache:
                self._text_cache.move_to_end(key)
                return self._text_cache[key].clone()
        with torch.no_grad():
            out = encode(self, prompt, negative).to(self.dtype)
        with self._text_lock:
            self._text_cache[key] = out
            while len(self._text_cache) > TEXT_CACHE_SIZE:
                self._text_cache.popitem(last=False)
        return out.clone()

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Latents [B, 4, H/8, W/8] of images [B, 3, H, W] in [-1, 1]: posterior mean * scaling_factor.

        Deterministic: the paper's code samples the posterior; its mean is an equally valid encoding
        (method.md) and makes latents, and so cached frames, reproducible.
        """
        f = self.vae_scale_factor
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] % f or images.shape[3] % f:
            raise ValueError(f"images must be [B, 3, H, W] with H, W multiples of {f}; got {tuple(images.shape)}")
        self.counter.add("vae_encode", images.shape[0])
        posterior = self.vae.encode(images.to(self.device, self.vae_dtype)).latent_dist
        return (posterior.mean * self.vae.config.scaling_factor).to(self.dtype)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in about [-1, 1] (not clamped) from latents scaled by scaling_factor."""
        if latents.ndim != 4:
            raise ValueError(f"latents must be [B, C, h, w]; got shape {tuple(latents.shape)}")
        self.counter.add("vae_decode", latents.shape[0])
        z = latents.to(self.device, self.vae_dtype) / self.vae.config.scaling_factor
        return self.vae.decode(z).sample

    def unet_forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int | float,
        encoder_hidden_states: torch.Tensor,
        down_block_additional_residuals: list[torch.Tensor] | None = None,
        mid_block_additional_residual: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The UNet's prediction (epsilon or v) for noisy latents at `timestep`; counts rows = batch size.

        encoder_hidden_states: condition tensors [B, L, d] (interp.models.family)."""
        self.counter.add("unet", sample.shape[0])
        inputs = unet_inputs(self, self._cast(encoder_hidden_states), sample)
        return self.unet(
            self._cast(sample),
            timestep,
            encoder_hidden_states=inputs.encoder_hidden_states,
            added_cond_kwargs=inputs.added_cond_kwargs,
            down_block_additional_residuals=down_block_additional_residuals,
            mid_block_additional_residual=mid_block_additional_residual,
            return_dict=False,
        )[0]

    def controlnet_forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int | float,
        encoder_hidden_states: torch.Tensor,
        controlnet_cond: torch.Tensor,
        scales: torch.Tensor,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """ControlNet residuals for a condition image [B, 3, H, W] in [0, 1], each row times its scale."""
        if self.controlnet is None:
            raise ModelUnavailable(f"model {self.name!r} has no ControlNet loaded; pose control needs one")
        batch = sample.shape[0]
        scales = torch.as_tensor(scales)
        if scales.shape != (batch,):
            raise ValueError(f"scales must have shape ({batch},); got {tuple(scales.shape)}")
        self.counter.add("controlnet", batch)
        inputs = unet_inputs(self, self._cast(encoder_hidden_states), sample)
        down, mid = self.controlnet(
            self._cast(sample),
            timestep,
            encoder_hidden_states=inputs.encoder_hidden_states,
            added_cond_kwargs=inputs.added_cond_kwargs,
            controlnet_cond=self._cast(controlnet_cond),
            conditioning_scale=1.0,
            return_dict=False,
        )
        s = self._cast(scales).view(batch, 1, 1, 1)
        return [d * s for d in down], mid * s
