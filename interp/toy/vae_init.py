"""A structured start for the toy AutoencoderKL: at step 0 it already encodes an 8x8 average-pooled thumbnail
into latent channels 0-2 and decodes it back by nearest upsampling (about 20 dB), so training on a CPU
only has to learn the edges instead of first discovering colours through the GroupNorms.

How: every residual branch starts at zero (Fixup-style: conv2 of each ResnetBlock2D and the attention
output projections), so blocks are identities; 1x1 shortcuts copy the first CARRY channels; samplers
average 2x2 / repeat pixels. A colour c rides in a channel pair (c, -c) next to a constant pair (K, -K),
so a GroupNorm's mean is exactly 0 and its std is ~K-dominated: normalising is a near-constant scale,
and SiLU(a) - SiLU(-a) = a undoes the activation exactly.
"""
from __future__ import annotations

import math
from typing import Any

import torch

K = 8.0  # the constant carried next to each colour; larger = closer to linear through the GroupNorm
CARRY = 12  # channels used: (c, -c, K, -K) for each of the three colours


def _carry_in(weight: torch.Tensor, bias: torch.Tensor, sources: int) -> None:
    """conv_in: centre tap puts input channel g into (4g, 4g+1) as (c, -c); bias K, -K in (4g+2, 4g+3)."""
    weight.zero_()
    bias.zero_()
    centre = weight.shape[-1] // 2
    for g in range(min(3, sources)):
        weight[4 * g, g, centre, centre] = 1.0
        weight[4 * g + 1, g, centre, centre] = -1.0
        bias[4 * g + 2] = K
        bias[4 * g + 3] = -K


def _carry_out(weight: torch.Tensor, bias: torch.Tensor, scale: float) -> None:
    """conv_out: output g = scale * (h[4g] - h[4g+1]) at the centre tap (undoes SiLU and the GroupNorm scale)."""
    weight.zero_()
    bias.zero_()
    centre = weight.shape[-1] // 2
    for g in range(3):
        weight[g, 4 * g, centre, centre] = scale
        weight[g, 4 * g + 1, centre, centre] = -scale


def _group_std(channels: int, groups: int) -> float:
    """Std of the first group under the carry layout: K-pairs dominate; colour terms neglected."""
    size = channels // groups
    k_channels = sum(1 for ch in range(min(size, CARRY)) if ch % 4 in (2, 3))
    return K * math.sqrt(k_channels / size)


def _identity_1x1(conv: torch.nn.Conv2d) -> None:
    conv.weight.zero_()
    if conv.bias is not None:
        conv.bias.zero_()
    n = min(conv.in_channels, conv.out_channels)
    conv.weight[:n, :n, 0, 0] = torch.eye(n)


def _zero_branches(module: torch.nn.Module) -> None:
    """Resnet conv2 and attention output projections to zero, shortcuts to channel copies."""
    from diffusers.models.attention_processor import Attention
    from diffusers.models.resnet import ResnetBlock2D

    for m in module.modules():
        if isinstance(m, ResnetBlock2D):
            m.conv2.weight.zero_()
            m.conv2.bias.zero_()
            if m.conv_shortcut is not None:
                _identity_1x1(m.conv_shortcut)
        elif isinstance(m, Attention):
            m.to_out[0].weight.zero_()
            m.to_out[0].bias.zero_()


def _samplers(module: torch.nn.Module) -> None:
    """Downsamplers average each 2x2 block (pad is bottom/right); upsamplers' convs pass pixels through."""
    from diffusers.models.downsampling import Downsample2D
    from diffusers.models.upsampling import Upsample2D

    for m in module.modules():
        if isinstance(m, (Downsample2D, Upsample2D)) and isinstance(getattr(m, "conv", None), torch.nn.Conv2d):
            conv = m.conv
            conv.weight.zero_()
            conv.bias.zero_()
            n = min(conv.in_channels, conv.out_channels)
            taps = ((0, 0), (0, 1), (1, 0), (1, 1)) if isinstance(m, Downsample2D) else ((1, 1),)
            for dy, dx in taps:
                conv.weight[:n, :n, dy, dx] = torch.eye(n) / len(taps)


@torch.no_grad()
def thumbnail_init(vae: Any, logvar: float) -> None:
    """Make `vae` (fresh AutoencoderKL, first block >= 16 channels) a thumbnail encoder / nearest decoder."""
    channels, groups = vae.config.block_out_channels, vae.config.norm_num_groups
    if min(channels) < 16 or any(c % groups for c in channels):
        raise ValueError(f"thumbnail_init needs >= 16 channels per block; got {channels}")
    latent = vae.config.latent_channels
    _zero_branches(vae)
    _samplers(vae)
    _carry_in(vae.encoder.conv_in.weight, vae.encoder.conv_in.bias, 3)
    _carry_out(vae.encoder.conv_out.weight, vae.encoder.conv_out.bias, _group_std(channels[-1], groups))
    vae.encoder.conv_out.bias[latent:] = 0.0
    _identity_1x1(vae.quant_conv)
    vae.quant_conv.bias[latent:] = logvar
    _identity_1x1(vae.post_quant_conv)
    _carry_in(vae.decoder.conv_in.weight, vae.decoder.conv_in.bias, 3)
    _carry_out(vae.decoder.conv_out.weight, vae.decoder.conv_out.bias, _group_std(channels[0], groups))
