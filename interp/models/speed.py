"""Speed options for a loaded model: channels-last memory format, torch.compile of the UNet, VAE slicing,
and the attention implementation (PyTorch SDPA, diffusers' default, or the classic processor).

benchmarks/gpu.py times each of them; load_bundle applies the ones asked for.
"""
from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

CONV_NETS = ("unet", "controlnet", "vae")  # the convolutional networks channels-last applies to
ATTENTION = ("sdpa", "classic")


def use_channels_last(parts: dict) -> None:
    """Store the convolutional networks' weights channels-last (NHWC): faster convolutions on tensor cores."""
    for name in CONV_NETS:
        if parts.get(name) is not None:
            parts[name].to(memory_format=torch.channels_last)


def compile_in_place(module: torch.nn.Module, mode: str | None = None, backend: str = "inductor") -> None:
    """torch.compile a network in place (nn.Module.compile: same object, config and hooks); it compiles
    on its first call and again for new input shapes. mode: None, "reduce-overhead", "max-autotune"."""
    module.compile(mode=mode, backend=backend)


def enable_vae_slicing(vae: torch.nn.Module) -> None:
    """Encode and decode a batch one image at a time (lower peak memory, same result)."""
    vae.enable_slicing()


def set_attention(parts: dict, kind: str) -> None:
    """Attention in the UNet and ControlNet: "sdpa" (torch's scaled_dot_product_attention, diffusers'
    default) or "classic" (diffusers' AttnProcessor: explicit softmax(QK^T)V, for comparison)."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    if kind not in ATTENTION:
        raise ValueError(f"attention={kind!r} is not one of {ATTENTION}")
    for name in ("unet", "controlnet"):
        if parts.get(name) is not None:
            parts[name].set_attn_processor(AttnProcessor2_0() if kind == "sdpa" else AttnProcessor())


def apply_speed_options(parts: dict, *, channels_last: bool, compile_unet: bool, vae_slicing: bool) -> None:
    """The speed options asked for, in a safe order (memory format before compiling)."""
    if channels_last:
        use_channels_last(parts)
    if vae_slicing:
        enable_vae_slicing(parts["vae"])
    if compile_unet:
        compile_in_place(parts["unet"])
        log.info("the UNet compiles on its first call (and again for each new batch shape)")
