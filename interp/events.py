"""Typed progress events and the cancel token shared by every long-running call."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

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
class PlanReady:
    """A render is planned (before its first frame): the plan, the settings, and both inputs at the
    working size, so a caller can show the sequence's shape without planning again."""
    plan: Any         # interp.plan.Plan
    settings: Any     # interp.settings.Settings
    images: tuple     # (A, B) as the model sees them (PIL)


@dataclass(frozen=True)
class FrameReady:
    """A frame is final (an input, generated or reused): its interp.results.FrameResult."""
    frame: Any

    @property
    def index(self) -> int:
        return self.frame.index

    @property
    def generated(self) -> bool:
        return self.frame.generated


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
