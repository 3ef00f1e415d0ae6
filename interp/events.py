"""Typed progress events and the cancel token shared by every long-running call."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from interp.errors import Cancelled


@dataclass(frozen=True)
class StageProgress:
    """A preparation stage advanced (e.g. "invert", "encode", "pose")."""
    stage: str
    step: int
    total: int


@dataclass(frozen=True)
class FrameStarted:
    index: int
    level: int
    candidates: int


@dataclass(frozen=True)
class DenoiseStep:
    index: int
    step: int
    total: int


@dataclass(frozen=True)
class FrameReady:
    """A frame is final: its candidates, scores, the chosen one, and whether it was generated or reused."""
    index: int
    images: tuple  # PIL images, one per candidate
    scores: Optional[tuple]  # CLIP scores or None
    chosen: int
    generated: bool
    key: str = ""


@dataclass(frozen=True)
class Done:
    result: Any


Event = Any
EventCallback = Callable[[Event], None]


def ignore_event(event: Event) -> None:
    """The default callback: drop every event."""


@dataclass
class CancelToken:
    """Set from any thread; long loops call check() between steps."""
    _flag: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self._flag.set()

    @property
    def cancelled(self) -> bool:
        return self._flag.is_set()

    def check(self) -> None:
        if self._flag.is_set():
            raise Cancelled("cancelled by the user; finished frames are kept")
