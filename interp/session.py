"""One user's studio session: the storyboard (interp.storyboard: keyframes, loop, segments), frame
edits, and the last render, fed by the engine's events (interp.sequence).

Frame edits are kept by the pair of keyframe ids of their segment and the frame's index inside it,
so they survive adding, removing and reordering other keyframes. Rendering runs in a worker
thread; `stream` hands its events to the caller as they come, so a UI shows frames coarse to fine
and can cancel between steps.
"""
from __future__ import annotations

import logging
from typing import Any, Iterator, Optional

from interp import limits
from interp.edits import check_candidate, regenerate, select
from interp.errors import InputError
from interp.events import CancelToken, Done, FrameReady, PlanReady
from interp.exports import ExportFolder
from interp.images import shrink_to
from interp.pose.keypoints import interpolate_pose
from interp.project import Project
from interp.settings import Export, FrameEdit, Settings
from interp.sequence import prepare_keyframes
from interp.storyboard import Slot, Storyboard, pose_or_empty
from interp.streaming import Runner, local_runner
from interp.timeline import Timeline, layout

log = logging.getLogger(__name__)



class Session(Storyboard):
    """The storyboard, frame edits and the last render of one user."""

    def __init__(self) -> None:
        super().__init__()
        self.edits: dict = {}                    # ((id, id), local index) -> FrameEdit
        self.uploads: set = set()                # upload paths this session was given
        self.settings: Optional[Settings] = None  # of the last render
        self.export = Export()
        self.plan = None                         # TimelinePlan of the render shown
        self.frames: dict = {}                   # global index -> FrameResult (also when cancelled)
        self.result = None                       # TimelineResult of the render shown (None: running)
        self.done: Optional[tuple] = None        # (TimelineResult, Project) of the last complete one
        self.cancelled = False
        self.selected: Optional[int] = None      # the frame open in the UI's frame panel
        self.notes: list = []
        self.pacing: Optional[dict] = None       # {"before", "after", "line"} of the last re-pacing
        self._pacing: Optional[tuple] = None
        self._pairs: tuple = ()                  # the (id, id) of each segment of the render shown
        self._timeline: Optional[Timeline] = None  # the Timeline of the render shown
        self._token = CancelToken()
        self._files = ExportFolder()

    def frame_pose(self, frame: int, engine, override: bool = True) -> tuple:
        """(pose, note) of an in-between frame of the render shown: its override, else its
        segment's keyframes' poses (as that render saw them) interpolated at its position."""
        edit = self.edit_of(frame)
        if override and edit is not None and edit.pose is not None:
            return edit.pose, None
        s, _ = self.plan.locate(frame)
        timeline = self._timeline
        images = prepare_keyframes(timeline, self.settings, engine.bundle.native_size)
        (pa, note), (pb, note_b) = (
            pose_or_empty(engine, images[k], self.settings, timeline.keyframes[k].pose)
            for k in timeline.pairs[s])
        return interpolate_pose(pa, pb, self.frame(frame).position), note or note_b

    # -- rendering -------------------------------------------------------------------------------
    def stream(self, engine, settings: Optional[Settings] = None,
               runner: Optional[Runner] = None) -> Iterator[Any]:
        """Start rendering now (runner: interp.streaming; default: a worker thread here);
        iterate the result for its events as they come. cancel() works from this call on; a
        cancel keeps the finished frames."""
        settings = settings or self.settings
        if settings is None:
            raise InputError("nothing rendered yet: press Interpolate first")
        timeline = self.timeline(settings)
        segment_edits = self._segment_edits(timeline, settings)
        self.settings, self.result, self.cancelled, self.pacing = settings, None, False, None
        self._pairs, self._timeline = self._pair_ids(), timeline
        token = self._token = CancelToken()
        events = (runner or local_runner(engine))(timeline, settings, segment_edits,
                                                  self.export.fps, token)
        return self._drain(events, token)

    def _segment_edits(self, timeline: Timeline, settings: Settings) -> list:
        """One {local frame: FrameEdit} per segment; a segment whose frame count changed since
        its edits were made loses them (with a note)."""
        counts = layout(timeline, settings, self.export.fps).counts
        self.notes, out = [], []
        for s, (pair, n) in enumerate(zip(self._pair_ids(), counts)):
            mine = {local: e for (p, local), e in self.edits.items() if p == pair}
            if mine and self.plan is not None and pair in self._pairs and \
                    self.plan.counts[self._pairs.index(pair)] != n:
                self.edits = {k: e for k, e in self.edits.items() if k[0] != pair}
                self.notes.append(f"frame edits of segment {s + 1} were cleared because its "
                                  "number of frames changed")
                mine = {}
            out.append(mine)
        return out

    def respace(self, engine, keep_counts: bool = False, distance=None,
                runner: Optional[Runner] = None) -> Iterator[Any]:
        """Re-render the last complete sequence with frames where adjacent steps look equally
        large across the whole timeline (interp.pacing); keep_counts keeps each segment's count."""
        from interp.metrics import lab_distance
        from interp.pacing import respaced_timeline, timeline_pacing
        if self.done is None:
            raise InputError("nothing to re-pace yet: press Interpolate and let the sequence finish")
        distance = distance or lab_distance
        result = self.done[0]
        before = timeline_pacing(result, distance)
        paced = respaced_timeline(result.timeline, before, keep_counts)
        for pair, segment in zip(self._pairs, paced.segments):
            self.segments[pair] = segment
        events = self.stream(engine, result.settings, runner)
        self._pacing = (before, distance)
        return events

    def _drain(self, events: Iterator[Any], token: CancelToken) -> Iterator[Any]:
        try:
            for event in events:
                self._absorb(event)
                yield event
        finally:
            token.cancel()           # a consumer that stops early stops the render
            close = getattr(events, "close", None)
            if close is not None:
                close()
        self.cancelled = self.result is None   # the render ended without its Done event

    def _absorb(self, event: Any) -> None:
        if isinstance(event, PlanReady):
            self.plan, self.frames = event.plan, {}
        elif isinstance(event, FrameReady):
            self.frames[event.frame.index] = event.frame
        elif isinstance(event, Done):
            self.result = event.result
            self.frames = {f.index: f for f in event.result.frames}
            self.done = (event.result, self._project_of(event.result))
            if self._pacing is not None:
                self._note_pacing(event.result)

    def _note_pacing(self, result) -> None:
        from interp.pacing import describe, timeline_pacing
        before, distance = self._pacing
        self._pacing = None
        after = timeline_pacing(result, distance)
        self.pacing = {"before": before, "after": after, "line": describe(before, after)}

    def cancel(self) -> None:
        """Stop the running render within a denoising step; finished frames stay."""
        self._token.cancel()

    # -- frame operations (take effect on the next stream) ------------------------------------------
    def frame(self, index: int):
        """The FrameResult of a frame of the render shown."""
        if index not in self.frames:
            raise InputError(f"frame {index} is not available: the sequence has frames "
                             f"{sorted(self.frames)}")
        return self.frames[index]

    def edit_of(self, frame: int) -> Optional[FrameEdit]:
        """The edit of an in-between frame of the render shown, or None."""
        return self.edits.get(self._where(frame))

    def pin(self, frame: int, candidate: int) -> None:
        """Use candidate `candidate` of `frame` (its descendants regenerate on the next render)."""
        where = self._where(frame)
        check_candidate(frame, candidate, len(self.frame(frame).images))
        self.edits = select(self.edits, where, candidate)

    def edit_frame(self, frame: int, edit: FrameEdit) -> None:
        """Apply a frame's override form; an unchanged form re-rolls the frame's seed."""
        where = self._where(frame)
        old = self.edits.get(where, FrameEdit()).replace(candidate=None)
        new = edit.replace(candidate=None)
        self.edits = regenerate(self.edits, where) if new == old else {**self.edits, where: new}

    def _where(self, frame: int) -> tuple:
        """((keyframe id, keyframe id), local index) of an in-between frame of the render shown."""
        if self.plan is None:
            raise InputError("nothing rendered yet: press Interpolate first")
        try:
            s, local = self.plan.locate(frame)
        except ValueError as exc:
            raise InputError(f"frame {frame} cannot be edited: {exc}") from None
        return self._pairs[s], local

    # -- reporting and files -----------------------------------------------------------------------
    def status(self) -> str:
        """One line: frames done, how many were regenerated and reused, notes."""
        total = self.plan.total if self.plan is not None else len(self.frames)
        keys = set(self.plan.keyframes) if self.plan is not None else set()
        inner = [f for i, f in self.frames.items() if i not in keys]
        generated = sum(f.generated for f in inner)
        if self.cancelled:
            head = f"cancelled: kept {len(inner)} finished frame(s)"
        elif self.result is None and self.plan is not None:
            head = f"rendering: {len(self.frames)} of {total} frames"
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
        new one runs), in a folder of their own (interp.exports)."""
        if self.done is None:
            raise InputError("no complete sequence to export: press Interpolate first")
        self.export = export or self.export
        result, project = self.done
        return self._files.write(result.images, project, self.export, model)

    def _project_of(self, result) -> Project:
        """A finished render as a Project (export knobs and model are filled in when written)."""
        seeds = {f.index: tuple(f.seeds) for f in result.frames if f.seeds}
        return Project(result.timeline, result.settings, dict(result.edits), self.export, None,
                       seeds)

    def project(self, model: Optional[str] = None) -> Project:
        """The session as it would render now, as a Project."""
        if self.settings is None:
            raise InputError("nothing to save yet: add the images and press Interpolate")
        edits = {}
        if self.plan is not None:
            for (pair, local), edit in self.edits.items():
                if pair in self._pairs:
                    edits[self.plan.global_index(self._pairs.index(pair), local)] = edit
        return Project(self.timeline(self.settings), self.settings, edits, self.export, model)

    def restore(self, project: Project) -> None:
        """Take keyframes, segments, settings, edits and export knobs from a project."""
        keep = limits.current().size
        self.slots = [Slot(shrink_to(k.image, keep), None, k.prompt, k.negative_prompt, k.pose)
                      for k in project.timeline.keyframes]
        b, settings = self.slots[-1], project.settings
        if len(self.slots) == 2 and not project.timeline.loop:   # Prompt B becomes B's own
            b.prompt = settings.prompt_b if b.prompt is None else b.prompt
            b.negative_prompt = (settings.negative_prompt_b if b.negative_prompt is None
                                 else b.negative_prompt)
        self.loop = project.timeline.loop
        pairs = self._pair_ids()
        self.segments = dict(zip(pairs, project.timeline.segments))
        where = layout(project.timeline, project.settings, project.export.fps)
        self.edits = {(pairs[s], local): e for i, e in project.edits.items()
                      for s, local in [where.locate(i)]}
        self.settings, self.export = project.settings, project.export
        self.result, self.frames, self.plan, self.cancelled, self.done = None, {}, None, False, None
        self._pairs = pairs

    def close(self) -> None:
        """Cancel any render and delete exported files (idempotent; the session stays usable)."""
        self.cancel()
        self._files.delete()
