"""diffusers (0.42) + transformers (5.x) state dicts -> the original single-file layout (LDM for SD 1.x/2.x,
SGM for SDXL), the layout diffusers' from_single_file reads back.

Adapted from diffusers' scripts/convert_diffusers_to_original_stable_diffusion.py and
scripts/convert_diffusers_to_original_sdxl.py (not shipped in the wheel), by way of the project's research
script to_original.py: generalised over the UNet's block layout (SD 1.x/2.x: 4 levels, attention in down
0-2 / up 1-3; SDXL: 3 levels, attention in down 1-2 / up 0-1), with the VAE's current attention names
(to_q/to_k/to_v/to_out.0), transformers 5's flat CLIPTextModel keys (no "text_model." prefix) and the
OpenCLIP text_projection that the upstream SDXL script leaves unconverted.
"""
from __future__ import annotations

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_TEXT_PREFIX = "cond_stage_model.transformer."  # OpenAI CLIP ViT-L, HF layout
SD2_TEXT_PREFIX = "cond_stage_model.model."  # OpenCLIP ViT-H, OpenCLIP layout
SDXL_TEXT_PREFIXES = ("conditioner.embedders.0.transformer.", "conditioner.embedders.1.model.")
RESNET = (("in_layers.0", "norm1"), ("in_layers.2", "conv1"), ("out_layers.0", "norm2"),
          ("out_layers.3", "conv2"), ("emb_layers.1", "time_emb_proj"), ("skip_connection", "conv_shortcut"))
VAE_ATTENTION = (("norm.", "group_norm."), ("q.", "to_q."), ("k.", "to_k."), ("v.", "to_v."),
                 ("proj_out.", "to_out.0."))


def _unet_pairs(config) -> list[tuple[str, str]]:
    """(original, diffusers) key prefixes of a UNet2DConditionModel with this config, first match wins."""
    per, down, up = config["layers_per_block"] + 1, config["down_block_types"], config["up_block_types"]
    pairs = [
        ("time_embed.0.", "time_embedding.linear_1."), ("time_embed.2.", "time_embedding.linear_2."),
        ("label_emb.0.0.", "add_embedding.linear_1."), ("label_emb.0.2.", "add_embedding.linear_2."),
        ("input_blocks.0.0.", "conv_in."), ("out.0.", "conv_norm_out."), ("out.2.", "conv_out."),
        ("middle_block.0.", "mid_block.resnets.0."), ("middle_block.1.", "mid_block.attentions.0."),
        ("middle_block.2.", "mid_block.resnets.1."),
    ]
    for i in range(len(down)):
        for j in range(per - 1):
            pairs.append((f"input_blocks.{per * i + j + 1}.0.", f"down_blocks.{i}.resnets.{j}."))
            if down[i].startswith("CrossAttn"):
                pairs.append((f"input_blocks.{per * i + j + 1}.1.", f"down_blocks.{i}.attentions.{j}."))
        if i < len(down) - 1:
            pairs.append((f"input_blocks.{per * (i + 1)}.0.op.", f"down_blocks.{i}.downsamplers.0.conv."))
        for j in range(per):
            pairs.append((f"output_blocks.{per * i + j}.0.", f"up_blocks.{i}.resnets.{j}."))
            if up[i].startswith("CrossAttn"):
                pairs.append((f"output_blocks.{per * i + j}.1.", f"up_blocks.{i}.attentions.{j}."))
        if i < len(down) - 1:
            slot = 2 if up[i].startswith("CrossAttn") else 1
            pairs.append((f"output_blocks.{per * i + per - 1}.{slot}.", f"up_blocks.{i}.upsamplers.0."))
    return pairs


def unet_to_original(state: dict, config) -> dict:
    """A UNet2DConditionModel state dict in the original layout (keys without the model prefix)."""
    pairs, out = _unet_pairs(config), {}
    for key, value in state.items():
        match = next(((o, d) for o, d in pairs if key.startswith(d)), None)
        if match is None:
            raise KeyError(f"UNet key {key!r} has no original name (unsupported UNet layout)")
        original, prefix = match
        new = original + key[len(prefix):]
        if ".resnets." in prefix:
            for o, d in RESNET:
                new = new.replace(d, o)
        out[new] = value
    return out


def _vae_pairs() -> list[tuple[str, str]]:
    pairs = []
    for i in range(4):
        pairs += [(f"encoder.down.{i}.block.{j}.", f"encoder.down_blocks.{i}.resnets.{j}.") for j in range(2)]
        pairs += [(f"decoder.up.{3 - i}.block.{j}.", f"decoder.up_blocks.{i}.resnets.{j}.") for j in range(3)]
        if i < 3:
            pairs.append((f"encoder.down.{i}.downsample.", f"encoder.down_blocks.{i}.downsamplers.0."))
            pairs.append((f"decoder.up.{3 - i}.upsample.", f"decoder.up_blocks.{i}.upsamplers.0."))
    for part in ("encoder", "decoder"):
        pairs += [(f"{part}.mid.block_{i + 1}.", f"{part}.mid_block.resnets.{i}.") for i in range(2)]
        pairs.append((f"{part}.mid.attn_1.", f"{part}.mid_block.attentions.0."))
        pairs.append((f"{part}.norm_out.", f"{part}.conv_norm_out."))
    return pairs


def vae_to_original(state: dict) -> dict:
    """An AutoencoderKL state dict in the original layout (attention linears become 1x1 convolutions)."""
    pairs, out = _vae_pairs(), {}
    for key, value in state.items():
        new = next((o + key[len(d):] for o, d in pairs if key.startswith(d)), key)
        new = new.replace("conv_shortcut", "nin_shortcut")
        if ".mid.attn_1." in new:
            head, tail = new.split(".mid.attn_1.")
            tail = next((o + tail[len(d):] for o, d in VAE_ATTENTION if tail.startswith(d)), tail)
            new = f"{head}.mid.attn_1.{tail}"
            if tail.endswith("weight") and value.ndim == 2:
                value = value.reshape(*value.shape, 1, 1)
        out[new] = value
    return out


def clip_to_original(state: dict) -> dict:
    """A CLIPTextModel state dict in the HF CLIP layout of SD 1.x and SDXL's first encoder ("text_model.*")."""
    return {(k if k.startswith("text_model.") else "text_model." + k): v
            for k, v in state.items() if not k.endswith("position_ids")}


def _openclip_name(key: str) -> str:
    if key == "embeddings.token_embedding.weight":
        return "token_embedding.weight"
    if key == "embeddings.position_embedding.weight":
        return "positional_embedding"
    if key.startswith("final_layer_norm."):
        return "ln_final." + key.split(".")[-1]
    if key.startswith("encoder.layers."):
        _, _, i, rest = key.split(".", 3)
        for new, old in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
                         ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
            rest = rest.replace(old, new)
        return f"transformer.resblocks.{i}.{rest}"
    raise KeyError(f"text encoder key {key!r} has no OpenCLIP name")


def openclip_to_original(state: dict) -> dict:
    """A CLIPTextModel(WithProjection) state dict in the OpenCLIP layout (SD 2.x, SDXL's second encoder):
    q/k/v projections concatenated into in_proj, text_projection transposed."""
    out, qkv = {}, {}
    for key, value in state.items():
        key = key.removeprefix("text_model.")
        if key.endswith("position_ids"):
            continue
        if key == "text_projection.weight":
            out["text_projection"] = value.T.contiguous()
        elif ".self_attn." in key and key.split(".")[-2] in ("q_proj", "k_proj", "v_proj"):
            layer, proj, kind = key.split(".")[2], key.split(".")[-2], key.split(".")[-1]
            qkv.setdefault((layer, kind), {})[proj[0]] = value
        else:
            out[_openclip_name(key)] = value
    for (layer, kind), parts in qkv.items():
        out[f"transformer.resblocks.{layer}.attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def _prefixed(prefix: str, state: dict) -> dict:
    return {prefix + k: v for k, v in state.items()}


def to_original(parts: dict) -> dict:
    """One single-file state dict of a model's UNet, VAE and text encoder(s) (parts as load_bundle builds)."""
    unet = parts["unet"]
    out = _prefixed(UNET_PREFIX, unet_to_original(unet.state_dict(), unet.config))
    out.update(_prefixed(VAE_PREFIX, vae_to_original(parts["vae"].state_dict())))
    text = parts["text_encoder"].state_dict()
    if parts.get("text_encoder_2") is not None:
        out.update(_prefixed(SDXL_TEXT_PREFIXES[0], clip_to_original(text)))
        out.update(_prefixed(SDXL_TEXT_PREFIXES[1], openclip_to_original(parts["text_encoder_2"].state_dict())))
    elif parts["text_encoder"].config.hidden_act == "gelu":
        out.update(_prefixed(SD2_TEXT_PREFIX, openclip_to_original(text)))
    else:
        out.update(_prefixed(SD1_TEXT_PREFIX, clip_to_original(text)))
    return out
