"""Perceptually even pacing of a finished sequence (beyond the paper; IMPUS/DiffMorpher/AID-style).

Measure the adjacent-frame distances of a render, move the frames to the positions that equalise them
(plan.respace: the inverse of the cumulative distance) and express those as a custom schedule curve, so
the next render of the same inputs moves evenly. Shared by `python -m interp respace`, `render
--respace`, the harness and the app's "Even out pacing" button.
"""
from __future__ import annotations

import dataclasses

from typing import Mapping, Optional, Sequence

from interp import metrics
from interp.events import CancelToken, EventCallback, ignore_event
from interp.plan import positions_to_points, respace
from interp.settings import Curve, FrameEdit, Settings


def pacing(positions: Sequence[float], images: Sequence, distance: metrics.Distance = metrics.lab_distance
           ) -> dict:
    """Positions, adjacent distances and their spread (PDV, max/min, smoothness) of one sequence."""
    if len(positions) != len(images):
        raise ValueError(f"positions has {len(positions)} entries but there are {len(images)} images")
    d = metrics.adjacent_distances(images, distance)
    return {"positions": [float(p) for p in positions], "distances": d.tolist(), **metrics.spread(d),
            "smoothness": metrics.smoothness(d)}


def result_pacing(result, distance: metrics.Distance = metrics.lab_distance) -> dict:
    """pacing() of a RenderResult (its frames' positions and chosen images)."""
    return pacing([f.position for f in result.frames], result.images, distance)


def describe(before: dict, after: dict) -> str:
    """One line for people: how uneven the steps were and are (max/min step ratio, PDV)."""
    def ratio(m: dict) -> str:
        r = m["max_min_ratio"]
        return "inf" if r == float("inf") else f"{r:.2f}"
    return (f"pacing: largest/smallest step {ratio(before)} -> {ratio(after)}, "
            f"PDV {before['pdv']:.4f} -> {after['pdv']:.4f}")


def respace_render(engine, timeline, settings: Settings,
                   edits: Optional[Mapping[int, FrameEdit]] = None,
                   distance: metrics.Distance = metrics.lab_distance, *, rounds: int = 1,
                   keep_counts: bool = False, fps: float = 10.0,
                   on_event: EventCallback = ignore_event,
                   cancel: Optional[CancelToken] = None) -> tuple:
    """Render a timeline, measure, move every frame so adjacent steps look equally large across the
    whole sequence (respaced_timeline), render again (frames whose keys did not change are reused);
    `rounds` repeats the last two steps. Edits survive only with keep_counts (frame numbers move).

    Returns (the respaced TimelineResult, report): report has "before" and "after" (timeline_pacing),
    per-round entries, each segment's frames and curve points, and which frames were generated.
    """
    from interp.sequence import render_timeline
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds={rounds!r} is not allowed: expected an integer >= 1")
    run = dict(fps=fps, on_event=on_event, cancel=cancel)
    result = render_timeline(engine, timeline, settings, edits, **run)
    steps = [timeline_pacing(result, distance)]
    for _ in range(rounds):
        timeline = respaced_timeline(timeline, steps[-1], keep_counts)
        result = render_timeline(engine, timeline, settings, edits if keep_counts else None, **run)
        steps.append(timeline_pacing(result, distance))
    report = {"before": steps[0], "after": steps[-1], "rounds": steps[1:],
              "generated": result.generated, "reused": result.reused,
              "segments": [s.to_dict() for s in timeline.segments]}
    return result, report


def format_report(report: dict) -> str:
    """Before/after lines of a respace report (PDV, max/min, each segment's positions)."""
    lines = []
    for name in ("before", "after"):
        step = report[name]
        lines.append(f"{name:>6}: PDV {step['pdv']:.3g}  max/min {step['max_min_ratio']:.3g}  "
                     f"smoothness {step['smoothness']:.3f}")
        for s, seg in enumerate(step["segments"]):
            lines.append(f"        segment {s + 1} positions "
                         + " ".join(f"{p:.3f}" for p in seg["positions"]))
        lines.append("        distances " + " ".join(f"{d:.3f}" for d in step["distances"]))
    lines.append(f"reused frames: {report['reused']}  generated: {report['generated']}")
    return "\n".join(lines)


# -- a whole timeline ------------------------------------------------------------------------------

def timeline_pacing(result, distance: metrics.Distance = metrics.lab_distance) -> dict:
    """pacing() of each segment of a TimelineResult, and of the whole sequence's adjacent distances."""
    segments = [result_pacing(seg, distance) for seg in result.segments]
    d = [x for seg in segments for x in seg["distances"]]
    return {"segments": segments, "distances": d, **metrics.spread(d),
            "smoothness": metrics.smoothness(d)}


def allocate(lengths: Sequence[float], intervals: int, minimum: int = 2) -> list:
    """Frame intervals per segment, `intervals` in all and at least `minimum` each, so that the
    largest step (a segment's perceptual length / its intervals) is as small as it can be: each
    interval goes, one at a time, to the segment whose steps are currently the longest."""
    if intervals < minimum * len(lengths):
        raise ValueError(f"{intervals} frame intervals cannot give {len(lengths)} segments "
                         f"{minimum} each")
    lengths = [max(float(x), 0.0) for x in lengths]
    if not any(lengths):
        lengths = [1.0] * len(lengths)
    counts = [minimum] * len(lengths)
    for _ in range(intervals - minimum * len(lengths)):
        s = max(range(len(counts)), key=lambda k: (lengths[k] / counts[k], -k))
        counts[s] += 1
    return counts


def respaced_timeline(timeline, measured: dict, keep_counts: bool = False):
    """`timeline` with every segment's frames moved where the measured distances even out across
    the whole sequence: frame budget moves to the segments that change most (keep_counts: each
    segment keeps its frame count, its frames only move)."""
    segs = measured["segments"]
    counts = [len(s["positions"]) - 1 for s in segs]
    if not keep_counts:
        counts = allocate([sum(s["distances"]) for s in segs], sum(counts))
    new = []
    for seg, m, n in zip(timeline.segments, segs, counts):
        points = positions_to_points(respace(m["positions"], m["distances"], count=n + 1))
        new.append(dataclasses.replace(seg, frames=n + 1, duration=None, curve=Curve.CUSTOM,
                                       curve_points=points))
    return timeline.replace(segments=tuple(new))
