"""One user's studio session, as the app drives it: inputs, poses, frame edits, the last render,
its exports and project file (widget values become Settings in interp.forms).

The session runs Interpolator.render in a worker thread and hands its events to the caller as
they arrive (`stream`), so a UI can show frames coarse to fine and cancel between steps.
"""
from __future__ import annotations

import dataclasses
import logging
import queue
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

from interp.errors import Cancelled, InputError
from interp.events import CancelToken, Done, FrameReady
from interp.images import load_image, prepare_pair
from interp.pose.keypoints import Pose, PoseUnavailable, interpolate_pose
from interp.project import Project
from interp.edits import regenerate, select
from interp.settings import Export, FrameEdit, Settings

log = logging.getLogger(__name__)

_END = object()


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
        self.image_a = self.image_b = None       # RGB PIL images as uploaded
        self.pose_a: Optional[Pose] = None        # user-drawn poses (None: detect when needed)
        self.pose_b: Optional[Pose] = None
        self.settings: Optional[Settings] = None  # of the last render
        self.edits: dict = {}
        self.export = Export()
        self.result = None                        # RenderResult of the last complete render
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

    # -- inputs and poses ------------------------------------------------------------------------
    def set_image(self, which: str, source: Any) -> Any:
        """Load and keep input `which` ("a"/"b"); None clears it. InputError explains bad files."""
        image = None if source is None else load_image(source)
        old = getattr(self, _attr("image", which))
        if not _same_image(old, image):
            setattr(self, _attr("pose", which), None)  # a drawn pose belongs to its image
        setattr(self, _attr("image", which), image)
        return image

    def set_pose(self, which: str, pose: Optional[Pose]) -> None:
        setattr(self, _attr("pose", which), pose)

    def prepared(self, settings: Settings) -> tuple:
        """Both inputs at the working size (what the model and the pose canvas see)."""
        if self.image_a is None or self.image_b is None:
            raise InputError("upload both images (Image A and Image B) first")
        return prepare_pair(self.image_a, self.image_b, settings.size, settings.fit)

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
        from interp.plan import ddim_timesteps, make_plan
        a, b = self.prepared(settings)
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
            node = self.plan.nodes[event.index]
            old = self.frames.get(event.index)
            self.frames[event.index] = FrameView(event.index, node.position, node.level,
                                                 tuple(event.images), event.scores, event.chosen,
                                                 event.generated, old.seeds if old else (),
                                                 node.ddim_index)
        elif isinstance(event, Done):
            self.result = event.result
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
        """MP4, GIF, frames ZIP and the project file of the last complete render."""
        from interp.project import save_project
        from interp.video import export_all
        if self.result is None:
            raise InputError("no complete sequence to export: press Interpolate first")
        self.export = export or self.export
        if self._out_root is None:
            self._out_root = Path(tempfile.mkdtemp(prefix="interp-session-"))
        self._runs += 1
        out = self._out_root / f"run-{self._runs:04d}"
        for old in self._out_root.glob("run-*"):
            shutil.rmtree(old, ignore_errors=True)
        paths = export_all(self.result.images, out, self.export, stem="interpolation",
                           formats=("mp4", "gif", "zip"))
        paths["project"] = save_project(self.project(model), out / "interpolation.interp.json")
        return paths

    def project(self, model: Optional[str] = None) -> Project:
        """The session as a Project (inputs, settings, edits, seeds, poses, export)."""
        if self.image_a is None or self.image_b is None or self.settings is None:
            raise InputError("nothing to save yet: upload both images and press Interpolate")
        seeds = {i: v.seeds for i, v in self.frames.items() if v.seeds}
        return Project(self.image_a, self.image_b, self.settings, dict(self.edits), self.export,
                       self.pose_a, self.pose_b, model, seeds)

    def restore(self, project: Project) -> None:
        """Take inputs, settings, edits, poses and export knobs from a project."""
        self.image_a, self.image_b = project.image_a, project.image_b
        self.pose_a, self.pose_b = project.pose_a, project.pose_b
        self.settings, self.edits, self.export = project.settings, dict(project.edits), project.export
        self.result, self.frames, self.plan, self.cancelled = None, {}, None, False

    def close(self) -> None:
        """Cancel any render and delete exported files."""
        self.cancel()
        if self._out_root is not None:
            shutil.rmtree(self._out_root, ignore_errors=True)


def _same_image(a, b) -> bool:
    return (a is not None and b is not None and a.size == b.size and a.mode == b.mode
            and a.tobytes() == b.tobytes())


def _attr(prefix: str, which: str) -> str:
    if which not in ("a", "b"):
        raise ValueError(f"which={which!r} is not allowed: expected 'a' or 'b'")
    return f"{prefix}_{which}"
