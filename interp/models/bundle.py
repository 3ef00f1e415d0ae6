"""ModelBundle: the networks of a latent diffusion model (VAE, UNet, CLIP text encoder, optional ControlNet).

Loads presets (sd15, sd21), tiny random models for tests, full-size random models (random-sd15,
random-sd21: real shapes, random weights), any diffusers repo id or local directory, and single-file
checkpoints; offline-aware (HF_HUB_OFFLINE, a short reachability probe), never hangs on the hub.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from interp.models import hub, single_file
from interp.models.fullsize import RANDOM_SPECS, build_random, random_weights_note
from interp.models.speed import apply_speed_options
from interp.models.tiny import TINY_ALIASES, TINY_SPECS, build_tiny, tiny_identity
from interp.errors import ModelUnavailable
from interp.models.tokenizer import build_tokenizer, pad_for, tokenizer_problem
from interp.scheduler import make_scheduler
from interp.toy import TOY_DIR

log = logging.getLogger(__name__)

PRESETS = {  # preset -> (diffusers repo, its OpenPose ControlNet)
    "sd15": ("stable-diffusion-v1-5/stable-diffusion-v1-5", "lllyasviel/control_v11p_sd15_openpose"),
    "sd21": ("stabilityai/stable-diffusion-2-1-base", "thibaud/controlnet-sd21-openpose-diffusers"),
}
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

    def make_scheduler(self, num_inference_steps: int) -> DDIMScheduler:
        """A fresh DDIM scheduler with its timesteps set (one per render: schedulers hold state)."""
        return make_scheduler(self.scheduler_config, num_inference_steps)

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

    def encode_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        """CLIP text encoder's last hidden state [B, 77, d] for token ids [B, 77]."""
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids must be [B, L]; got shape {tuple(input_ids.shape)}")
        self.counter.add("text_encoder", input_ids.shape[0])
        return self.text_encoder(input_ids.to(self.device))[0]

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Latents [B, 4, H/8, W/8] of images [B, 3, H, W] in [-1, 1]: posterior mean * scaling_factor.

        Deterministic: the paper's code samples the posterior; its mean is an equally valid encoding
        (method.md) and makes latents, and so cached frames, reproducible.
        """
        f = self.vae_scale_factor
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] % f or images.shape[3] % f:
            raise ValueError(f"images must be [B, 3, H, W] with H, W multiples of {f}; got {tuple(images.shape)}")
        self.counter.add("vae_encode", images.shape[0])
        posterior = self.vae.encode(self._cast(images)).latent_dist
        return posterior.mean * self.vae.config.scaling_factor

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in about [-1, 1] (not clamped) from latents scaled by scaling_factor."""
        if latents.ndim != 4:
            raise ValueError(f"latents must be [B, C, h, w]; got shape {tuple(latents.shape)}")
        self.counter.add("vae_decode", latents.shape[0])
        return self.vae.decode(self._cast(latents) / self.vae.config.scaling_factor).sample

    def unet_forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int | float,
        encoder_hidden_states: torch.Tensor,
        down_block_additional_residuals: list[torch.Tensor] | None = None,
        mid_block_additional_residual: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The UNet's prediction (epsilon or v) for noisy latents at `timestep`; counts rows = batch size."""
        self.counter.add("unet", sample.shape[0])
        return self.unet(
            self._cast(sample),
            timestep,
            encoder_hidden_states=self._cast(encoder_hidden_states),
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
        down, mid = self.controlnet(
            self._cast(sample),
            timestep,
            encoder_hidden_states=self._cast(encoder_hidden_states),
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
    for name in ("text_encoder", "unet", "vae"):
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


def _own_controlnet(parts: dict, controlnet: str | None, dtype: torch.dtype) -> dict:
    """A built model keeps its own ControlNet ("auto"), drops it (None) or loads the one named."""
    if controlnet is None:
        parts["controlnet"] = None
    elif controlnet != "auto":
        parts["controlnet"], cn_id = hub.load_controlnet(controlnet, dtype)
        parts["identity"] += f"+{cn_id}"
    return parts


def _load_tiny(name: str, controlnet: str | None, dtype: torch.dtype) -> dict:
    parts = build_tiny(name)
    parts["tokenizer"] = build_tokenizer()
    parts["identity"] = tiny_identity(name)
    return _own_controlnet(parts, controlnet, dtype)


def _load_random(name: str, controlnet: str | None, dtype: torch.dtype, device: torch.device | None) -> dict:
    if RANDOM_SPECS[name].sdxl:
        raise ModelUnavailable(
            f"model {name!r}: rendering SDXL is not supported yet (its two text encoders, pooled embeddings "
            f"and time ids come with the SDXL model family); its networks build with "
            f"interp.models.fullsize.build_random({name!r})")
    log.warning(random_weights_note(name))
    parts = build_random(name, dtype=dtype, device=device or "cpu",
                         components=None if controlnet == "auto" else ("unet", "vae", "text_encoder"))
    parts.setdefault("controlnet", None)
    return _own_controlnet(parts, controlnet, dtype)


def _load_parts(model: str, controlnet: str | None, dtype: torch.dtype, config: str | None,
                device: torch.device | None = None) -> dict:
    if model in TINY_SPECS:
        return _load_tiny(model, controlnet, dtype)
    if model in RANDOM_SPECS:
        return _load_random(model, controlnet, dtype, device)
    if model in PRESETS:
        repo, preset_cn = PRESETS[model]
        parts = hub.load_diffusers(repo, dtype, what=model)
        cn = preset_cn if controlnet == "auto" else controlnet
    else:
        path = Path(model).expanduser()
        if path.is_file() or path.suffix in single_file.SUFFIXES:
            parts = single_file.load_single_file(model, dtype, config)
            if "text_encoder_2" in parts:
                raise ModelUnavailable(f"model {model!r} is an SDXL checkpoint: rendering SDXL is not supported "
                                       "yet (it comes with the SDXL model family)")
        else:
            parts = hub.load_diffusers(model, dtype, what=model)
        cn = parts.pop("local_controlnet", None) if controlnet == "auto" else controlnet
    parts.pop("local_controlnet", None)
    parts["controlnet"] = None
    if cn is not None:
        try:
            parts["controlnet"], cn_id = hub.load_controlnet(cn, dtype)
            parts["identity"] += f"+{cn_id}"
        except ModelUnavailable as exc:
            if controlnet != "auto":
                raise
            log.warning("going on without a ControlNet (pose control is off): %s", exc)
    problem = tokenizer_problem(parts.get("tokenizer"))
    if problem is not None:
        if parts.get("tokenizer") is not None:
            log.warning("model %r: its tokenizer cannot encode prompts (%s); using the built-in CLIP "
                        "tokenizer instead", model, problem)
        parts["tokenizer"] = build_tokenizer(pad_for(parts["text_encoder"].config))
    return parts


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
    channels_last: bool = False,
    compile_unet: bool = False,
    vae_slicing: bool = False,
) -> ModelBundle:
    """Load a model: a preset, tiny-*, random-*, a diffusers repo id or directory, or a .safetensors/.ckpt file.

    controlnet: "auto" = the preset's (or a local directory's controlnet/) if available, else warn and go
    on without; None = none; any other string = that ControlNet repo id or directory (must load).
    config: a local diffusers config directory for single-file checkpoints when offline (or sd15, sd21,
    sdxl: interp's copies of those models' public configs).
    channels_last, compile_unet, vae_slicing: speed options (interp.models.speed; timed by benchmarks/gpu.py).
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
    parts = _load_parts(name, controlnet, dt, config, None if cpu_offload else dev)
    for key in ("vae", "unet", "text_encoder", "controlnet"):
        if parts.get(key) is not None:
            _place(parts[key], None if cpu_offload else dev, dt)
    apply_memory_savers(parts, attention_slicing=attention_slicing, vae_tiling=vae_tiling)
    if cpu_offload:
        enable_cpu_offload(parts, dev)
    apply_speed_options(parts, channels_last=channels_last, compile_unet=compile_unet, vae_slicing=vae_slicing)
    log.info("loaded %s (%s) on %s as %s", model, parts["identity"], dev, dt)
    return ModelBundle(
        vae=parts["vae"], unet=parts["unet"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"],
        scheduler_config=parts["scheduler_config"], controlnet=parts["controlnet"], device=dev, dtype=dt,
        identity=parts["identity"], name=model,
    )


def weights_available(model: str) -> bool:
    """Whether `model` (a preset, tiny-*, repo id or local path) can load with no network."""
    name = _canonical(model)
    if name in TINY_SPECS:
        return True
    if name in RANDOM_SPECS:
        return not RANDOM_SPECS[name].sdxl
    if model == "toy":
        return any((TOY_DIR / "unet").glob("*.safetensors"))
    repo = PRESETS[name][0] if name in PRESETS else name
    return hub.available_locally(repo)
