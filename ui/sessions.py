"""The studio's sessions: which files a session may open, and closing a session when Gradio ends it.

Files: the app opens only files that came through Gradio's upload route (demo.upload_file_set,
inside the upload folder) and the repo's examples. A session remembers the upload paths it was
given. Anything else (a forged {"path": ...} dict, another session's output, a symlink, a folder)
is refused with one fixed message that says nothing about the path, before any filesystem call.
Gradio's upload route records no session, so an upload is usable by whoever knows its path; the
path holds a keyed hash of the file's bytes, so knowing it means having the file.
"""
from __future__ import annotations

import base64
import binascii
import threading
import weakref
from pathlib import Path
from typing import Any, Optional

import gradio as gr
from gradio.utils import get_upload_folder, is_in_or_equal

from interp import limits
from interp.errors import InputError
from interp.session import Session

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"
REFUSED = ("Image {which}: this file cannot be used here (only images uploaded in this session "
           "and the examples can be opened): upload the image again.")
PROJECT_REFUSED = ("This project file cannot be used here (only files uploaded in this session "
                   "can be opened): upload it again.")
KEEP = object()   # the payload shows an image the session already holds: keep that one


class Sessions:
    """Live sessions by Gradio session hash (closed when the tab goes), and the file rule."""

    def __init__(self) -> None:
        # weak: a session lives in Gradio's state (which may drop it); this map only finds it
        self.live: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self._lock = threading.Lock()
        self.uploads: Any = frozenset()          # Gradio's set of uploaded paths (bind)
        self.examples: frozenset = frozenset()   # cached copies of the example images
        self.widgets: dict = {}                  # "a"/"b" -> its image widget

    def bind(self, demo, image_widgets) -> None:
        """After the layout is built: Gradio's upload set, and the example copies gr.Examples
        put in the image widgets' temp files (before anything else can be shown there)."""
        self.uploads = demo.upload_file_set
        self.widgets = dict(zip("ab", image_widgets))
        self.examples = frozenset(p for w in self.widgets.values() for p in w.temp_files)

    # -- life of a session ---------------------------------------------------------------------
    def get(self, session: Optional[Session], request: Any = None) -> Session:
        """The session (a new one if None), registered under the request's session hash."""
        session = session if session is not None else Session()
        key = getattr(request, "session_hash", None)
        if key:
            with self._lock:
                self.live[key] = session
        return session

    def end(self, request: gr.Request) -> None:
        """Gradio ended the session (the tab went away): stop its render, delete its files."""
        with self._lock:
            session = self.live.pop(getattr(request, "session_hash", None), None)
        if session is not None:
            session.close()

    def close_all(self) -> None:
        with self._lock:
            sessions = list(self.live.values())
            self.live.clear()
        for session in sessions:
            session.close()

    # -- files -----------------------------------------------------------------------------------
    def load_image(self, session: Session, which: str, payload: Any) -> None:
        """Keep an image widget's raw value (preprocess=False) as input `which` of the session."""
        source = self.image_source(session, which, payload)
        if source is KEEP or (isinstance(source, str) and source == session.sources.get(which)
                              and getattr(session, f"image_{which}") is not None):
            return
        try:
            session.set_image(which, source)
        except InputError as exc:
            name = payload.get("orig_name") if isinstance(payload, dict) else None
            message = str(exc)
            if isinstance(source, str):
                message = message.replace(source, str(name or Path(source).name))
            raise InputError(f"Image {which.upper()}: {message}") from None
        if isinstance(source, str):
            session.uploads.add(source)

    def image_source(self, session: Session, which: str, payload: Any) -> Any:
        """A path this session may open, bytes of a data: URL, None (no image) or KEEP."""
        if payload is None:
            return None
        if not isinstance(payload, dict):
            raise InputError(REFUSED.format(which=which.upper()))
        path, url = payload.get("path"), payload.get("url")
        if path is None and isinstance(url, str) and url.startswith("data:"):
            return data_url_bytes(url, f"Image {which.upper()}")
        if path is None and url is None:
            return None
        if isinstance(path, str) and self.may_open(session, path):
            return path
        widget = self.widgets.get(which)
        if (isinstance(path, str) and getattr(session, f"image_{which}") is not None
                and widget is not None and path in widget.temp_files):
            return KEEP   # an image the server showed in this widget (a loaded project's input)
        raise InputError(REFUSED.format(which=which.upper()))

    def project_path(self, session: Session, path: Any) -> str:
        """The path of an uploaded project file this session may open."""
        if isinstance(path, str) and self.may_open(session, path, examples=False):
            session.uploads.add(path)
            return path
        raise InputError(PROJECT_REFUSED)

    def may_open(self, session: Session, path: str, examples: bool = True) -> bool:
        """An upload of this session, a file from Gradio's upload route, or an example."""
        if path in session.uploads:
            return True
        if path in self.uploads and is_in_or_equal(path, get_upload_folder()):
            return True
        return examples and (path in self.examples or _in_examples(path))


def _in_examples(path: str) -> bool:
    """A file of assets/examples (resolved, so '..' and symlinks cannot lead out of it)."""
    return is_in_or_equal(path, EXAMPLES) and Path(path).resolve().is_file()


def data_url_bytes(url: str, name: str) -> bytes:
    """The bytes of a base64 data: URL, at most limits.upload_mb; InputError naming the problem."""
    header, comma, data = url.partition(",")
    if not comma:
        raise InputError(f"{name}: the data: URL has no comma; expected "
                         "data:image/png;base64,<base64 data>")
    if not header.endswith(";base64"):
        raise InputError(f"{name}: the data: URL is not base64; expected "
                         "data:image/png;base64,<base64 data>")
    lim = limits.current()
    size = len(data) * 3 // 4
    if size > lim.upload_bytes:
        raise InputError(f"{name}: the data: URL holds about {size / 2**20:.0f} MB, over this "
                         f"server's limit of {lim.upload_mb} MB (set by "
                         f"{limits.env_name('upload_mb')}): use a smaller image")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{name}: the data: URL is not valid base64") from None
