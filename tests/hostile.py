"""Helpers of the hostile-input tests: raw HTTP calls as the browser makes them (upload, queue
join + event stream) and a record of the files the process opens (Python's audit hook), so a test
can prove that a secret file was never read. The studio itself comes from tests/studio.py."""
from __future__ import annotations

import json
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import httpx
import numpy as np
import pytest
from PIL import Image

from studio import start_studio
from interp.settings import Settings

TINY = Settings(frames=3, num_inference_steps=4, size=64, candidates=1, prompt="a photo")


def alive(url: str) -> bool:
    """The server answers its config and API info."""
    return all(httpx.get(url + path, timeout=10).status_code == 200
               for path in ("config", "gradio_api/info"))


@dataclass
class Reply:
    """One event's outcome as the browser sees it."""
    error: Optional[str] = None            # the message shown; None also when Gradio sent none
    failed: bool = False
    data: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    text: str = ""                         # every byte of the event stream, for leak checks


class Raw:
    """Raw HTTP against /gradio_api: the browser's upload, queue/join and queue/data calls."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.config = httpx.get(url + "config", timeout=10).json()
        self.info = httpx.get(url + "gradio_api/info", timeout=10).json()["named_endpoints"]
        self.types = {c["id"]: c["type"] for c in self.config["components"]}

    def upload(self, path: Path, name: Optional[str] = None) -> dict:
        """Upload a file as the browser does; its FileData payload."""
        with open(path, "rb") as handle:
            reply = httpx.post(self.url + "gradio_api/upload",
                               files={"files": (name or Path(path).name, handle)}, timeout=60)
        reply.raise_for_status()
        return {"path": reply.json()[0], "orig_name": name or Path(path).name,
                "meta": {"_type": "gradio.FileData"}}

    def call(self, api: str, session: Optional[str] = None, **values: Any) -> Reply:
        """Run endpoint `api` in `session` with the named values (others: their defaults)."""
        dep = next(d for d in self.config["dependencies"] if d.get("api_name") == api)
        params = iter(self.info["/" + api]["parameters"])
        data = []
        for cid in dep["inputs"]:
            if self.types[cid] == "state":
                data.append(None)
                continue
            p = next(params)
            data.append(values.pop(p["parameter_name"], p["parameter_default"]))
        assert not values, f"unknown parameters {sorted(values)} of /{api}"
        session = session or uuid.uuid4().hex
        body = {"data": data, "fn_index": dep["id"], "session_hash": session,
                "event_data": None, "trigger_id": None}
        joined = httpx.post(self.url + "gradio_api/queue/join", json=body, timeout=60)
        if joined.status_code != 200:
            return Reply(error=joined.text, failed=True, text=joined.text)
        return self._stream(session, joined.json()["event_id"])

    def _stream(self, session: str, event_id: str) -> Reply:
        reply, lines = Reply(), []
        with httpx.stream("GET", self.url + "gradio_api/queue/data",
                          params={"session_hash": session}, timeout=120) as stream:
            for line in stream.iter_lines():
                lines.append(line)
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("event_id") != event_id:
                    continue
                if msg.get("msg") == "log" and msg.get("level") == "warning":
                    reply.warnings.append(msg["log"])
                if msg.get("msg") == "process_completed":
                    output = msg.get("output") or {}
                    reply.failed = not msg.get("success")
                    reply.error = output.get("error") if reply.failed else None
                    reply.data = output.get("data") or []
                    break
        reply.text = "\n".join(lines)
        return reply


class OpenLog:
    """Paths the server opens while recording: opens from threads other than the main one (the
    server and its workers; the test itself runs in the main thread). sys.addaudithook stays for
    the process, so one instance is shared and switched on and off."""

    _instance: Optional["OpenLog"] = None

    def __init__(self) -> None:
        self.paths: list = []
        self.recording = False
        self._lock = threading.Lock()
        sys.addaudithook(self._hook)

    @classmethod
    def shared(cls) -> "OpenLog":
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def _hook(self, event: str, args: tuple) -> None:
        if (self.recording and event == "open" and isinstance(args[0], (str, bytes, Path))
                and threading.current_thread() is not threading.main_thread()):
            with self._lock:
                self.paths.append(str(args[0]))

    def under(self, folder: Path) -> list:
        """Recorded paths inside `folder` (as given or resolved)."""
        folder = folder.resolve()
        with self._lock:
            paths = list(self.paths)
        return [p for p in paths if folder in Path(p).resolve().parents
                or Path(p).resolve() == folder]


# -- the fixtures of the hostile tests (imported by each test module) ----------------------------

@pytest.fixture(scope="module")
def studio():
    demo, url = start_studio(TINY)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def raw(studio):
    return Raw(studio)


@pytest.fixture(scope="module")
def secret(tmp_path_factory):
    """A folder the app must never read: a distinctive image, a text, an empty file, a folder."""
    folder = tmp_path_factory.mktemp("secret")
    pixels = np.random.default_rng(11).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "secret.png")
    (folder / "secret.txt").write_text("SECRET-7f3a9 do not serve")
    (folder / "empty.png").write_bytes(b"")
    (folder / "inner").mkdir()
    return folder


@pytest.fixture(autouse=True)
def guard(studio, secret):
    """After each test: the server answers, and nothing in the secret folder was opened."""
    log = OpenLog.shared()
    log.paths.clear()
    log.recording = True
    yield
    log.recording = False
    assert alive(studio)
    assert log.under(secret) == []
