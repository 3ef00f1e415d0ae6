"""Tiny random models shaped like Stable Diffusion 1.5 / 2.1 and SDXL, built from configs for tests (seconds on a CPU)."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from interp.scheduler import SD_DDIM, ddim_config

TINY_VERSION = "v2"  # bump when the builders below change in a way the configs do not show
TINY_SEED = 0  # the seed every tiny model's weights are drawn from
CONDITIONING_CHANNELS = (16, 32, 64, 128)  # 3 stride-2 convs: a pose image at pixel size maps to latents

UNET_COMMON = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
    "norm_num_groups": 32,
    "cross_attention_dim": 32,
}

VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": (8, 16, 16, 16),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": 64,
    "scaling_factor": 0.18215,
}

TEXT = {
    "vocab_size": 49408,
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 49407,
    "hidden_act": "quick_gelu",
}


# SDXL's second text encoder (CLIPTextModelWithProjection), tiny: another width than the first, so
# single-file loaders can tell them apart; 10 layers so the SDXL checkpoint detection key exists.
TEXT_2 = {**TEXT, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 10,
          "hidden_act": "gelu", "projection_dim": 64}
TIME_DIM = 8  # SDXL's per-id time embedding (256 at full size)
SDXL_UNET = {  # text_time conditioning: 6 time ids + the pooled projection of TEXT_2
    "attention_head_dim": 8, "use_linear_projection": True,
    "cross_attention_dim": TEXT["hidden_size"] + TEXT_2["hidden_size"],
    "addition_embed_type": "text_time", "addition_time_embed_dim": TIME_DIM,
    "projection_class_embeddings_input_dim": 6 * TIME_DIM + TEXT_2["projection_dim"],
}


@dataclass(frozen=True)
class TinySpec:
    """The configs of one tiny model: UNet overrides, the scheduler's prediction type, and for SDXL
    the second text encoder and the VAE's scaling factor."""

    unet: dict
    prediction_type: str = "epsilon"
    text_2: dict | None = None
    vae_scaling: float | None = None

    def configs(self) -> dict:
        """All component configs as plain data (what the identity hashes)."""
        out = {
            "unet": {**UNET_COMMON, **self.unet},
            "vae": VAE if self.vae_scaling is None else {**VAE, "scaling_factor": self.vae_scaling},
            "text_encoder": TEXT,
            "controlnet_conditioning": CONDITIONING_CHANNELS,
            "scheduler": {**SD_DDIM, "prediction_type": self.prediction_type},
            "seed": TINY_SEED,
        }
        if self.text_2 is not None:
            out["text_encoder_2"] = self.text_2
        return out


TINY_SPECS = {
    "tiny-sd15": TinySpec(unet={"attention_head_dim": 8, "use_linear_projection": False}),
    "tiny-sd21": TinySpec(unet={"attention_head_dim": (2, 4), "use_linear_projection": True}),
    "tiny-sd21-v": TinySpec(
        unet={"attention_head_dim": (2, 4), "use_linear_projection": True}, prediction_type="v_prediction"
    ),
    "tiny-sdxl": TinySpec(unet=SDXL_UNET, text_2=TEXT_2, vae_scaling=0.13025),
}
TINY_ALIASES = {"tiny": "tiny-sd15"}


def tiny_identity(name: str) -> str:
    """Identity of a tiny model: its name, builder version and a hash of its configs."""
    spec = TINY_SPECS[name]
    blob = json.dumps(spec.configs(), sort_keys=True, default=list).encode()
    return f"{name}:{TINY_VERSION}:{hashlib.sha256(blob).hexdigest()[:16]}"


def _wake_zero_convs(controlnet: ControlNetModel, generator: torch.Generator) -> None:
    """Give the ControlNet's zero-initialised convs small random weights (its output convs, and the
    last conv of the condition embedding), so residuals are non-zero and follow the pose image."""
    convs = (list(controlnet.controlnet_down_blocks) + [controlnet.controlnet_mid_block,
             controlnet.controlnet_cond_embedding.conv_out])
    for conv in convs:
        for p in conv.parameters():
            p.data.copy_(torch.randn(p.shape, generator=generator) * 0.05)


def build_tiny(name: str) -> dict:
    """Random-weight components of the tiny model `name`, the same on every call (global RNG untouched)."""
    configs = copy.deepcopy(TINY_SPECS[name].configs())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        unet = UNet2DConditionModel(**configs["unet"])
        vae = AutoencoderKL(**configs["vae"])
        text_encoder = CLIPTextModel(CLIPTextConfig(**configs["text_encoder"]))
        controlnet = ControlNetModel.from_unet(
            unet, conditioning_embedding_out_channels=configs["controlnet_conditioning"]
        )
        parts = {"unet": unet, "vae": vae, "text_encoder": text_encoder, "controlnet": controlnet}
        if "text_encoder_2" in configs:
            parts["text_encoder_2"] = CLIPTextModelWithProjection(
                CLIPTextConfig(**configs["text_encoder_2"]))
    _wake_zero_convs(controlnet, torch.Generator().manual_seed(TINY_SEED + 1))
    parts["scheduler_config"] = ddim_config(configs["scheduler"])
    return parts
