"""Configs and builders of the toy model's networks: the Stable Diffusion classes at toy size.

AutoencoderKL (4 blocks: scale factor 8, 64x64x3 -> 8x8x4), CLIPTextModel with the real CLIP vocabulary,
UNet2DConditionModel with cross-attention, a ControlNetModel from the UNet, and a small open_clip model
(config interp/toy/toy-clip.json). Weights are drawn under a fixed seed without touching the global RNG.
"""
from __future__ import annotations

import copy
import os
import threading
from pathlib import Path
from typing import Any

import torch

from interp.toy import TOY_CLIP_NAME, toy_clip_path
from interp.toy.vae_init import thumbnail_init
CLIP_CONFIG_DIR = Path(__file__).parent  # holds interp-toy-clip.json
_config_lock = threading.Lock()

VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": (16, 32, 64, 64),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 1,
    "norm_num_groups": 4,  # groups of >= 4 channels: see interp.toy.vae_init
    "sample_size": 64,
    "scaling_factor": 1.0,  # replaced by the measured 1 / std of the latents after training
}

VAE_INIT_LOGVAR = -8.0  # initial log-variance of the posterior (std ~0.02); the KL weight barely moves it

TEXT_CONFIG: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 49407,
    "hidden_act": "quick_gelu",
    "projection_dim": 64,
}

UNET_CONFIG: dict[str, Any] = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (64, 96),
    "layers_per_block": 1,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "norm_num_groups": 32,
    "cross_attention_dim": 64,
    "attention_head_dim": 4,
    "use_linear_projection": False,
}

CONTROLNET_CONDITIONING = (16, 32, 64, 128)  # 3 stride-2 convs: a 64x64 skeleton maps to the 8x8 latents




def build_vae(seed: int = 0) -> Any:
    """A freshly initialised AutoencoderKL (scale factor 8) drawn under `seed`."""
    from diffusers import AutoencoderKL

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKL(**copy.deepcopy(VAE_CONFIG))
    thumbnail_init(vae, VAE_INIT_LOGVAR)  # starts as thumbnail encoder + nearest decoder (interp.toy.vae_init)
    return vae


def build_text_encoder(seed: int = 0) -> Any:
    """A freshly initialised CLIPTextModel (CLIP's 49,408-token vocabulary, hidden 64)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG))


def build_unet(seed: int = 0) -> Any:
    """A freshly initialised UNet2DConditionModel (8x8x4 latents, cross-attention to the text encoder)."""
    from diffusers import UNet2DConditionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet2DConditionModel(**copy.deepcopy(UNET_CONFIG))


def build_controlnet(unet: Any, seed: int = 0) -> Any:
    """A ControlNetModel copied from the UNet's encoder (zero-initialised outputs, as in the ControlNet paper)."""
    from diffusers import ControlNetModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=CONTROLNET_CONDITIONING)


def register_clip_config() -> None:
    """Add interp-toy-clip.json to open_clip's model configs once."""
    import open_clip

    with _config_lock:
        if TOY_CLIP_NAME not in open_clip.list_models():
            open_clip.add_model_config(CLIP_CONFIG_DIR / f"{TOY_CLIP_NAME}.json")


def build_clip(seed: int = 0) -> tuple[Any, Any, Any]:
    """(model, train-free eval preprocess, tokenizer) of a freshly initialised interp-toy-clip."""
    import open_clip

    register_clip_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, _, preprocess = open_clip.create_model_and_transforms(TOY_CLIP_NAME, pretrained=None)
    return model, preprocess, open_clip.get_tokenizer(TOY_CLIP_NAME)


def param_count(module: torch.nn.Module) -> int:
    """Number of parameters of a module."""
    return sum(p.numel() for p in module.parameters())


def load_toy_clip(device: str = "cpu", counter: Any = None, model_dir: str | os.PathLike | None = None) -> Any:
    """The toy open_clip scorer (interp.rank.ClipScorer): registers its config, loads the local weights."""
    from interp.rank import load_clip_scorer

    register_clip_config()
    return load_clip_scorer(TOY_CLIP_NAME, str(toy_clip_path(model_dir)), device=device, counter=counter)
