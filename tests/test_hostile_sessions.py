"""Sessions at once (issue 11, items 3 and 6): four sessions render and export together, with
double exports and exports while a render finishes; every call succeeds with the right frame
count, and each session's folder is gone once Gradio ends the session."""
import os
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest

from hostile import TINY, alive
from studio import add, by_name, connect, start_studio
from interp.exports import SESSION_PREFIX, remove_session_dirs
from interp.video import read_video_frames


@pytest.fixture(scope="module")
def studio():
    old = os.environ.get("GRADIO_HEARTBEAT_INTERVAL")
    os.environ["GRADIO_HEARTBEAT_INTERVAL"] = "0.25"   # a closed client is noticed within 1 s
    demo, url = start_studio(TINY)
    yield url
    demo.close()
    if old is None:
        os.environ.pop("GRADIO_HEARTBEAT_INTERVAL")
    else:
        os.environ["GRADIO_HEARTBEAT_INTERVAL"] = old


def session_dirs() -> set:
    return set(Path(tempfile.gettempdir()).glob(f"{SESSION_PREFIX}{os.getpid()}-*"))


def video_frames(filedata: dict, folder: Path) -> int:
    path = folder / f"{time.monotonic_ns()}.mp4"
    path.write_bytes(httpx.get(filedata["url"], timeout=30).content)
    return len(read_video_frames(path))


def work(client, frames: int, seed: int, folder: Path, out: dict) -> None:
    try:
        steps(client, frames, seed, folder, out)
    except Exception as exc:   # shown by the test's assertion, not lost in the thread
        out[seed] = repr(exc)


def steps(client, frames: int, seed: int, folder: Path, out: dict) -> None:
    """Render; then render again while two exports run at once; check every video."""
    from ui.handlers import RENDER
    add(client, "astronaut.jpg", "coffee.jpg")
    first = by_name(RENDER, client.predict(frames=frames, seed=seed, api_name="/interpolate"))
    second = client.submit(frames=frames, seed=seed + 100, api_name="/interpolate")
    exports = [client.submit(api_name="/export") for _ in range(2)]      # a double click
    done = [first, by_name(RENDER, second.result(timeout=300))]
    files = [by_name(("video", "mp4", "gif", "zip", "project"), e.result(timeout=300))
             for e in exports]
    out[seed] = dict(
        status=[d["status"] for d in done],
        videos=[video_frames(d["mp4"], folder) for d in done + files],
        seeds=[d["details"]["frames"][1]["seeds"] for d in done])


def test_four_sessions_render_and_export_at_once_and_their_folders_go(studio, tmp_path):
    before = session_dirs()
    clients = [connect(studio) for _ in range(4)]
    results: dict = {}
    threads = [threading.Thread(target=work, args=(c, 3 + i, 10 * i, tmp_path, results))
               for i, c in enumerate(clients)]
    [t.start() for t in threads]
    [t.join(timeout=600) for t in threads]
    assert sorted(results) == [0, 10, 20, 30]
    assert all(isinstance(r, dict) for r in results.values()), results
    for i, seed in enumerate(sorted(results)):
        frames, got = 3 + i, results[seed]
        assert all(s.startswith(f"{frames} frames") for s in got["status"]), got["status"]
        assert got["videos"] == [frames] * 4
    assert len({str(r["seeds"]) for r in results.values()}) == 4          # sessions stay apart
    made = session_dirs() - before
    assert len(made) == 4
    for client in clients:
        client.close()
    deadline = time.time() + 20
    while made & session_dirs() and time.time() < deadline:
        time.sleep(0.1)
    assert not made & session_dirs()
    assert alive(studio)


def test_session_folders_of_dead_processes_are_removed_at_start_up(tmp_path):
    import subprocess
    import sys
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = tmp_path / f"{SESSION_PREFIX}{dead.pid}-abc123"
    mine = tmp_path / f"{SESSION_PREFIX}{os.getpid()}-def456"
    legacy_old, legacy_new = tmp_path / f"{SESSION_PREFIX}q1w2e3r4", tmp_path / f"{SESSION_PREFIX}z9"
    for folder in (gone, mine, legacy_old, legacy_new):
        (folder / "run-0001").mkdir(parents=True)
    os.utime(legacy_old, (time.time() - 7200, time.time() - 7200))
    assert remove_session_dirs(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, legacy_new.name])
    assert remove_session_dirs(tmp_path, own=True) == 1 and not mine.exists()
