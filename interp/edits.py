"""Per-frame edit maps {frame index: FrameEdit}: checking them against a sequence, re-rolling a frame,
pinning a candidate, and reading them from JSON."""
from __future__ import annotations

import random
from typing import Mapping, Optional

from interp.settings import FrameEdit


def check_inbetween(frame: int, frames: int, what: str = "edit for frame") -> int:
    """`frame` if it is an in-between frame of a `frames`-frame sequence, else ValueError."""
    if isinstance(frame, bool) or not isinstance(frame, int) or not 0 < frame < frames - 1:
        raise ValueError(f"{what} {frame!r} is out of range: in-between frames are 1..{frames - 2} "
                         "(0 and the last are the inputs)")
    return frame


def check_edits(edits: Mapping, frames: int) -> dict:
    """A plain dict of the edits after checking each is a FrameEdit for an in-between frame."""
    for i, edit in edits.items():
        if not isinstance(edit, FrameEdit):
            raise TypeError(f"edits[{i!r}] must be a FrameEdit, got {type(edit).__name__}")
        check_inbetween(i, frames)
    return dict(edits)


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
