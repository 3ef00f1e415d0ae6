"""Endpoint attention on top of the paper's method (beyond the paper; DiffMorpher, AID, FreeMorph).

While an in-between frame is denoised, its self-attention (the UNet's attn1 layers) also sees the two
endpoints at the same timestep. The endpoint rows ride in the frame's own UNet call: at each injected
step the endpoints' clean latents are noised to that step's timestep with the noise of the frame's
first candidate (so at level 1 the frame starts exactly between its two endpoint rows), with the
endpoints' own text conditions and poses. Their predictions are dropped; nothing else changes.

- interpolate (DiffMorpher, AID inner): the frame's keys and values become
  (1 - s) own + s ((1 - w) endpoint A + w endpoint B), w = the frame's position between them.
- extend (AID fused outer): the frame attends to its own tokens plus A's, and to its own plus B's,
  mixed by w: (1 - w) Attn(Q, [K; K_A]) + w Attn(Q, [K; K_B]); then (1 - s) own output + s that.

Strength 0 or a step past `share` adds no rows and leaves the processors unused, so the frame is
bitwise the paper's. Processors are installed on the UNet for one denoising call and removed after.
Cost per injected step: 2 endpoint rows per CFG half (4 with guidance), whatever the candidates.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Iterator, Optional

import torch
import torch.nn.functional as F

from interp.settings import AttentionBlocks, AttentionMode


PREFIXES = {AttentionBlocks.UP: ("up_blocks",), AttentionBlocks.MID_UP: ("mid_block", "up_blocks"),
            AttentionBlocks.ALL: ("down_blocks", "mid_block", "up_blocks")}


@dataclass(frozen=True)
class Injection:
    """One frame's endpoint attention: the knobs and the endpoints' inputs."""
    mode: AttentionMode
    strength: float                   # 0 = the paper's frame, 1 = full injection
    share: float                      # the first share of the frame's denoising steps
    blocks: AttentionBlocks
    weight: float                     # the frame's position between endpoint A (0) and B (1)
    latents: torch.Tensor             # clean latents of A and B [2, C, h, w]
    eps: torch.Tensor                 # the noise their rows get [1, C, h, w]
    cond: torch.Tensor                # text conditions of A and B [2, L, d]
    uncond: torch.Tensor              # their negative conditions [2, L, d]
    control: Optional[object] = None  # interp.sampling.Control of A and B (pose guidance), or None

    def steps(self, total: int) -> int:
        """How many of the frame's `total` denoising steps are injected (the first ones)."""
        if self.mode == AttentionMode.OFF or self.strength == 0:
            return 0
        return injected_steps(self.share, total)


def injected_steps(share: float, total: int) -> int:
    """The first ceil(share x total) of a frame's `total` steps (at least one, at most all)."""
    return min(total, max(1, math.ceil(share * total - 1e-9)))


@dataclass
class _State:
    """Shared by the installed processors; the denoising loop sets it before each UNet call."""
    injection: Injection
    frames: int = 0                    # frame rows per CFG half (0: plain call, no injection)
    calls: dict = field(default_factory=dict)


def _rows(state: _State, batch: int) -> tuple:
    """Index maps over a batch of halves [frames | A | B]: frame rows and their endpoint rows."""
    per_half = state.frames + 2
    fr, ar, br = [], [], []
    for base in range(0, batch, per_half):
        fr += range(base, base + state.frames)
        ar += [base + state.frames] * state.frames
        br += [base + state.frames + 1] * state.frames
    return tuple(torch.tensor(x, dtype=torch.long) for x in (fr, ar, br))


class EndpointAttnProcessor:
    """A self-attention processor whose frame rows use the endpoint rows' keys and values.
    A plain class (never a registered module); anything unusual goes to the original processor."""

    def __init__(self, original, state: _State, name: str):
        self.original, self.state, self.name = original, state, name

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 **kwargs):
        st = self.state
        if (st.frames == 0 or encoder_hidden_states is not None or attention_mask is not None
                or attn.spatial_norm is not None or attn.group_norm is not None
                or hidden_states.ndim != 3):
            return self.original(attn, hidden_states, encoder_hidden_states=encoder_hidden_states,
                                 attention_mask=attention_mask, **kwargs)
        st.calls[self.name] = st.calls.get(self.name, 0) + 1
        q, k, v = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        out = _inject(st.injection, q, k, v, attn.heads, _rows(st, hidden_states.shape[0]))
        out = attn.to_out[1](attn.to_out[0](out.to(q.dtype)))
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


def _inject(inj: Injection, q, k, v, heads: int, rows: tuple) -> torch.Tensor:
    """Attention output [B, N, C] with the frame rows injected (see the module docstring)."""
    fr, ar, br = rows
    b, n, c = q.shape
    d = c // heads

    def split(x):
        return x.reshape(x.shape[0], -1, heads, d).transpose(1, 2)

    s, w = float(inj.strength), float(inj.weight)
    if inj.mode == AttentionMode.INTERPOLATE:
        k, v = k.clone(), v.clone()
        k[fr] = (1 - s) * k[fr] + s * ((1 - w) * k[ar] + w * k[br])
        v[fr] = (1 - s) * v[fr] + s * ((1 - w) * v[ar] + w * v[br])
        out = F.scaled_dot_product_attention(split(q), split(k), split(v))
    else:
        out = F.scaled_dot_product_attention(split(q), split(k), split(v)).clone()
        qf = split(q[fr])
        with_a = F.scaled_dot_product_attention(qf, split(torch.cat([k[fr], k[ar]], 1)),
                                                split(torch.cat([v[fr], v[ar]], 1)))
        with_b = F.scaled_dot_product_attention(qf, split(torch.cat([k[fr], k[br]], 1)),
                                                split(torch.cat([v[fr], v[br]], 1)))
        out[fr] = (1 - s) * out[fr] + s * ((1 - w) * with_a + w * with_b)
    return out.transpose(1, 2).reshape(b, n, c)


@contextlib.contextmanager
def installed(unet, injection: Injection) -> Iterator[_State]:
    """Endpoint processors on the chosen blocks' attn1 layers for the duration of the block; the
    UNet's own processor objects are put back afterwards, whatever happens."""
    saved = unet.attn_processors
    state = _State(injection)
    chosen = {name: (EndpointAttnProcessor(p, state, name)
                     if name.endswith("attn1.processor") and name.startswith(PREFIXES[injection.blocks])
                     else p) for name, p in saved.items()}
    unet.set_attn_processor(dict(chosen))          # a copy: set_attn_processor empties its dict
    try:
        yield state
    finally:
        unet.set_attn_processor(dict(saved))
