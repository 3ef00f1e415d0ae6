"""Rendering on a Hugging Face ZeroGPU Space (SPACES_ZERO_GPU=true).

There, `spaces.GPU` runs a function in a GPU worker process: its arguments and every value it
yields are pickled across the process boundary (spaces.zero.wrappers). A studio session (threads,
a cancel token, export folders) cannot cross it, so only the render does: the session hands the
timeline, the settings and its edits to `render_events` in the worker, which renders on the
engine the worker inherited from this process and yields the engine's events back as they come.
Each request asks for its own duration, estimated from the plan before anything runs
(interp.gpu_budget); one above what the Space allows is refused with the estimate, the cap and
what to lower. Elsewhere (a local GPU, a dedicated-GPU Space) nothing here is used.
"""
from __future__ import annotations

import os
from typing import Any, Iterator, Optional

from interp.events import CancelToken
from interp.gpu_budget import GpuBudget, frames_to_redo, request_budget
from interp.streaming import Runner, local_runner

_ENGINE = None          # the process's one engine, inherited by the forked GPU worker


def on_zero_gpu() -> bool:
    """Whether this process runs on a ZeroGPU Space (the variable spaces.config reads)."""
    return os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in ("1", "t", "true")


def render_events(timeline, settings, segment_edits, fps: float, seconds: int) -> Iterator[Any]:
    """In the GPU worker: render the timeline on the inherited engine, yielding its events."""
    yield from local_runner(_ENGINE)(timeline, settings, segment_edits, fps, CancelToken())


def requested_seconds(timeline, settings, segment_edits, fps: float, seconds: int) -> int:
    """spaces.GPU's duration callable: the seconds the studio estimated for this request."""
    return seconds


class ZeroGpu:
    """The studio's GPU calls on ZeroGPU: a budget check, then the render in the GPU worker."""

    def __init__(self, engine) -> None:
        import spaces
        global _ENGINE
        _ENGINE = engine
        self.engine = engine
        self._render = spaces.GPU(duration=requested_seconds)(render_events)

    def runner(self, session, settings, frame: Optional[int] = None, pin: bool = False,
               invert: bool = True) -> Runner:
        """A runner for the session's next render, after checking its budget (GpuBudgetExceeded,
        a ValueError naming the estimate, the cap and what to lower). frame: a frame edit's
        render (its subtree; pin: only its descendants)."""
        budget = self.budget(session, settings, frame, pin, invert)
        budget.check()

        def run(timeline, settings, segment_edits, fps, token: CancelToken) -> Iterator[Any]:
            # iterated in the handler's own thread: spaces reads the request from its context
            return _until_cancelled(
                self._render(timeline, settings, segment_edits, fps, budget.duration), token)
        return run

    def budget(self, session, settings, frame: Optional[int], pin: bool,
               invert: bool) -> GpuBudget:
        timeline, fps = session.timeline(settings), session.export.fps
        frames = None if frame is None else frames_to_redo(timeline, settings, frame, fps,
                                                           itself=not pin)
        return request_budget(self.engine, timeline, settings, fps, frames=frames,
                              invert=invert and frame is None)


def _until_cancelled(events: Iterator[Any], token: CancelToken) -> Iterator[Any]:
    """The worker's events until the token is cancelled; then the GPU call is closed."""
    try:
        for event in events:
            yield event
            if token.cancelled:
                return
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()
