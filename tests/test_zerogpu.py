"""The studio on a ZeroGPU Space, with a stand-in for the `spaces` package that does to a GPU
function what ZeroGPU does (spaces.zero.wrappers): the call's arguments and every value it yields
cross a process boundary pickled, to and from a forked worker. The session never crosses it; the
render does, each request asks for its estimated seconds, and one over the cap is refused."""
import multiprocessing
import pickle
import sys
import types

import pytest

from studio import EXAMPLES
from interp.settings import Settings

KNOBS = dict(frames=5, num_inference_steps=4, size=64, candidates=2, prompt="a photo",
             rank_positive="a photo")


def stand_in_spaces(calls: list) -> types.ModuleType:
    """A `spaces` module whose GPU(duration=...) runs generator functions in a forked worker."""
    module = types.ModuleType("spaces")

    def GPU(task=None, duration=None):
        def wrap(fn):
            def handler(*args, **kwargs):
                calls.append(duration(*args, **kwargs) if callable(duration) else duration)
                yield from _in_worker(fn, pickle.dumps((args, kwargs)))
            return handler
        return wrap(task) if task is not None else wrap
    module.GPU = GPU
    return module


def _in_worker(fn, payload: bytes):
    context = multiprocessing.get_context("fork")
    results = context.Queue()

    def work():
        try:
            args, kwargs = pickle.loads(payload)
            for item in fn(*args, **kwargs):
                results.put(pickle.dumps(("event", item)))
        except BaseException as exc:  # handed back, as ZeroGPU does
            results.put(pickle.dumps(("error", exc)))
        results.put(pickle.dumps(("end", None)))
    worker = context.Process(target=work, daemon=True)
    worker.start()
    try:
        while True:
            kind, item = pickle.loads(results.get(timeout=300))
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        worker.terminate()
        worker.join()


@pytest.fixture
def zero(monkeypatch, tmp_path):
    """(Studio on the tiny model with a disk frame store, the durations its GPU calls asked)."""
    from ui.handlers import Studio
    from interp.models.load import load_bundle
    from interp.rank import build_tiny_clip
    from interp.render import Interpolator
    from interp.store import FrameStore
    calls: list = []
    monkeypatch.setitem(sys.modules, "spaces", stand_in_spaces(calls))
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    bundle = load_bundle("tiny")
    engine = Interpolator(bundle, FrameStore(tmp_path / "frames"),
                          build_tiny_clip(counter=bundle.counter))
    return Studio(engine), calls


def last(outputs) -> dict:
    """Every update a handler yielded, merged (the state the page ends in)."""
    merged: dict = {}
    for out in outputs:
        merged.update(out)
    return merged


def session_with(*names):
    from interp.session import Session
    session = Session()
    session.add_keyframes([str(EXAMPLES / n) for n in names])
    return session


def test_the_render_crosses_the_process_boundary_and_asks_for_its_seconds(zero):
    studio, calls = zero
    session = session_with("astronaut.jpg", "chelsea.jpg", "coffee.jpg")
    before = studio.engine.bundle.counter.snapshot()
    out = last(studio.interpolate(session, False, progress=lambda *a, **k: None, **KNOBS))
    assert out["status"].startswith("9 frames · regenerated 6, reused 0")
    assert studio.engine.bundle.counter.since(before)["calls"].get("unet", 0) == 0  # not here
    assert out["details"]["model_calls"]["rows"]["unet"] > 0                       # there
    assert len(calls) == 1 and 10 <= calls[0] <= 300      # at least the call's overhead, <= cap
    again = last(studio.interpolate(session, False, progress=lambda *a, **k: None, **KNOBS))
    assert "regenerated 0, reused 6" in again["status"]   # the worker wrote the disk store
    redone = last(studio.regenerate_frame(session, 6, progress=lambda *a, **k: None))
    assert "regenerated 3, reused 3" in redone["status"] and len(calls) == 3


def test_a_request_over_the_cap_is_refused_before_any_gpu_call(zero, monkeypatch):
    from interp.gpu_budget import GpuBudgetExceeded
    studio, calls = zero
    monkeypatch.setenv("INTERP_MAX_GPU_SECONDS", "10")   # below any request's own overhead
    session = session_with("astronaut.jpg", "chelsea.jpg")
    with pytest.raises(GpuBudgetExceeded, match=r"more than the 10 s this Space allows"):
        list(studio.interpolate(session, False, progress=lambda *a, **k: None, **KNOBS))
    assert calls == [] and session.result is None


def test_cancel_stops_waiting_for_the_worker_and_keeps_finished_frames(zero):
    from interp.events import FrameReady
    studio, calls = zero
    session = session_with("astronaut.jpg", "chelsea.jpg")
    settings = Settings(**{**KNOBS, "frames": 17, "num_inference_steps": 30, "candidates": 1})
    kept = 0
    runner = studio._runner(session, settings)
    for event in session.stream(studio.engine, settings, runner):
        if isinstance(event, FrameReady) and event.frame.level > 0:
            kept += 1
            session.cancel()
    assert session.cancelled and 1 <= kept < 15 and len(calls) == 1
    assert "cancelled: kept" in session.status()
