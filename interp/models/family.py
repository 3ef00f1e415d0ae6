"""Model families: how a prompt becomes the condition tensor a family's UNet reads, and what extra
conditioning its UNet and ControlNet take.

A condition is one tensor [1, L, d] per prompt, so slerp, textual inversion, the frame keys and the
store treat every family alike:
- SD 1.x / 2.x: the text encoder's last hidden state [1, 77, d].
- SDXL: the penultimate hidden states of both text encoders concatenated ([1, 77, 768 + 1280]), plus
  one more row holding text_encoder_2's pooled projection (zero-padded to d): [1, 78, 2048]. The UNet
  gets the 77 token rows as encoder_hidden_states and the pooled row as added_cond_kwargs
  ["text_embeds"], with time_ids (original size, crop, target size) = (h, w, 0, 0, h, w) of the
  latents it denoises (the inputs are resized to the working size, never cropped by the model).
  As in diffusers' SDXL pipelines (force_zeros_for_empty_prompt), an empty negative prompt is zeros.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

SD, SDXL = "sd", "sdxl"


@dataclass(frozen=True)
class UNetInputs:
    """What a family's UNet / ControlNet forward takes beside the sample and timestep."""
    encoder_hidden_states: torch.Tensor
    added_cond_kwargs: Optional[dict] = None


def family_of(unet) -> str:
    """SDXL when the UNet takes text_time added conditioning, else SD (1.x / 2.x)."""
    return SDXL if getattr(unet.config, "addition_embed_type", None) == "text_time" else SD


def token_ids(tokenizer, prompt: str) -> torch.Tensor:
    """[1, L] ids padded and truncated to the tokenizer's window."""
    return tokenizer(prompt, padding="max_length", max_length=int(tokenizer.model_max_length),
                     truncation=True, return_tensors="pt").input_ids


def encode(bundle, prompt: str, negative: bool = False) -> torch.Tensor:
    """The condition tensor [1, L, d] of a prompt for the bundle's family (one call per encoder)."""
    if bundle.family == SD:
        bundle.counter.add("text_encoder", 1)
        return bundle.text_encoder(token_ids(bundle.tokenizer, prompt).to(bundle.device))[0]
    te1, te2 = bundle.text_encoder, bundle.text_encoder_2
    width = te1.config.hidden_size + te2.config.hidden_size
    if negative and not prompt:
        return torch.zeros(1, 78, width, device=bundle.device, dtype=bundle.dtype)
    bundle.counter.add("text_encoder", 2)
    one = te1(token_ids(bundle.tokenizer, prompt).to(bundle.device), output_hidden_states=True)
    two = te2(token_ids(bundle.tokenizer_2, prompt).to(bundle.device), output_hidden_states=True)
    hidden = torch.cat([one.hidden_states[-2], two.hidden_states[-2].to(one.hidden_states[-2])], -1)
    pooled = torch.zeros(1, 1, width, device=hidden.device, dtype=hidden.dtype)
    pooled[0, 0, :two.text_embeds.shape[-1]] = two.text_embeds[0]
    return torch.cat([hidden, pooled], 1)


def unet_inputs(bundle, emb: torch.Tensor, sample: torch.Tensor) -> UNetInputs:
    """Split a batch of condition tensors into the UNet's text input and added conditioning."""
    if bundle.family == SD:
        return UNetInputs(emb)
    pooled_dim = bundle.text_encoder_2.config.projection_dim
    h, w = (side * bundle.vae_scale_factor for side in sample.shape[-2:])
    time_ids = torch.tensor([[h, w, 0, 0, h, w]], device=emb.device, dtype=emb.dtype)
    return UNetInputs(emb[:, :-1], {"text_embeds": emb[:, -1, :pooled_dim],
                                    "time_ids": time_ids.expand(emb.shape[0], 6)})


def check_controlnet(unet, controlnet, name: str) -> None:
    """Refuse a ControlNet of another family (a clear message instead of a shape error)."""
    from interp.errors import ModelUnavailable
    mine, its = family_of(unet), family_of(controlnet)
    dims = (unet.config.cross_attention_dim, controlnet.config.cross_attention_dim)
    if mine != its or dims[0] != dims[1]:
        raise ModelUnavailable(
            f"ControlNet {name!r} does not fit this model: it is an {its.upper()} ControlNet with "
            f"{dims[1]}-wide text conditioning, the model is {mine.upper()} with {dims[0]}; choose an "
            f"OpenPose ControlNet of the model's family (e.g. xinsir/controlnet-openpose-sdxl-1.0 for "
            f"SDXL, lllyasviel/control_v11p_sd15_openpose for SD 1.5)")
