"""Keyframe timelines on the tiny model: frame counts, work done once, edits local to segments,
loops without a repeated seam frame, and two keyframes exactly the two-image render."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from interp.edits import regenerate
from interp.events import FrameReady, FrameStarted
from interp.models.load import load_bundle
from interp.render import Interpolator
from interp.sequence import render_timeline
from interp.settings import Curve, Settings
from interp.store import FrameStore
from interp.timeline import Keyframe, Segment, Timeline, segment_settings, two_image

EXAMPLES = "assets/examples/"
FAST = Settings(frames=5, num_inference_steps=6, size=64, candidates=2, prompt="a photo")


@pytest.fixture(scope="module")
def bundle():
    return load_bundle("tiny")


@pytest.fixture(scope="module")
def photos():
    from pathlib import Path
    root = Path(__file__).resolve().parents[1] / "assets" / "examples"
    return [Image.open(root / n).convert("RGB")
            for n in ("astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg")]


def _same(x, y) -> bool:
    return np.array_equal(np.asarray(x), np.asarray(y))


def test_two_keyframes_are_the_two_image_render_byte_for_byte(bundle, photos):
    settings = FAST.replace(prompt_b="a cat", seed=4)
    plain = Interpolator(bundle, FrameStore()).render(photos[0], photos[1], settings)
    engine = Interpolator(bundle, FrameStore())
    timeline = two_image(photos[0], photos[1], settings)
    assert segment_settings(timeline, settings, 0) is settings      # the very same Settings
    result = render_timeline(engine, timeline, settings)
    assert [f.key for f in result.frames] == [f.key for f in plain.frames]
    assert all(_same(x, y) for x, y in zip(result.images, plain.images))
    again = Interpolator(bundle, engine.store).render(photos[0], photos[1], settings)
    assert again.generated == []                                    # the same cache entries


def test_three_keyframes_make_each_frame_once_with_the_minimum_model_calls(bundle, photos):
    events = []
    timeline = Timeline([Keyframe(p) for p in photos[:3]], (Segment(frames=5), Segment(frames=7)))
    result = render_timeline(Interpolator(bundle, FrameStore()), timeline, FAST,
                             on_event=events.append)
    assert len(result.frames) == 5 + 7 - 1 and result.plan.keyframes == (0, 4, 10)
    ready = [e.index for e in events if isinstance(e, FrameReady)]
    assert sorted(ready) == list(range(11)) and len(ready) == 11     # every frame once
    assert [e.index for e in events if isinstance(e, FrameStarted)][:2] == [2, 7]  # middles first
    assert result.counts["rows"]["vae_encode"] == 3                  # each keyframe encoded once
    # By hand (S = 6, noise 0.30 / 0.55 -> DDIM indices int(1.8) = 1 .. int(3.3) = 3):
    # segment 1 (5 frames): levels at 3, 1 -> 4 + 2 + 2 steps; segment 2 (7 frames): levels at
    # 3, 2, 1 -> 4 + 2 x 3 + 2 x 2 steps; 2 candidates x 2 (CFG) rows per step.
    assert result.counts["rows"]["unet"] == ((4 + 2 + 2) + (4 + 6 + 4)) * 2 * 2
    assert result.expected_counts["unet_rows"] == result.counts["rows"]["unet"]
    assert [f.segment for f in result.frames] == [0] * 5 + [1] * 6
    assert [f.summary()["local"] for f in result.frames[4:]] == [4, 1, 2, 3, 4, 5, 6]


def test_changing_keyframe_c_regenerates_exactly_the_segments_touching_it(bundle, photos):
    engine = Interpolator(bundle, FrameStore())
    timeline = Timeline([Keyframe(p) for p in photos])              # A B C D: segments AB BC CD
    first = render_timeline(engine, timeline, FAST)
    keys = list(timeline.keyframes)
    keys[2] = Keyframe(photos[2], prompt="a cup of coffee")
    second = render_timeline(engine, timeline.replace(keyframes=tuple(keys)), FAST)
    assert second.generated == [5, 6, 7, 9, 10, 11]                  # BC and CD, not AB
    assert all(_same(first.images[i], second.images[i]) for i in range(5))
    third = render_timeline(engine, timeline.replace(
        keyframes=tuple(keys), segments=(Segment(), Segment(seed=9), Segment())), FAST)
    assert third.generated == [5, 6, 7]                              # only BC's settings changed


def test_edits_are_global_frame_numbers_and_keep_the_subtree_rule(bundle, photos):
    engine = Interpolator(bundle, FrameStore())
    timeline = Timeline([Keyframe(p) for p in photos[:3]], (Segment(frames=9), Segment(frames=5)))
    render_timeline(engine, timeline, FAST)
    redo = render_timeline(engine, timeline, FAST, regenerate({}, 10, seed=3))
    # frame 10 is frame 2 of segment 2 (9 frames: 2 = quarter, children 1 and 3)
    assert redo.generated == [9, 10, 11]
    with pytest.raises(ValueError, match="keyframe"):
        render_timeline(engine, timeline, FAST, regenerate({}, 8, seed=3))


def test_a_loop_returns_to_the_first_keyframe_without_repeating_it(bundle, photos):
    timeline = Timeline([Keyframe(p) for p in photos[:3]], loop=True)
    result = render_timeline(Interpolator(bundle, FrameStore()), timeline, FAST)
    assert len(result.frames) == 3 * 5 - 3 and result.plan.keyframes == (0, 4, 8)
    assert result.frames[-1].segment == 2 and result.frames[-1].level > 0   # not keyframe A again
    assert [f.index for f in result.frames] == list(range(12))


def test_segment_overrides_and_durations(photos):
    timeline = Timeline([Keyframe(p) for p in photos[:3]],
                        (Segment(duration=1.2, curve=Curve.EASE_IN), Segment()))
    first = segment_settings(timeline, FAST, 0, fps=10)
    assert (first.frames, first.curve) == (13, Curve.EASE_IN)        # 1.2 s x 10 fps + 1
    assert segment_settings(timeline, FAST, 1, fps=10) is FAST
    with pytest.raises(ValueError, match="frames or duration"):
        Segment(frames=5, duration=1.0)
    with pytest.raises(ValueError, match="2 segment"):
        Timeline([Keyframe(p) for p in photos[:3]], (Segment(),) * 2, loop=True)
