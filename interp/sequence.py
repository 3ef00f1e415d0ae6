"""Rendering a keyframe timeline: every segment is a two-image render of the engine (its own plan,
keys and cache), prepared once, and their frames are made level by level across all segments, so
the middle frame of every segment shows first. Keyframe latents, poses and pre-passes are cached by
content, so a keyframe shared by two segments is encoded and detected once.

Frame numbers here are global (0 .. total - 1 across the whole timeline); each frame also carries
its segment and its index inside the segment. Edits are keyed by global frame number.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

from interp.events import (CancelToken, DenoiseStep, Done, EventCallback, FrameReady, FrameStarted,
                           PlanReady, ignore_event)
from interp.images import prepare_images
from interp.plan import make_plan
from interp.results import FrameSequence
from interp.scheduler import by_index
from interp.settings import FrameEdit, Settings
from interp.timeline import Layout, Timeline, segment_settings


@dataclass(frozen=True)
class TimelinePlan(Layout):
    """Every segment's plan, and where its frames sit in the whole sequence (Layout)."""
    plans: tuple = ()                 # Plan per segment


@dataclass(frozen=True)
class TimelineResult(FrameSequence):
    """The whole sequence (frames with global numbers), each segment's RenderResult, and counts."""
    timeline: Timeline
    settings: Settings
    plan: TimelinePlan
    segments: tuple                   # RenderResult per segment (local frame numbers)
    frames: tuple                     # FrameResult per global frame
    edits: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    expected_counts: dict = field(default_factory=dict)
    warnings: tuple = ()
    inversion_steps: int = 0

    def summary(self) -> dict:
        return {
            "settings": self.settings.to_dict(), "loop": self.timeline.loop,
            "segments": [{"keyframes": list(pair), "first_frame": off,
                          "frames": len(r.frames), "settings": r.settings.to_dict()}
                         for pair, off, r in zip(self.timeline.pairs, self.plan.offsets, self.segments)],
            "edits": {str(i): e.to_dict() for i, e in sorted(self.edits.items())},
            "frames": [f.summary() for f in self.frames],
            "generated": self.generated, "reused": self.reused,
            "model_calls": self.counts, "analytic_minimum": self.expected_counts,
            "inversion_steps": self.inversion_steps, "warnings": list(self.warnings),
        }


def prepare_keyframes(timeline: Timeline, settings: Settings, native: int) -> list:
    """Every keyframe on one canvas: the size from keyframe 0's aspect ratio, each fitted to it."""
    return prepare_images([k.image for k in timeline.keyframes], settings, native)


def plan_timeline(engine, timeline: Timeline, settings: Settings, fps: float = 10.0) -> tuple:
    """(each segment's Settings, the TimelinePlan) on the engine's DDIM schedule (no model call)."""
    seg_settings = [segment_settings(timeline, settings, s, fps) for s in range(len(timeline.pairs))]
    plans = tuple(make_plan(s, by_index(engine.bundle.make_scheduler(s.num_inference_steps)).tolist())
                  for s in seg_settings)
    return seg_settings, TimelinePlan(tuple(s.frames for s in seg_settings), timeline.loop, plans)


def split_edits(edits: Mapping[int, FrameEdit], plan: TimelinePlan) -> list:
    """Global {frame: FrameEdit} -> one {local frame: FrameEdit} per segment."""
    out = [{} for _ in plan.plans]
    for index, edit in edits.items():
        if not isinstance(edit, FrameEdit):
            raise TypeError(f"edits[{index!r}] must be a FrameEdit, got {type(edit).__name__}")
        s, local = plan.locate(index)
        out[s][local] = edit
    return out


def render_timeline(engine, timeline: Timeline, settings: Settings,
                    edits: Optional[Mapping[int, FrameEdit]] = None, *, fps: float = 10.0,
                    segment_edits: Optional[Sequence[Mapping]] = None,
                    on_event: EventCallback = ignore_event,
                    cancel: Optional[CancelToken] = None) -> TimelineResult:
    """Generate (or reuse) every frame of the timeline, coarse to fine across all segments.
    Edits: {global frame: FrameEdit}, or segment_edits: one {local frame: FrameEdit} per segment."""
    start = engine.bundle.counter.snapshot()
    # 1. One canvas for every keyframe; each segment's Settings and plan; the whole plan first.
    images = prepare_keyframes(timeline, settings, engine.bundle.native_size)
    seg_settings, plan = plan_timeline(engine, timeline, settings, fps)
    if segment_edits is not None:
        local_edits = [dict(e) for e in segment_edits]
        edits = {plan.global_index(s, i): e for s, m in enumerate(local_edits) for i, e in m.items()}
    else:
        local_edits = split_edits(edits or {}, plan)
    on_event(PlanReady(plan, settings, tuple(images)))
    # 2. Prepare every segment (latents, conditions, poses), its events in global numbers.
    jobs = []
    for s, ((i, j), seg) in enumerate(zip(timeline.pairs, seg_settings)):
        keys = timeline.keyframes
        jobs.append(engine.prepare(images[i], images[j], seg, local_edits[s], pose_a=keys[i].pose,
                                   pose_b=keys[j].pose, plan=plan.plans[s],
                                   on_event=_relay(on_event, plan, s), cancel=cancel))
    # 3. Frames level by level across segments (every segment's middle frame first).
    steps = sorted((job.ctx.plan.nodes[i].level, s, i) for s, job in enumerate(jobs)
                   for i in job.order)
    for _, s, i in steps:
        jobs[s].make(i)
    result = _result(timeline, settings, plan, jobs, dict(edits or {}),
                     engine.bundle.counter.since(start))
    on_event(Done(result))
    return result


def _relay(on_event: EventCallback, plan: TimelinePlan, s: int) -> EventCallback:
    """A segment's events with global frame numbers; its own PlanReady and the keyframes it shares
    with the previous segment (or, in a loop, with the first) are not passed on."""
    def relay(event) -> None:
        if isinstance(event, PlanReady):
            return
        if isinstance(event, FrameReady):
            local = event.frame.index
            g = plan.global_index(s, local)
            if local == 0 and s > 0 or g == 0 and local > 0:
                return
            on_event(FrameReady(_globalise(event.frame, plan, s)))
        elif isinstance(event, (FrameStarted, DenoiseStep)):
            on_event(dataclasses.replace(event, index=plan.global_index(s, event.index)))
        else:
            on_event(event)
    return relay


def _globalise(frame, plan: TimelinePlan, s: int):
    """A segment's FrameResult renumbered for the whole sequence (its parents too)."""
    parents = None if frame.parents is None else tuple(plan.global_index(s, p) for p in frame.parents)
    return dataclasses.replace(frame, index=plan.global_index(s, frame.index), segment=s,
                               local=frame.index, parents=parents)


def _result(timeline, settings, plan, jobs, edits, counts) -> TimelineResult:
    segments = tuple(job.result({}) for job in jobs)
    frames = {}
    for s, seg in enumerate(segments):
        for f in seg.frames:
            frames.setdefault(plan.global_index(s, f.index), _globalise(f, plan, s))
    expected = {name: sum(r.expected_counts.get(name, 0) for r in segments)
                for name in segments[0].expected_counts}
    return TimelineResult(
        timeline=timeline, settings=settings, plan=plan, segments=segments,
        frames=tuple(frames[g] for g in range(plan.total)), edits=edits, counts=counts,
        expected_counts=expected, warnings=tuple(w for r in segments for w in r.warnings),
        inversion_steps=sum(r.inversion_steps for r in segments))
