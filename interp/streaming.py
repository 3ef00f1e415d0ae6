"""A render's events as an iterator: the work runs in a worker thread from the moment it is
started, and its events come out as they happen. Used by the studio session (interp.session) and,
on a ZeroGPU Space, inside the GPU worker process (ui.zerogpu), where the events cross a process
boundary as they come.

A runner has the shape runner(timeline, settings, segment_edits, fps, token) -> Iterator[event];
`local_runner(engine)` renders in this process.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator

from interp.errors import Cancelled
from interp.events import CancelToken, EventCallback

Work = Callable[[EventCallback, CancelToken], Any]
Runner = Callable[..., Iterator[Any]]
_END = object()


def stream_events(work: Work, token: CancelToken) -> Iterator[Any]:
    """Start work(on_event, cancel) in a worker thread now; iterate the result for its events.
    The iterator ends when the work does (quietly when it was cancelled), raises the work's own
    exception in the consumer, and cancels the work when it is closed early."""
    events: queue.Queue = queue.Queue()

    def run() -> None:
        try:
            work(events.put, token)
        except Cancelled:
            pass
        except BaseException as exc:  # handed to the consumer's thread and raised there
            events.put(exc)
        finally:
            events.put(_END)
    worker = threading.Thread(target=run, daemon=True, name="interp-render")
    worker.start()
    return _drain(worker, token, events)


def _drain(worker: threading.Thread, token: CancelToken, events: queue.Queue) -> Iterator[Any]:
    try:
        while (item := events.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        token.cancel()   # a consumer that stops early (closed iterator) stops the work
        worker.join()


def local_runner(engine) -> Runner:
    """A runner that renders on `engine` in this process (interp.sequence.render_timeline)."""
    from interp.sequence import render_timeline

    def run(timeline, settings, segment_edits, fps, token: CancelToken) -> Iterator[Any]:
        return stream_events(lambda on_event, cancel: render_timeline(
            engine, timeline, settings, segment_edits=segment_edits, fps=fps,
            on_event=on_event, cancel=cancel), token)
    return run
