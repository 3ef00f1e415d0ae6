"""What a render returns: one FrameResult per frame and the RenderResult around them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from PIL import Image

from interp.plan import Plan
from interp.settings import Settings


@dataclass(frozen=True)
class FrameResult:
    """One frame: its candidates (latents + images), scores, the chosen one, and provenance."""
    index: int
    position: float
    level: int
    key: str
    images: tuple                      # PIL images, one per candidate (endpoints: the input image)
    latents: torch.Tensor              # [K, C, h, w] clean latents
    scores: Optional[tuple] = None     # CLIP scores, one per candidate
    chosen: int = 0
    generated: bool = False
    seeds: tuple = ()
    ddim_index: Optional[int] = None
    timestep: Optional[int] = None
    parents: Optional[tuple] = None
    segment: int = 0                   # in a timeline: the segment, and the index inside it
    local: Optional[int] = None

    @property
    def image(self) -> Image.Image:
        return self.images[self.chosen]

    @property
    def latent(self) -> torch.Tensor:
        return self.latents[self.chosen:self.chosen + 1]

    def summary(self) -> dict:
        return {
            "index": self.index, "position": self.position, "level": self.level,
            "parents": list(self.parents) if self.parents else None,
            "ddim_index": self.ddim_index, "timestep": self.timestep, "seeds": list(self.seeds),
            "key": self.key, "candidates": len(self.images),
            "scores": list(self.scores) if self.scores is not None else None,
            "chosen": self.chosen, "generated": self.generated,
            "segment": self.segment, "local": self.index if self.local is None else self.local,
        }


class FrameSequence:
    """What a finished sequence offers about its `frames` (FrameResults in order)."""
    frames: tuple

    @property
    def images(self) -> list:
        """The chosen image of every frame."""
        return [f.image for f in self.frames]

    @property
    def generated(self) -> list:
        """Frames made by this render."""
        return [f.index for f in self.frames if f.generated]

    @property
    def reused(self) -> list:
        """In-between frames taken from the cache."""
        return [f.index for f in self.frames if f.level > 0 and not f.generated]


@dataclass(frozen=True)
class RenderResult(FrameSequence):
    """All frames 0..N in order, with the settings, edits, model-call counts and warnings."""
    frames: tuple
    plan: Plan
    settings: Settings
    edits: dict
    counts: dict = field(default_factory=dict)           # model calls and rows this render made
    expected_counts: dict = field(default_factory=dict)  # their analytic minimum
    warnings: tuple = ()
    inversion_steps: int = 0           # textual-inversion iterations run (0: off or reused)

    def summary(self) -> dict:
        return {
            "settings": self.settings.to_dict(),
            "edits": {str(i): e.to_dict() for i, e in sorted(self.edits.items())},
            "frames": [f.summary() for f in self.frames],
            "generated": self.generated, "reused": self.reused,
            "model_calls": self.counts, "analytic_minimum": self.expected_counts,
            "inversion_steps": self.inversion_steps,
            "warnings": list(self.warnings),
        }

