"""Per-frame edit maps {frame index: FrameEdit}: checking them against a sequence, re-rolling a frame,
pinning a candidate, and reading them from JSON."""
from __future__ import annotations

import random
from typing import Mapping, Optional

from interp.errors import InputError
from interp.settings import FrameEdit
from interp.timeline import Layout


def check_edits(edits: Mapping, frames: int) -> dict:
    """A plain dict of the edits after checking each is a FrameEdit for an in-between frame of a
    `frames`-frame sequence (the rule is Layout.locate's, for one segment)."""
    where = Layout((frames,))
    for i, edit in edits.items():
        if not isinstance(edit, FrameEdit):
            raise TypeError(f"edits[{i!r}] must be a FrameEdit, got {type(edit).__name__}")
        where.locate(i, "edit for frame")
    return dict(edits)


def check_candidate(frame: int, candidate: int, count: int) -> int:
    """`candidate` if frame `frame` has it (0..count - 1), else InputError."""
    if isinstance(candidate, bool) or not isinstance(candidate, int) or not 0 <= candidate < count:
        raise InputError(f"frame {frame} has candidates 0..{count - 1}, not {candidate!r}")
    return candidate


def regenerate(edits: Mapping[int, FrameEdit], frame: int, seed: Optional[int] = None) -> dict:
    """Edits that re-roll `frame` with a new seed (random when None); its pick is cleared."""
    seed = random.SystemRandom().randrange(2**63) if seed is None else seed
    old = edits.get(frame, FrameEdit())
    return {**edits, frame: old.replace(seed=seed, candidate=None)}


def select(edits: Mapping[int, FrameEdit], frame: int, candidate: int) -> dict:
    """Edits that pin candidate `candidate` of `frame` (its children then regenerate)."""
    old = edits.get(frame, FrameEdit())
    return {**edits, frame: old.replace(candidate=candidate)}


def edits_from_dict(data: Mapping) -> dict:
    """{"3": {...}} (JSON) -> {3: FrameEdit}; keys must be frame numbers."""
    if not isinstance(data, Mapping):
        raise ValueError(f"edits must be a JSON object {{frame: {{field: value}}}}, got "
                         f"{type(data).__name__}")
    out = {}
    for key, value in data.items():
        if isinstance(key, bool) or not (isinstance(key, int) or str(key).isdigit()):
            raise ValueError(f"edits: {key!r} is not a frame number")
        out[int(key)] = value if isinstance(value, FrameEdit) else FrameEdit.from_dict(value)
    return out
