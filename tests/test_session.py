"""The studio session of the library (interp.session, interp.storyboard) on the tiny model: the
pose editor sees the pose the render uses, a reordered row keeps each segment's overrides and
frame edits with their keyframes, edits of a segment whose length changed are dropped with a note,
and a project restores the row."""
import pytest

from interp.models.load import load_bundle
from interp.pose.keypoints import Pose
from interp.render import Interpolator
from interp.session import Session
from interp.settings import FrameEdit, Settings
from interp.store import FrameStore
from interp.timeline import Segment

EXAMPLES = "assets/examples/"
FAST = Settings(frames=5, num_inference_steps=6, size=64, candidates=1, prompt="a photo")


@pytest.fixture(scope="module")
def engine():
    return Interpolator(load_bundle("tiny-sd15"), FrameStore())


def session_of(*names) -> Session:
    session = Session()
    session.add_keyframes([EXAMPLES + n for n in names])
    return session


def render(session, engine, settings=FAST):
    for _ in session.stream(engine, settings):
        pass
    return session.result


def test_the_editor_shows_the_pose_the_render_uses(engine, monkeypatch):
    """Nobody is found on the photos themselves, someone on their photo-style pre-pass: the
    editor must show that pose (the render's own rule), not the empty detection."""
    from interp.pose import control, detect
    session = session_of("astronaut.jpg", "chelsea.jpg")
    settings = FAST.replace(pose=True)
    originals = {im.tobytes() for im in session.prepared(settings, engine.bundle.native_size)}
    found = Pose.from_json({"canvas_width": 64, "canvas_height": 64,
                            "people": [{"pose_keypoints_2d": [30, 20, 1] * 18}]})
    monkeypatch.setattr(detect, "detect_pose", lambda image, all_people=False, *, device="cpu":
                        Pose.empty(*image.size) if image.tobytes() in originals else found)
    used = []
    real = control.endpoint_pose
    monkeypatch.setattr(control, "endpoint_pose", lambda *a, **k: used.append(real(*a, **k))
                        or used[-1])
    render(session, engine, settings)
    rendered = list(used)                       # what the render's ControlNet inputs came from
    shown = [session.keyframe_pose(k, settings, engine)[0] for k in (0, 1)]
    assert rendered == [found, found] and shown == [found, found]


def test_reordering_keeps_segment_overrides_and_edits_with_their_keyframes(engine):
    session = session_of("astronaut.jpg", "chelsea.jpg", "coffee.jpg")      # A B C
    session.set_segment(1, Segment(frames=7, seed=9))                        # B -> C
    render(session, engine)
    session.edit_frame(6, FrameEdit(prompt="a cat"))                        # in B -> C
    session.move_keyframe(0, 2)                                             # B C A
    timeline = session.timeline(FAST)
    assert timeline.segments == (Segment(frames=7, seed=9), Segment())      # B -> C first now
    result = render(session, engine)
    assert result.edits == {2: FrameEdit(prompt="a cat")}    # local frame 2 of B -> C, again
    assert [len(seg.frames) for seg in result.segments] == [7, 5]


def test_edits_of_a_segment_whose_length_changed_are_dropped_with_a_note(engine):
    session = session_of("astronaut.jpg", "chelsea.jpg")
    render(session, engine)
    session.edit_frame(2, FrameEdit(seed=4))
    result = render(session, engine, FAST.replace(frames=9))
    assert result.edits == {} and session.edits == {}
    assert session.notes == ["frame edits of segment 1 were cleared because its number of "
                             "frames changed"]


def test_a_project_restores_the_row(engine):
    session = session_of("astronaut.jpg", "chelsea.jpg", "coffee.jpg")
    session.loop = True
    session.set_keyframe_text(2, "a cup")
    session.set_segment(2, Segment(duration=0.6))                           # C -> A
    render(session, engine)
    session.pin(2, 0)
    restored = Session()
    restored.restore(session.project())
    assert [s.prompt for s in restored.slots] == [None, None, "a cup"] and restored.loop
    assert restored.segment(2) == Segment(duration=0.6)
    again = render(restored, engine)
    assert again.generated == [] and again.edits == {2: FrameEdit(candidate=0)}
