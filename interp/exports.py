"""A studio session's files: each export of a finished sequence in a folder of its own (MP4, GIF,
frames ZIP, project file), one export at a time per session, the last two kept; the session's
folder is deleted when it closes, and folders of processes that died are removed at start-up."""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

from interp.project import Project, save_project
from interp.settings import Export
from interp.video import export_all, pid_alive

SESSION_PREFIX = "interp-session-"      # + "<pid>-<random>": one folder per session
KEEP_EXPORTS = 2                        # the last complete export and the one before it


class ExportFolder:
    """One session's export folder (made on first use)."""

    def __init__(self) -> None:
        self._root: Optional[Path] = None
        self._runs = 0
        self._lock = threading.Lock()   # one export of this session at a time

    def write(self, images: list, project: Project, export: Export,
              model: Optional[str] = None) -> dict:
        """MP4, GIF, frames ZIP and the project file of a finished sequence, in a new folder;
        older folders beyond the last KEEP_EXPORTS are removed."""
        with self._lock:
            self._runs += 1
            out = self._folder() / f"run-{self._runs:04d}"
            paths = export_all(images, out, export, stem="interpolation",
                               formats=("mp4", "gif", "zip"))
            project = dataclasses.replace(project, export=export, model=model)
            paths["project"] = save_project(project, out / "interpolation.interp.json")
            for old in sorted(self._folder().glob("run-*"))[:-KEEP_EXPORTS]:
                shutil.rmtree(old, ignore_errors=True)
            return paths

    def _folder(self) -> Path:
        if self._root is None or not self._root.is_dir():
            self._root = Path(tempfile.mkdtemp(prefix=f"{SESSION_PREFIX}{os.getpid()}-"))
        return self._root

    def delete(self) -> None:
        """Remove the folder (idempotent; a later export makes a new one)."""
        with self._lock:
            if self._root is not None:
                shutil.rmtree(self._root, ignore_errors=True)
                self._root = None


def remove_session_dirs(root: Optional[Path] = None, own: bool = False,
                        legacy_age_s: float = 3600.0) -> int:
    """Delete session folders of processes that no longer run (with own=True, this process's too)
    under root (default: the temp dir); folders named without a process id are deleted when
    older than legacy_age_s. Returns how many were deleted."""
    root = Path(root or tempfile.gettempdir())
    named = re.compile(re.escape(SESSION_PREFIX) + r"(\d+)-\w+")
    removed = 0
    for entry in root.glob(SESSION_PREFIX + "*"):
        match = named.fullmatch(entry.name)
        if match:
            pid = int(match.group(1))
            stale = (own and pid == os.getpid()) or (pid != os.getpid() and not pid_alive(pid))
        else:
            stale = time.time() - _mtime(entry) > legacy_age_s
        if stale and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except FileNotFoundError:   # removed meanwhile (another process cleaning up)
        return time.time()
