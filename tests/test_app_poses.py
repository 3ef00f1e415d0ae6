"""The studio's pose editor through gradio_client: a keyframe's pose is validated and kept (also
when the row is reordered), a frame's pose goes into its override form, and pose guidance uses
the drawn poses. The app runs in-process on the tiny model (64 px)."""
import json

import pytest

from studio import add, by_name, render, studio_fixture
from interp.settings import Settings

TINY = Settings(frames=5, num_inference_steps=6, size=64, candidates=1, prompt="a photo")
SHOWN = ("state", "editor", "pose_json")
TYPED = ("state", "editor", "pose_json", "frame_pose")


url = studio_fixture(TINY)


def person(x: float, y: float = 20) -> dict:
    return {"canvas_width": 64, "canvas_height": 64, "people": [{"pose_keypoints_2d": [x, y, 1] * 18}]}


def load(client, **where):
    return by_name(SHOWN, client.predict(**{"size": 64, **where}, api_name="/load_pose"))


def test_a_keyframes_pose_is_validated_kept_and_follows_its_keyframe(client):
    from gradio_client.exceptions import AppError
    add(client, "astronaut.jpg", "chelsea.jpg", "coffee.jpg")
    shown = load(client, target="keyframe", keyframe=1)
    assert shown["editor"]["label"] == "Keyframe B" and shown["editor"]["target"].startswith(
        "keyframe:") and shown["editor"]["image"].startswith("data:image/jpeg")
    typed = by_name(TYPED, client.predict(text=json.dumps(person(32)), value=shown["editor"],
                                          api_name="/set_pose"))
    assert json.loads(typed["pose_json"]) == person(32) and typed["editor"]["pose"] == person(32)
    assert load(client, target="keyframe", keyframe=1)["editor"]["pose"] == person(32)   # kept
    client.predict(keyframe=1, api_name="/move_keyframe_earlier")       # B is now the first
    assert load(client, target="keyframe", keyframe=0)["editor"]["pose"] == person(32)
    # an edit made in the editor before the move still reaches its keyframe
    client.predict(text=json.dumps(person(40)), value=shown["editor"], api_name="/set_pose")
    assert load(client, target="keyframe", keyframe=0)["editor"]["pose"] == person(40)
    bad = {**person(32), "people": [{"pose_keypoints_2d": [99, 20, 1] * 18}]}
    with pytest.raises(AppError, match="outside the canvas width"):
        client.predict(text=json.dumps(bad), value=shown["editor"], api_name="/set_pose")


def test_a_frames_pose_is_interpolated_and_goes_into_its_override_form(client):
    from ui.handlers import RENDER
    add(client, "astronaut.jpg", "chelsea.jpg")
    for k, x in ((0, 32), (1, 40)):
        editor = load(client, target="keyframe", keyframe=k)["editor"]
        client.predict(text=json.dumps(person(x)), value=editor, api_name="/set_pose")
    render(client, seed=10, pose=True)
    framed = load(client, target="frame", frame=2)["editor"]
    assert framed["target"] == "frame:2" and framed["label"] == "Frame 2"
    assert framed["pose"]["people"][0]["pose_keypoints_2d"][:3] == [36, 20, 1]  # halfway A-B
    typed = by_name(TYPED, client.predict(text=json.dumps(person(20)), value=framed, api_name="/set_pose"))
    assert json.loads(typed["frame_pose"]) == person(20)   # into the frame's override form
    out = by_name(RENDER, client.predict(frame=2, pose=typed["frame_pose"],
                                         api_name="/regenerate_frame"))
    assert out["details"]["edits"]["2"]["pose"] == person(20)
    assert "regenerated 3, reused 0" in out["status"]      # frame 2 and its children 1 and 3
    reset = by_name(TYPED, client.predict(target="frame", frame=2, size=64,
                                          api_name="/reset_pose"))
    assert reset["frame_pose"] == "" and reset["editor"]["pose"] == framed["pose"]


def test_pose_guidance_needs_poses_and_uses_drawn_ones(client):
    from gradio_client.exceptions import AppError
    add(client, "astronaut.jpg", "chelsea.jpg")
    with pytest.raises(AppError, match="Draw the pose by hand"):
        render(client, seed=8, pose=True)   # no detector weights offline and nothing drawn
    for k in (0, 1):
        editor = load(client, target="keyframe", keyframe=k)["editor"]
        client.predict(text=json.dumps(person(20, 10)), value=editor, api_name="/set_pose")
    _, out = render(client, seed=8, pose=True)
    assert "5 frames · regenerated 3" in out["status"]
    assert out["details"]["model_calls"]["calls"]["controlnet"] > 0
