"""Prompt encoding and the text condition of every frame: slerp along a path of anchors.

Without edits, frame i's condition is slerp(cond A, cond B, position of frame i) (global position)
and the negative embedding is fixed (Wang & Golland 2023, method.md section 4). A FrameEdit can
override a frame's positive and/or negative prompt with a strength in [0, 1]; with keyframe=True the
(blended) override becomes an anchor, so the frames between its neighbouring anchors interpolate
toward it instead of straight from A to B ("specifying intermediate prompts").
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import torch

from interp.checks import cut
from interp.sampling import slerp
from interp.settings import FrameEdit, Settings

log = logging.getLogger(__name__)
LOG_CHARS = 200   # a log line quotes at most this much of a prompt's cut words


def tokenize(tokenizer, prompt: str) -> tuple[torch.Tensor, list[str]]:
    """Token ids [1, L] padded/truncated to the tokenizer's window, and the words that did not fit.

    The prompt is plain data: no template evaluation, no weighting syntax.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    length = int(tokenizer.model_max_length)
    ids = tokenizer(prompt, padding="max_length", max_length=length, truncation=True,
                    return_tensors="pt").input_ids
    full = tokenizer(prompt, truncation=False, verbose=False).input_ids
    if len(full) <= length:
        return ids, []
    return ids, _cut_words(tokenizer, prompt, full, length)


def _cut_words(tokenizer, prompt: str, full: list, length: int) -> list[str]:
    """The prompt's words (as typed) whose tokens fall, wholly or partly, beyond the window."""
    words = prompt.split()
    counts = [len(tokenizer(w, add_special_tokens=False).input_ids) for w in words]
    if sum(counts) != len(full) - 2:  # tokens crossed whitespace: fall back to decoding the ids
        return tokenizer.decode(full[length - 1:-1]).split()
    budget, used = length - 2, 0
    for k, count in enumerate(counts):
        used += count
        if used > budget:
            return words[k:]
    return []


def encode_prompt(bundle, prompt: str, negative: bool = False) -> tuple[torch.Tensor, list[str]]:
    """The condition tensor [1, L, d] of a prompt (interp.models.family), and the cut words.
    `negative`: the prompt is a negative one (SDXL encodes an empty negative as zeros)."""
    ids, dropped = tokenize(bundle.tokenizer, prompt)
    if dropped:
        log.warning("prompt %r is longer than the text encoder's %d-token window; %d words are "
                    "cut: %s", cut(prompt, 60), int(bundle.tokenizer.model_max_length),
                    len(dropped), cut(" ".join(dropped), LOG_CHARS))
    return bundle.encode_prompt(prompt, negative), dropped


def cut_words(tokenizer, prompt: str) -> list[str]:
    """The words of `prompt` that fall beyond the tokenizer's window (encoding drops them)."""
    return tokenize(tokenizer, prompt)[1]


def encode_prompts(bundle, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
    """Embeddings of each distinct prompt, one text-encoder call per distinct prompt."""
    out: dict[str, torch.Tensor] = {}
    for prompt in prompts:
        if prompt not in out:
            out[prompt] = encode_prompt(bundle, prompt)[0]
    return out


@dataclass(frozen=True)
class TextConditions:
    """Positive embeddings of image A and B and the negative one, [1, L, d] each; uncond_b is B's
    own negative when its negative prompt differs (None: the negative is shared, as the paper's)."""
    cond_a: torch.Tensor
    cond_b: torch.Tensor
    uncond: torch.Tensor
    uncond_b: Optional[torch.Tensor] = None

    @property
    def uncond_pair(self) -> tuple:
        """(negative of A, negative of B)."""
        return self.uncond, self.uncond if self.uncond_b is None else self.uncond_b

    def __post_init__(self) -> None:
        shapes = {tuple(t.shape) for t in (self.cond_a, self.cond_b, *self.uncond_pair)}
        if len(shapes) != 1 or len(next(iter(shapes))) != 3 or next(iter(shapes))[0] != 1:
            raise ValueError(f"TextConditions need [1, L, d] tensors of one shape, got {shapes}")


def plain_conditions(bundle, settings: Settings) -> TextConditions:
    """The plain prompt embeddings: settings.prompt_pair and settings.negative_prompt, no inversion."""
    prompt_a, prompt_b = settings.prompt_pair
    emb = encode_prompts(bundle, [prompt_a, prompt_b])
    neg_a, neg_b = settings.negative_pair
    uncond = encode_prompt(bundle, neg_a, negative=True)[0]
    uncond_b = None if neg_b == neg_a else encode_prompt(bundle, neg_b, negative=True)[0]
    return TextConditions(emb[prompt_a], emb[prompt_b], uncond, uncond_b)


def _between(p0: torch.Tensor, p1: torch.Tensor, weight: float) -> torch.Tensor:
    """slerp, exact at the ends and for equal tensors (an unchanged path gives unchanged tensors)."""
    if weight == 0.0 or p0 is p1 or torch.equal(p0, p1):
        return p0
    if weight == 1.0:
        return p1
    return slerp(p0, p1, weight)


class _Path:
    """A piecewise slerp through anchors [(position, embedding), ...] sorted by position."""

    def __init__(self, start: torch.Tensor, end: torch.Tensor,
                 keyframes: Mapping[float, torch.Tensor]):
        anchors = {0.0: start, 1.0: end}
        anchors.update(keyframes)
        self.anchors = sorted(anchors.items(), key=lambda a: a[0])

    def at(self, position: float) -> torch.Tensor:
        """slerp between the two anchors around `position` at the local fraction."""
        for (p_lo, e_lo), (p_hi, e_hi) in zip(self.anchors, self.anchors[1:]):
            if position <= p_hi:
                return _between(e_lo, e_hi, (position - p_lo) / (p_hi - p_lo))
        return self.anchors[-1][1]


class TextPath:
    """Text conditions (cond, uncond) of every frame from the pair's conditions and per-frame edits.

    Edits: frame cond = slerp(interpolated cond, override embedding, strength) (1 = the override
    exactly, 0 = unchanged). With keyframe=True that blended condition, computed against the plain
    A-to-B path at the frame's position, becomes an anchor of the path; negative overrides work the
    same way on the negative path. Edits without a prompt or with strength 0 change nothing.
    """

    def __init__(self, bundle, conds: TextConditions, positions: Sequence[float],
                 edits: Optional[Mapping[int, FrameEdit]] = None):
        self.positions = [float(p) for p in positions]
        if any(not 0.0 <= p <= 1.0 for p in self.positions) or any(
                b < a for a, b in zip(self.positions, self.positions[1:])):
            raise ValueError(f"positions={self.positions} must be non-decreasing values in [0, 1]")
        self.conds = conds
        self.edits = _effective_edits(edits or {}, len(self.positions))
        prompts = [p for e in self.edits.values() for p in (e.prompt, e.negative_prompt) if p is not None]
        self.overrides = encode_prompts(bundle, prompts)
        ends = ((conds.cond_a, conds.cond_b, "prompt"), (*conds.uncond_pair, "negative_prompt"))
        self._paths = tuple(_Path(start, end, self._keyframes(_Path(start, end, {}), field))
                            for start, end, field in ends)

    def _keyframes(self, plain: _Path, field: str) -> dict:
        """Anchors {position: blended condition} of the keyframe edits that set `field`."""
        out: dict = {}
        for index, edit in self.edits.items():
            prompt = getattr(edit, field)
            if not edit.keyframe or prompt is None:
                continue
            position = self.positions[index]
            if position in out:
                raise ValueError(f"edits: two keyframes at position {position} (frame {index})")
            out[position] = _between(plain.at(position), self.overrides[prompt], edit.strength)
        return out

    def at(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(cond, uncond) of frame `index`, [1, 77, d] each."""
        if not 0 <= index < len(self.positions):
            raise ValueError(f"index={index} is out of range 0..{len(self.positions) - 1}")
        position, edit = self.positions[index], self.edits.get(index)
        cond, uncond = (path.at(position) for path in self._paths)
        if edit is not None and not edit.keyframe:
            if edit.prompt is not None:
                cond = _between(cond, self.overrides[edit.prompt], edit.strength)
            if edit.negative_prompt is not None:
                uncond = _between(uncond, self.overrides[edit.negative_prompt], edit.strength)
        return cond, uncond

    @property
    def anchors(self) -> list[float]:
        """Positions of the positive path's anchors (0, keyframes..., 1)."""
        return [p for p, _ in self._paths[0].anchors]


def _effective_edits(edits: Mapping[int, FrameEdit], frames: int) -> dict:
    """The edits that change a text condition: a prompt or negative prompt and strength > 0."""
    out = {}
    for index, edit in edits.items():
        if not isinstance(edit, FrameEdit):
            raise TypeError(f"edits[{index}] must be a FrameEdit, got {type(edit).__name__}")
        if not (isinstance(index, int) and 0 <= index < frames):
            raise ValueError(f"edits: frame index {index!r} is out of range 0..{frames - 1}")
        if edit.strength > 0 and (edit.prompt is not None or edit.negative_prompt is not None):
            out[index] = edit
    return out
