"""The studio's sessions: which files a session may open, and closing a session when Gradio ends it.

Files: the app opens only files that came through Gradio's upload route (demo.upload_file_set,
inside the upload folder) and the repo's examples. A session remembers the upload paths it was
given. Anything else (a forged {"path": ...} dict, another session's output, a symlink, a folder)
is refused with one fixed message that says nothing about the path, before any filesystem call.
Gradio's upload route records no session, so an upload is usable by whoever knows its path; the
path holds a keyed hash of the file's bytes, so knowing it means having the file.
"""
from __future__ import annotations

import threading
import weakref
from pathlib import Path
from typing import Any, Optional

import gradio as gr
from gradio.utils import get_upload_folder, is_in_or_equal

from interp.errors import InputError
from interp.session import Session
from interp.timeline import keyframe_name

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"
REFUSED = ("{label}: this file cannot be used here (only images uploaded in this session "
           "and the examples can be opened): upload the image again.")
PROJECT_REFUSED = ("This project file cannot be used here (only files uploaded in this session "
                   "can be opened): upload it again.")


class Sessions:
    """Live sessions by Gradio session hash (closed when the tab goes), and the file rule."""

    def __init__(self) -> None:
        # weak: a session lives in Gradio's state (which may drop it); this map only finds it
        self.live: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self._lock = threading.Lock()
        self.uploads: Any = frozenset()          # Gradio's set of uploaded paths (bind)

    def bind(self, demo) -> None:
        """After the layout is built: Gradio's set of uploaded paths."""
        self.uploads = demo.upload_file_set

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

    # -- files -----------------------------------------------------------------------------------
    def add_keyframes(self, session: Session, payloads: Any) -> None:
        """Uploaded files (a file widget's raw values) appended as keyframes, all or none."""
        if payloads is None:
            return
        payloads = payloads if isinstance(payloads, list) else [payloads]
        first = len(session.slots)
        pairs = [(self.image_source(session, p, f"Keyframe {keyframe_name(first + n)}"), p)
                 for n, p in enumerate(payloads)]
        pairs = [(s, p) for s, p in pairs if s is not None]
        try:
            session.add_keyframes([s for s, _ in pairs])
        except InputError as exc:
            raise InputError(_with_names(str(exc), pairs)) from None
        session.uploads.update(s for s, _ in pairs if isinstance(s, str))

    def replace_keyframe(self, session: Session, k: int, payload: Any) -> None:
        """A new image for keyframe k (from an upload)."""
        source = self.image_source(session, payload, f"Keyframe {keyframe_name(k)}")
        if source is None:
            return
        try:
            session.set_keyframe(k, source)
        except InputError as exc:
            raise InputError(_with_names(str(exc), [(source, payload)])) from None
        if isinstance(source, str):
            session.uploads.add(source)

    def image_source(self, session: Session, payload: Any, label: str) -> Optional[str]:
        """A path this session may open, or None (no file). Gradio's file widgets refuse paths
        nobody uploaded before this is called; this is the rule of our own, said once."""
        if payload is None:
            return None
        path = payload.get("path") if isinstance(payload, dict) else None
        if isinstance(path, str) and self.may_open(session, path):
            return path
        raise InputError(REFUSED.format(label=label))

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
        return examples and _in_examples(path)


def _with_names(message: str, pairs: list) -> str:
    """A library message with each upload's server path replaced by the file's own name."""
    for source, payload in pairs:
        if isinstance(source, str) and source in message:
            name = payload.get("orig_name") if isinstance(payload, dict) else None
            message = message.replace(source, str(name or Path(source).name))
    return message


def _in_examples(path: str) -> bool:
    """A file of assets/examples (resolved, so '..' and symlinks cannot lead out of it)."""
    return is_in_or_equal(path, EXAMPLES) and Path(path).resolve().is_file()
