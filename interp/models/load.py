"""Loading a ModelBundle: presets (sd15, sd21, sdxl), tiny-* test models, full-size random-* models,
any diffusers repo id or local directory, and single-file checkpoints; device, dtype, memory savers
and speed options. Offline-aware (HF_HUB_OFFLINE, a short reachability probe): never hangs on the hub.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from interp.errors import ModelUnavailable
from interp.models import hub, single_file
from interp.models.bundle import ModelBundle
from interp.models.family import check_controlnet
from interp.models.fullsize import RANDOM_SPECS, build_random, random_weights_note
from interp.models.speed import apply_speed_options
from interp.models.tiny import TINY_ALIASES, TINY_SPECS, build_tiny, tiny_identity
from interp.models.tokenizer import build_tokenizer, pad_for, tokenizer_problem
from interp.toy import TOY_DIR

log = logging.getLogger(__name__)

PRESETS = {  # preset -> (diffusers repo, its OpenPose ControlNet)
    "sd15": ("stable-diffusion-v1-5/stable-diffusion-v1-5", "lllyasviel/control_v11p_sd15_openpose"),
    "sd21": ("stabilityai/stable-diffusion-2-1-base", "thibaud/controlnet-sd21-openpose-diffusers"),
    "sdxl": ("stabilityai/stable-diffusion-xl-base-1.0", "xinsir/controlnet-openpose-sdxl-1.0"),
}
SDXL_FP16_VAE = "madebyollin/sdxl-vae-fp16-fix"  # SDXL's VAE overflows in float16; this one does not
RANDOM_WITHOUT_CONTROLNET = ("unet", "vae", "text_encoder", "text_encoder_2")


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


def _own_controlnet(parts: dict, controlnet: str | None, dtype: torch.dtype) -> dict:
    """A built model keeps its own ControlNet ("auto"), drops it (None) or loads the one named."""
    if controlnet is None:
        parts["controlnet"] = None
    elif controlnet != "auto":
        parts["controlnet"] = None
        _attach_controlnet(parts, controlnet, dtype, required=True)
    return parts


def _load_tiny(name: str, controlnet: str | None, dtype: torch.dtype) -> dict:
    parts = build_tiny(name)
    parts["identity"] = tiny_identity(name)
    return _own_controlnet(parts, controlnet, dtype)


def _load_random(name: str, controlnet: str | None, dtype: torch.dtype,
                 device: torch.device | None) -> dict:
    log.warning(random_weights_note(name))
    parts = build_random(name, dtype=dtype, device=device or "cpu",
                         components=None if controlnet == "auto" else RANDOM_WITHOUT_CONTROLNET)
    parts.setdefault("controlnet", None)
    return _own_controlnet(parts, controlnet, dtype)


def _load_parts(model: str, controlnet: str | None, dtype: torch.dtype, config: str | None,
                device: torch.device | None = None) -> dict:
    parts = _load_networks(model, controlnet, dtype, config, device)
    problem = tokenizer_problem(parts.get("tokenizer"))
    if problem is not None:
        if parts.get("tokenizer") is not None:
            log.warning("model %r: its tokenizer cannot encode prompts (%s); using the built-in CLIP "
                        "tokenizer instead", model, problem)
        parts["tokenizer"] = build_tokenizer(pad_for(parts["text_encoder"].config))
    if parts.get("text_encoder_2") is not None:
        _sdxl_parts(parts, dtype)
    return parts


def _load_networks(model: str, controlnet: str | None, dtype: torch.dtype, config: str | None,
                   device: torch.device | None) -> dict:
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
    for key in ("vae", "unet", "text_encoder", "text_encoder_2", "controlnet"):
        if parts.get(key) is not None:
            _place(parts[key], None if cpu_offload else dev, parts.get(f"{key}_dtype", dt))
    apply_memory_savers(parts, attention_slicing=attention_slicing, vae_tiling=vae_tiling)
    if cpu_offload:
        enable_cpu_offload(parts, dev)
    apply_speed_options(parts, channels_last=channels_last, compile_unet=compile_unet, vae_slicing=vae_slicing)
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
    if name in RANDOM_SPECS:
        return True
    if model == "toy":
        return any((TOY_DIR / "unet").glob("*.safetensors"))
    repo = PRESETS[name][0] if name in PRESETS else name
    return hub.available_locally(repo)
