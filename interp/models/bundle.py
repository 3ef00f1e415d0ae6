"""ModelBundle: the networks of a latent diffusion model (VAE, UNet, CLIP text encoder, optional ControlNet).

Loads presets (sd15, sd21), tiny random models for tests, any diffusers repo id or local directory, and
single-file checkpoints; offline-aware (HF_HUB_OFFLINE, a short reachability probe), never hangs on the hub.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from pathlib import Path

import torch
from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from interp.models import hub
from interp.models.tiny import TINY_ALIASES, TINY_SPECS, build_tiny, tiny_identity
from interp.errors import ModelUnavailable
from interp.models.family import SDXL, check_controlnet, encode, family_of, unet_inputs
from interp.models.tokenizer import build_tokenizer
from interp.scheduler import make_scheduler
from interp.toy import TOY_DIR

log = logging.getLogger(__name__)

PRESETS = {  # preset -> (diffusers repo, its OpenPose ControlNet)
    "sd15": ("stable-diffusion-v1-5/stable-diffusion-v1-5", "lllyasviel/control_v11p_sd15_openpose"),
    "sd21": ("stabilityai/stable-diffusion-2-1-base", "thibaud/controlnet-sd21-openpose-diffusers"),
    "sdxl": ("stabilityai/stable-diffusion-xl-base-1.0", "xinsir/controlnet-openpose-sdxl-1.0"),
}
SDXL_FP16_VAE = "madebyollin/sdxl-vae-fp16-fix"  # SDXL's VAE overflows in float16; this one does not
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


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch.device from a name; ValueError for unknown names or unavailable accelerators."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a torch device ({exc})") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r} but MPS is not available here")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """float16 on CUDA, float32 elsewhere, unless given (a torch float dtype or its name)."""
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    names = {"float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float32": torch.float32, "fp32": torch.float32, "float": torch.float32}
    if isinstance(dtype, str):
        if dtype.lower() not in names:
            raise ValueError(f"dtype={dtype!r} is not one of {sorted(names)}")
        return names[dtype.lower()]
    if not isinstance(dtype, torch.dtype) or dtype not in names.values():
        raise TypeError(f"dtype must be a torch float dtype or its name; got {dtype!r}")
    return dtype


def enable_cpu_offload(parts: dict, device: torch.device) -> None:
    """Keep weights on the CPU and move each network to `device` only while it runs (accelerate hooks)."""
    from accelerate import cpu_offload_with_hook

    hook = None
    for name in ("text_encoder", "text_encoder_2", "unet", "vae"):
        if parts.get(name) is not None:
            _, hook = cpu_offload_with_hook(parts[name], device, prev_module_hook=hook)
    if parts.get("controlnet") is not None:
        cpu_offload_with_hook(parts["controlnet"], device)


def apply_memory_savers(parts: dict, *, attention_slicing: bool, vae_tiling: bool) -> None:
    """Attention slicing (UNet, ControlNet) and VAE tiling, for small GPUs."""
    if attention_slicing:
        parts["unet"].set_attention_slice("auto")
        if parts.get("controlnet") is not None:
            parts["controlnet"].set_attention_slice("auto")
    if vae_tiling:
        parts["vae"].enable_tiling()


def _place(module: torch.nn.Module, device: torch.device | None, dtype: torch.dtype) -> None:
    """Frozen, eval mode, cast to dtype only if needed (diffusers warns on every cast), moved to device."""
    module.requires_grad_(False).eval()
    if next(module.parameters()).dtype != dtype:
        module.to(dtype=dtype)
    if device is not None:
        module.to(device=device)


def _canonical(model: str) -> str:
    if model == "toy":  # a local diffusers directory; identity = its content hash
        return str(TOY_DIR)
    return TINY_ALIASES.get(model, model)


def _load_tiny(name: str, controlnet: str | None, dtype: torch.dtype) -> dict:
    parts = build_tiny(name)
    parts["identity"] = tiny_identity(name)
    if controlnet is None:
        parts["controlnet"] = None
    elif controlnet != "auto":
        parts["controlnet"] = None
        _attach_controlnet(parts, controlnet, dtype, required=True)
    return parts


def _load_parts(model: str, controlnet: str | None, dtype: torch.dtype, config: str | None) -> dict:
    parts = _load_networks(model, controlnet, dtype, config)
    if parts.get("tokenizer") is None:
        parts["tokenizer"] = build_tokenizer()
    if parts.get("text_encoder_2") is not None:
        _sdxl_parts(parts, dtype)
    return parts


def _load_networks(model: str, controlnet: str | None, dtype: torch.dtype, config: str | None) -> dict:
    if model in TINY_SPECS:
        return _load_tiny(model, controlnet, dtype)
    if model in PRESETS:
        repo, preset_cn = PRESETS[model]
        parts = hub.load_diffusers(repo, dtype, what=model)
        cn = preset_cn if controlnet == "auto" else controlnet
    else:
        path = Path(model).expanduser()
        if path.is_file() or path.suffix in hub.SINGLE_FILE_SUFFIXES:
            parts = hub.load_single_file(model, dtype, config)
        else:
            parts = hub.load_diffusers(model, dtype, what=model)
        cn = parts.pop("local_controlnet", None) if controlnet == "auto" else controlnet
    parts.pop("local_controlnet", None)
    parts["controlnet"] = None
    if cn is not None:
        _attach_controlnet(parts, cn, dtype, required=controlnet != "auto")
    return parts


def _attach_controlnet(parts: dict, name: str, dtype: torch.dtype, required: bool) -> None:
    """Load ControlNet `name` of the model's family into parts; an optional one may be missing."""
    try:
        net, cn_id = hub.load_controlnet(name, dtype)
        check_controlnet(parts["unet"], net, name)
    except ModelUnavailable as exc:
        if required:
            raise
        log.warning("going on without a ControlNet (pose control is off): %s", exc)
        return
    parts["controlnet"] = net
    parts["identity"] += f"+{cn_id}"


def _sdxl_parts(parts: dict, dtype: torch.dtype) -> None:
    """SDXL: the second tokenizer, and a VAE that works in float16 (the fp16-fix VAE when it is
    cached, else SDXL's own VAE kept in float32)."""
    if parts.get("tokenizer_2") is None:
        parts["tokenizer_2"] = build_tokenizer("!")
    if dtype != torch.float16:
        return
    if hub.available_locally(SDXL_FP16_VAE):
        parts["vae"], vae_id = hub.load_vae(SDXL_FP16_VAE, dtype)
        parts["identity"] += f"+vae:{vae_id}"
    elif parts["vae"].config.force_upcast:
        log.info("SDXL's VAE runs in float32 (%s is not cached)", SDXL_FP16_VAE)
        parts["vae_dtype"] = torch.float32


def load_bundle(
    model: str = "tiny-sd15",
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
    controlnet: str | None = "auto",
    attention_slicing: bool = False,
    vae_tiling: bool = False,
    cpu_offload: bool = False,
    config: str | None = None,
) -> ModelBundle:
    """Load a model: a preset, tiny-*, a diffusers repo id or directory, or a .safetensors/.ckpt file.

    controlnet: "auto" = the preset's (or a local directory's controlnet/) if available, else warn and go
    on without; None = none; any other string = that ControlNet repo id or directory (must load).
    config: a local diffusers config directory for single-file checkpoints when offline.
    Raises ModelUnavailable naming the model, the cause and the fix.
    """
    if not isinstance(model, str) or not model:
        raise TypeError(f"model must be a non-empty string; got {model!r}")
    if controlnet is not None and not isinstance(controlnet, str):
        raise TypeError(f"controlnet must be a string or None; got {controlnet!r}")
    dev = resolve_device(device)
    if cpu_offload and dev.type != "cuda":
        raise ValueError(f"cpu_offload=True needs a CUDA device; got device={str(dev)!r}")
    dt = resolve_dtype(dtype, dev)
    name = _canonical(model)
    parts = _load_parts(name, controlnet, dt, config)
    for key in ("vae", "unet", "text_encoder", "text_encoder_2", "controlnet"):
        if parts.get(key) is not None:
            _place(parts[key], None if cpu_offload else dev, parts.get(f"{key}_dtype", dt))
    apply_memory_savers(parts, attention_slicing=attention_slicing, vae_tiling=vae_tiling)
    if cpu_offload:
        enable_cpu_offload(parts, dev)
    log.info("loaded %s (%s) on %s as %s", model, parts["identity"], dev, dt)
    return ModelBundle(
        vae=parts["vae"], unet=parts["unet"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"],
        scheduler_config=parts["scheduler_config"], controlnet=parts["controlnet"], device=dev, dtype=dt,
        identity=parts["identity"], name=model, text_encoder_2=parts.get("text_encoder_2"),
        tokenizer_2=parts.get("tokenizer_2"),
    )


def weights_available(model: str) -> bool:
    """Whether `model` (a preset, tiny-*, repo id or local path) can load with no network."""
    name = _canonical(model)
    if name in TINY_SPECS:
        return True
    if model == "toy":
        return any((TOY_DIR / "unet").glob("*.safetensors"))
    repo = PRESETS[name][0] if name in PRESETS else name
    return hub.available_locally(repo)
