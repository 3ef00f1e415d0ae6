"""Helpers of the studio tests: an in-process studio on the tiny model, a gradio_client session,
and its endpoints' outputs by component name (the names the handlers return, ui.names)."""
from __future__ import annotations

import socket
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "assets" / "examples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_studio(settings, note: str = "running on the tiny test model") -> tuple:
    """(demo, url) of the studio on the tiny model (memory-only frame store), launched here."""
    from ui import layout
    from interp.models.load import load_bundle
    from interp.rank import build_tiny_clip
    from interp.render import Interpolator
    from interp.store import FrameStore
    bundle = load_bundle("tiny")
    engine = Interpolator(bundle, FrameStore(), build_tiny_clip(counter=bundle.counter))
    demo = layout.build_demo(engine, note, settings, preset="draft")
    port = free_port()
    demo.launch(prevent_thread_lock=True, quiet=True, server_port=port, **layout.launch_options())
    return demo, f"http://127.0.0.1:{port}/"


def studio_fixture(settings):
    """A module fixture: the url of a studio started with `settings`, closed after the module."""
    import pytest

    @pytest.fixture(scope="module")
    def url():
        demo, address = start_studio(settings)
        yield address
        demo.close()
    return url


def connect(url: str):
    """A gradio_client Client: its own session; files come back as FileData dicts."""
    from gradio_client import Client
    return Client(url, verbose=False, download_files=False, analytics_enabled=False)


def fetch(url: str, filedata: dict, directory: Path) -> Path:
    """Download one output file of the app into directory."""
    import httpx
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / Path(filedata["path"]).name
    path.write_bytes(httpx.get(filedata["url"], timeout=30).content)
    return path


def by_name(names, out) -> dict:
    """An endpoint's output tuple as {component name: value} (`names`: its outputs in order; the
    client leaves the session state out)."""
    names = [n for n in names if n != "state"]
    out = out if isinstance(out, (list, tuple)) and len(names) > 1 else [out]
    assert len(names) == len(out), (names, out)
    return {n: _value(v) for n, v in zip(names, out)}


def _value(v):
    """A component update's value (an update without one, e.g. gr.skip(), stays as it is)."""
    if isinstance(v, dict) and v.get("__type__") == "update" and "value" in v:
        return v["value"]
    return v


def add(client, *names: str) -> dict:
    """/add_keyframes with example photos -> the board's outputs by name."""
    from gradio_client import handle_file
    from ui.keyframes import BOARD
    files = [handle_file(str(EXAMPLES / n)) for n in names]
    return by_name(BOARD, client.predict(files=files, api_name="/add_keyframes"))


def render(client, **knobs) -> tuple:
    """/interpolate with the given knobs -> (job, the final outputs by name)."""
    from ui.handlers import RENDER
    job = client.submit(**knobs, api_name="/interpolate")
    return job, by_name(RENDER, job.result())


def outputs(job, names) -> list:
    """Every streamed update of a job, by name."""
    return [by_name(names, o) for o in job.outputs()]
