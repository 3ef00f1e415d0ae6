"""One user's studio session, as the app drives it: inputs, poses, frame edits, the last render,
its exports and project file (widget values become Settings in interp.forms).

The session runs Interpolator.render in a worker thread and hands its events to the caller as
they arrive (`stream`), so a UI can show frames coarse to fine and cancel between steps.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import queue
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

from interp import limits
from interp.errors import Cancelled, InputError
from interp.events import CancelToken, Done, FrameReady
from interp.images import load_image, prepare_pair, shrink_to
from interp.pose.keypoints import Pose, PoseUnavailable, interpolate_pose
from interp.project import Project
from interp.edits import regenerate, select
from interp.video import pid_alive
from interp.settings import Export, FrameEdit, Settings

log = logging.getLogger(__name__)

_END = object()
SESSION_PREFIX = "interp-session-"      # + "<pid>-<random>": one folder per session
KEEP_EXPORTS = 2                        # the last complete export and the one before it


# -- frames as the UI sees them ----------------------------------------------------------------

@dataclass(frozen=True)
class FrameView:
    """A finished frame: candidates, scores, the chosen one, and where it sits in the plan."""
    index: int
    position: float
    level: int
    images: tuple
    scores: Optional[tuple] = None
    chosen: int = 0
    generated: bool = False
    seeds: tuple = ()
    ddim_index: Optional[int] = None

    @property
    def image(self):
        return self.images[self.chosen]


class Session:
    """Inputs, poses, edits and the last render of one user; frame operations re-render the last run."""

    def __init__(self) -> None:
        self.image_a = self.image_b = None       # RGB PIL images, no larger than any size needs
        self.sources: dict = {"a": None, "b": None}   # the upload path each image came from
        self.uploads: set = set()                # upload paths this session was given
        self.pose_a: Optional[Pose] = None        # user-drawn poses (None: detect when needed)
        self.pose_b: Optional[Pose] = None
        self.settings: Optional[Settings] = None  # of the last render
        self.edits: dict = {}
        self.export = Export()
        self.result = None                        # RenderResult of the render shown (None: running)
        self.done: Optional[tuple] = None         # (RenderResult, Project) of the last complete one
        self._inputs: tuple = ()                  # images and poses the running render uses
        self.frames: dict = {}                    # index -> FrameView (also of a cancelled run)
        self.plan = None
        self.cancelled = False
        self.selected: Optional[int] = None      # the frame open in the UI's frame panel
        self.notes: list = []
        self.pacing: Optional[dict] = None        # {"before", "after"} of the last even-pacing run
        self._pacing: Optional[tuple] = None      # (before, distance) while one runs
        self._token = CancelToken()
        self._out_root: Optional[Path] = None
        self._runs = 0
        self._exporting = threading.Lock()      # one export of this session at a time

    # -- inputs and poses ------------------------------------------------------------------------
    def set_image(self, which: str, source: Any) -> Any:
        """Load and keep input `which` ("a"/"b"); None clears it. InputError explains bad files.
        The image is kept no larger than the largest working size needs (limits.size)."""
        image = None if source is None else load_image(source, keep=limits.current().size)
        self.sources[which] = source if isinstance(source, str) else None
        old = getattr(self, _attr("image", which))
        if not _same_image(old, image):
            setattr(self, _attr("pose", which), None)  # a drawn pose belongs to its image
        setattr(self, _attr("image", which), image)
        return image

    def set_pose(self, which: str, pose: Optional[Pose]) -> None:
        setattr(self, _attr("pose", which), pose)

    def prepared(self, settings: Settings, native: int = 512) -> tuple:
        """Both inputs at the working size (what the model and the pose canvas see)."""
        if self.image_a is None or self.image_b is None:
            raise InputError("upload both images (Image A and Image B) first")
        return prepare_pair(self.image_a, self.image_b, settings, native)

    def endpoint_pose(self, which: str, settings: Settings, store) -> tuple:
        """(pose, note): the user's pose, else the detected one (cached), else an empty pose."""
        image = self.prepared(settings)[0 if which == "a" else 1]
        given = getattr(self, _attr("pose", which))
        if given is not None:
            return given.rescaled(*image.size), None
        from interp.pose.detect import detect_pose_cached
        try:
            return detect_pose_cached(image, store, settings.pose_all_people), None
        except PoseUnavailable as exc:
            return Pose.empty(*image.size), str(exc)

    def frame_pose(self, frame: int, settings: Settings, store, override: bool = True) -> tuple:
        """(pose, note) of an in-between frame: its override, else A's and B's interpolated."""
        edit = self.edits.get(frame)
        if override and edit is not None and edit.pose is not None:
            return Pose.from_json(edit.pose), None
        view = self.frame(frame)
        pa, note = self.endpoint_pose("a", settings, store)
        pb, note_b = self.endpoint_pose("b", settings, store)
        return interpolate_pose(pa, pb, view.position), note or note_b

    # -- rendering -------------------------------------------------------------------------------
    def stream(self, engine, settings: Optional[Settings] = None,
               edits: Optional[Mapping[int, FrameEdit]] = None) -> Iterator[Any]:
        """Start rendering in a worker thread now; iterate the result for its events as they
        come. cancel() works from this call on; a cancel keeps the finished frames."""
        settings = settings or self.settings
        if settings is None:
            raise InputError("nothing rendered yet: press Interpolate first")
        self._begin(engine, settings, edits)
        self.pacing = self._pacing = None
        token = self._token = CancelToken()
        events: queue.Queue = queue.Queue()
        worker = threading.Thread(target=self._work, args=(engine, settings, token, events),
                                  daemon=True, name="interp-render")
        worker.start()
        return self._drain(worker, token, events)

    def respace(self, engine, distance=None) -> Iterator[Any]:
        """Re-render the last complete sequence with perceptually even pacing (interp.pacing): its
        adjacent distances give a custom curve; stream() that. The finished run adds a note saying how
        uneven the steps were before and after to status() and self.pacing."""
        from interp.metrics import lab_distance
        from interp.pacing import respaced_settings, result_pacing
        if self.result is None:
            raise InputError("nothing to re-pace yet: press Interpolate and let the sequence finish")
        distance = distance or lab_distance
        before = result_pacing(self.result, distance)
        events = self.stream(engine, respaced_settings(self.settings, before))
        self._pacing = (before, distance)
        return events

    def _drain(self, worker: threading.Thread, token: CancelToken,
               events: queue.Queue) -> Iterator[Any]:
        try:
            while (item := events.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                self._absorb(item)
                yield item
        finally:
            token.cancel()  # a consumer that stops early (closed generator) stops the render
            worker.join()

    def _begin(self, engine, settings: Settings, edits: Optional[Mapping]) -> None:
        from interp.plan import make_plan
        from interp.scheduler import ddim_timesteps
        a, b = self.prepared(settings, engine.bundle.native_size)
        self.notes = []
        if edits is not None:
            self.edits = dict(edits)
        elif self.settings is not None and self.settings.frames != settings.frames and self.edits:
            self.edits = {}
            self.notes.append("frame edits were cleared because the number of frames changed")
        self.plan = make_plan(settings, ddim_timesteps(settings.num_inference_steps,
                                                       engine.bundle.scheduler_config).tolist())
        last = len(self.plan.nodes) - 1
        self.settings, self.result, self.cancelled = settings, None, False
        self._inputs = (self.image_a, self.image_b, self.pose_a, self.pose_b)
        self.frames = {0: FrameView(0, 0.0, 0, (a,)), last: FrameView(last, 1.0, 0, (b,))}

    def _work(self, engine, settings: Settings, token: CancelToken, events: queue.Queue) -> None:
        try:
            engine.render(self.image_a, self.image_b, settings, self.edits, pose_a=self.pose_a,
                          pose_b=self.pose_b, on_event=events.put, cancel=token)
        except Cancelled:
            self.cancelled = True
        except BaseException as exc:  # handed to the consumer's thread and raised there
            events.put(exc)
        finally:
            events.put(_END)

    def _absorb(self, event: Any) -> None:
        if isinstance(event, FrameReady):
            f = event.frame
            self.frames[f.index] = FrameView(f.index, f.position, f.level, tuple(f.images),
                                             f.scores, f.chosen, f.generated, tuple(f.seeds),
                                             f.ddim_index)
        elif isinstance(event, Done):
            self.result = event.result
            self.done = (event.result, self._project_of(event.result))
            if self._pacing is not None:
                self._note_pacing(event.result)
            self.frames = {f.index: FrameView(f.index, f.position, f.level, tuple(f.images),
                                              f.scores, f.chosen, f.generated, tuple(f.seeds),
                                              f.ddim_index) for f in event.result.frames}

    def _note_pacing(self, result) -> None:
        from interp.pacing import describe, result_pacing
        before, distance = self._pacing
        self._pacing = None
        after = result_pacing(result, distance)
        self.pacing = {"before": before, "after": after, "line": describe(before, after)}

    def cancel(self) -> None:
        """Stop the running render within a denoising step; finished frames stay."""
        self._token.cancel()

    # -- frame operations (take effect on the next stream) ------------------------------------------
    def frame(self, index: int) -> FrameView:
        if index not in self.frames:
            raise InputError(f"frame {index} is not available: the sequence has frames "
                             f"{sorted(self.frames)}")
        return self.frames[index]

    def pin(self, frame: int, candidate: int) -> None:
        """Use candidate `candidate` of `frame` (its descendants regenerate on the next render)."""
        self._check_inbetween(frame)
        count = len(self.frame(frame).images)
        if not 0 <= candidate < count:
            raise InputError(f"frame {frame} has candidates 0..{count - 1}, not {candidate}")
        self.edits = select(self.edits, frame, candidate)

    def edit_frame(self, frame: int, edit: FrameEdit) -> None:
        """Apply a frame's override form; an unchanged form re-rolls the frame's seed."""
        self._check_inbetween(frame)
        old = dataclasses.replace(self.edits.get(frame, FrameEdit()), candidate=None)
        new = dataclasses.replace(edit, candidate=None)
        self.edits = regenerate(self.edits, frame) if new == old else {**self.edits, frame: new}

    def _check_inbetween(self, frame: int) -> None:
        if self.settings is None:
            raise InputError("nothing rendered yet: press Interpolate first")
        if not 0 < frame < self.settings.frames - 1:
            raise InputError(f"frame {frame} cannot be edited: in-between frames are "
                             f"1..{self.settings.frames - 2} (0 and the last are the inputs)")

    # -- reporting and files -----------------------------------------------------------------------
    def status(self) -> str:
        """One line: frames done, how many were regenerated and reused, notes."""
        last = len(self.plan.nodes) - 1 if self.plan is not None else max(self.frames, default=0)
        inner = [v for i, v in self.frames.items() if 0 < i < last]
        generated = sum(v.generated for v in inner)
        if self.cancelled:
            head = f"cancelled: kept {len(inner)} finished frame(s)"
        elif self.result is None and self.plan is not None:
            head = f"rendering: {len(self.frames)} of {last + 1} frames"
        else:
            head = f"{len(self.frames)} frames"
        parts = [head, f"regenerated {generated}, reused {len(inner) - generated}", *self.notes]
        if self.result is not None:
            parts += list(self.result.warnings)
        if self.pacing is not None:
            parts.append(self.pacing["line"])
        return " · ".join(parts)

    def write_exports(self, export: Optional[Export] = None, model: Optional[str] = None) -> dict:
        """MP4, GIF, frames ZIP and the project file of the last complete render (also while a
        new one runs), in a folder of their own. A session's exports run one at a time; each
        keeps the last KEEP_EXPORTS folders (a file just returned may still be on its way to the
        browser)."""
        from interp.project import save_project
        from interp.video import export_all
        with self._exporting:
            if self.done is None:
                raise InputError("no complete sequence to export: press Interpolate first")
            result, project = self.done
            self.export = export or self.export
            self._runs += 1
            out = self._folder() / f"run-{self._runs:04d}"
            paths = export_all(result.images, out, self.export, stem="interpolation",
                               formats=("mp4", "gif", "zip"))
            project = dataclasses.replace(project, export=self.export, model=model)
            paths["project"] = save_project(project, out / "interpolation.interp.json")
            for old in sorted(self._folder().glob("run-*"))[:-KEEP_EXPORTS]:
                shutil.rmtree(old, ignore_errors=True)
            return paths

    def _folder(self) -> Path:
        if self._out_root is None or not self._out_root.is_dir():
            self._out_root = Path(tempfile.mkdtemp(prefix=f"{SESSION_PREFIX}{os.getpid()}-"))
        return self._out_root

    def _project_of(self, result) -> Project:
        """A finished render as a Project: the inputs and poses it used, its settings, edits and
        seeds (the export knobs and model are filled in when it is written)."""
        image_a, image_b, pose_a, pose_b = self._inputs
        seeds = {f.index: tuple(f.seeds) for f in result.frames if f.seeds}
        return Project(image_a, image_b, result.settings, dict(result.edits), self.export,
                       pose_a, pose_b, None, seeds)

    def restore(self, project: Project) -> None:
        """Take inputs, settings, edits, poses and export knobs from a project."""
        keep = limits.current().size
        self.image_a, self.image_b = shrink_to(project.image_a, keep), shrink_to(project.image_b, keep)
        self.sources = {"a": None, "b": None}
        self.pose_a, self.pose_b = project.pose_a, project.pose_b
        self.settings, self.edits, self.export = project.settings, dict(project.edits), project.export
        self.result, self.frames, self.plan, self.cancelled = None, {}, None, False
        self.done = None

    def close(self) -> None:
        """Cancel any render and delete exported files (idempotent; the session stays usable)."""
        self.cancel()
        with self._exporting:
            if self._out_root is not None:
                shutil.rmtree(self._out_root, ignore_errors=True)
                self._out_root = None


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


def _same_image(a, b) -> bool:
    return (a is not None and b is not None and a.size == b.size and a.mode == b.mode
            and a.tobytes() == b.tobytes())


def _attr(prefix: str, which: str) -> str:
    if which not in ("a", "b"):
        raise ValueError(f"which={which!r} is not allowed: expected 'a' or 'b'")
    return f"{prefix}_{which}"
