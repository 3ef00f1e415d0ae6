"""Even pacing across a whole timeline: the frame budget goes where the sequence changes most."""
from __future__ import annotations

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from interp.pacing import allocate, respaced_timeline
from interp.settings import Curve


def test_allocate_gives_each_interval_to_the_longest_steps():
    # lengths 1 and 3, 8 intervals: 2 + 6 makes both steps 0.5 (by hand)
    assert allocate([1.0, 3.0], 8) == [2, 6]
    assert allocate([0.0, 0.0, 0.0], 7) == [3, 2, 2]          # nothing measured: as even as can be
    assert allocate([5.0, 0.0], 6) == [4, 2]                  # the minimum holds
    with pytest.raises(ValueError, match="cannot give"):
        allocate([1.0, 1.0], 3)


@hsettings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 10.0), min_size=1, max_size=6), st.integers(0, 40))
def test_allocate_spends_the_budget_and_no_move_shortens_the_longest_step(lengths, extra):
    total = 2 * len(lengths) + extra
    counts = allocate(lengths, total)
    assert sum(counts) == total and min(counts) >= 2
    if any(lengths):
        longest = max(x / c for x, c in zip(lengths, counts))
        for a in range(len(counts)):          # moving one interval from a to b never does better
            for b in range(len(counts)):
                if a != b and counts[a] > 2:
                    moved = list(counts)
                    moved[a] -= 1
                    moved[b] += 1
                    assert max(x / c for x, c in zip(lengths, moved)) >= longest - 1e-12


def test_respaced_timeline_moves_frames_to_the_segment_that_changes_most():
    from PIL import Image
    from interp.timeline import Keyframe, Segment, Timeline
    blank = Image.new("RGB", (8, 8))
    timeline = Timeline([Keyframe(blank)] * 3, (Segment(frames=5), Segment(frames=5, seed=4)))
    measured = {"segments": [{"positions": [0, .25, .5, .75, 1], "distances": [.1, .1, .1, .1]},
                             {"positions": [0, .25, .5, .75, 1], "distances": [.3, .3, .3, .3]}]}
    paced = respaced_timeline(timeline, measured)
    # lengths 0.4 and 1.2, 8 intervals -> 2 and 6 (steps of 0.2 each)
    assert [s.frames for s in paced.segments] == [3, 7] and paced.segments[1].seed == 4
    assert all(s.curve == Curve.CUSTOM for s in paced.segments)
    kept = respaced_timeline(timeline, measured, keep_counts=True)
    assert [s.frames for s in kept.segments] == [5, 5]


@pytest.mark.slow
def test_whole_timeline_pacing_evens_out_toy_timelines_of_three_and_four_shapes():
    """On held-out toy timelines the adjacent distances spread less after re-pacing, whether the
    frame budget moves between segments or every segment keeps its count (the README's table:
    python benchmarks/timeline_pacing.py)."""
    from interp.metrics import lab_distance
    from interp.models.load import load_bundle
    from interp.pacing import respace_render
    from interp.render import Interpolator
    from interp.settings import Settings
    from interp.store import FrameStore
    from interp.timeline import Keyframe, Timeline
    from interp.toy import data
    engine = Interpolator(load_bundle("toy"), FrameStore(None))
    settings = Settings(frames=9, num_inference_steps=30, size=64, eta=0.0, guidance_scale=3.0,
                        candidates=1)
    for length in (3, 4):
        chain = data.held_out_chains(1, length, seed=0)[0]
        timeline = Timeline(tuple(Keyframe(data.draw(s), prompt=data.caption(s)) for s in chain))
        for keep in (False, True):
            result, report = respace_render(engine, timeline, settings, {}, lab_distance,
                                            keep_counts=keep)
            assert report["after"]["pdv"] < report["before"]["pdv"], (length, keep)
            counts = [len(s.frames) for s in result.segments]
            assert sum(counts) == 9 * (length - 1)               # the frame budget is kept
            if keep:
                assert counts == [9] * (length - 1)
