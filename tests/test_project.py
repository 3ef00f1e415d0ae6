"""Project files: a lossless round trip of a whole timeline, version 1 (two-image) files still
loading, and clear errors for every kind of damage."""
import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from interp.errors import InputError
from interp.hashing import content_hash
from interp.pose.keypoints import Pose
from interp.project import Project, load_project, save_project
from interp.settings import Curve, Export, FrameEdit, Settings
from interp.timeline import Keyframe, Segment, Timeline


def _image(seed: int, size=(40, 24)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


POSE = Pose(40, 24, (tuple((float(k), 2.0 * (k % 10), 1.0 if k % 3 else 0.0)
                           for k in range(18)),))
SETTINGS = Settings(frames=9, curve=Curve.CUSTOM, curve_points=((0.3, 0.1), (0.7, 0.9)),
                    seed=123, prompt="a cat", size=64)


@pytest.fixture
def project():
    """A four-keyframe loop: segments of 9, 5, 9 (by duration: 0.4 s at 10 fps -> 5) and 9 frames;
    keyframes at 0, 8, 12, 20; 28 frames in all."""
    keys = (Keyframe(_image(1), prompt="a cat", pose=POSE), Keyframe(_image(2), prompt="a dog"),
            Keyframe(_image(3), negative_prompt="dark"), Keyframe(_image(4)))
    timeline = Timeline(keys, (Segment(), Segment(duration=0.4), Segment(seed=5, curve="ease_in"),
                               Segment()), loop=True)
    edits = {3: FrameEdit(prompt="a fox", strength=0.5, keyframe=True, seed=7),
             10: FrameEdit(candidate=2, noise=0.4, pose=POSE.to_json())}
    return Project(timeline, SETTINGS, edits, Export(fps=10.0, pingpong=True, gif_loop=2),
                   model="tiny-sd15", seeds={10: (1, 2, 3)})


def _dump(project) -> dict:
    return json.loads(json.dumps(project.to_json()))


def test_round_trip_of_a_four_keyframe_loop(tmp_path, project):
    path = save_project(project, tmp_path / "sub" / "p.json")
    loaded = load_project(path)
    for a, b in zip(loaded.timeline.keyframes, project.timeline.keyframes):
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
        assert content_hash(a.image) == content_hash(b.image)            # same frame keys
        assert (a.prompt, a.negative_prompt, a.pose) == (b.prompt, b.negative_prompt, b.pose)
    assert loaded.timeline.segments == project.timeline.segments and loaded.timeline.loop
    assert loaded.settings == project.settings and loaded.edits == project.edits
    assert loaded.export == project.export
    assert loaded.model == "tiny-sd15" and loaded.seeds == {10: (1, 2, 3)}


def test_a_version_1_two_image_project_loads_as_a_two_keyframe_timeline(project):
    data = {"format": "interp-project", "version": 1, "model": None,
            "inputs": {"a": project.to_json()["keyframes"][0]["image"],
                       "b": project.to_json()["keyframes"][1]["image"]},
            "settings": SETTINGS.replace(prompt_b="a dog").to_dict(),
            "edits": {"3": {"seed": 2}}, "seeds": {}, "poses": {"a": POSE.to_json(), "b": None},
            "export": {"fps": 12.0, "pingpong": False, "loop": 3, "hold_first": 0, "hold_last": 1}}
    loaded = load_project(data)
    a, b = loaded.timeline.keyframes
    assert len(loaded.timeline.keyframes) == 2 and not loaded.timeline.loop
    assert a.pose == POSE and b.pose is None and b.prompt == "a dog"
    assert loaded.export.gif_loop == 3 and loaded.edits == {3: FrameEdit(seed=2)}


def test_loads_from_text_bytes_and_dict(project):
    data = _dump(project)
    for source in (json.dumps(data), json.dumps(data).encode(), data):
        assert load_project(source).settings.seed == 123


def _damaged(project, change) -> dict:
    data = _dump(project)
    change(data)
    return data


@pytest.mark.parametrize("change, words", [
    (lambda d: d.update(format="something-else"), "not an interp project"),
    (lambda d: d.update(version=99), "version 99"),
    (lambda d: d.pop("keyframes"), "'keyframes'"),
    (lambda d: d.update(keyframes=d["keyframes"][:1]), "1 entries"),
    (lambda d: d["keyframes"][0]["image"].update(hash="0" * 64), "keyframes[0].image.hash"),
    (lambda d: d["keyframes"][1]["image"].update(png="@@@"), "keyframes[1].image.png is not valid"),
    (lambda d: d["keyframes"][1]["image"].update(png=base64.b64encode(b"hello").decode()),
     "keyframes[1].image: "),
    (lambda d: d["keyframes"][2].update(prompt=3), "keyframes[2].prompt"),
    (lambda d: d["keyframes"][2].update(pose={"people": []}), "keyframes[2].pose"),
    (lambda d: d.update(segments=d["segments"][:2]), "2 segment(s)"),
    (lambda d: d["segments"][1].update(frames=9), "frames or duration"),
    (lambda d: d["segments"][2].update(wiggle=1), "wiggle"),
    (lambda d: d.update(loop="yes"), "'loop'"),
    (lambda d: d["settings"].update(frames=2), "frames=2"),
    (lambda d: d["settings"].update(colour="red"), "colour"),
    (lambda d: d["settings"].update(curve="wiggly"), "wiggly"),
    (lambda d: d["edits"].update({"12": {"seed": 1}}), "frame 12 is a keyframe"),
    (lambda d: d["edits"].update({"28": {"seed": 1}}), "frame 28 is out of range"),
    (lambda d: d["edits"].update({"x": {}}), "'x' is not a frame number"),
    (lambda d: d["edits"]["3"].update(strength=3), "strength=3"),
    (lambda d: d["edits"]["10"]["pose"].update(canvas_width=-1), "canvas_width"),
    (lambda d: d["export"].update(fps=0), "fps=0"),
    (lambda d: d["export"].update(speed=2), "speed"),
    (lambda d: d["seeds"].update({"4": ["x"]}), "seeds"),
])
def test_damage_is_reported_by_name(project, change, words):
    with pytest.raises(InputError) as info:
        load_project(_damaged(project, change))
    assert words in str(info.value)


def test_not_json_empty_and_missing_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    for source, words in ((bad, "not valid JSON"), (empty, "empty"),
                          (tmp_path / "nope.json", "does not exist"), ("[1, 2]", "JSON object")):
        with pytest.raises(InputError, match=words):
            load_project(source)


def test_embedded_images_are_png_with_their_content_hash(project):
    entry = project.to_json()["keyframes"][0]["image"]
    decoded = Image.open(io.BytesIO(base64.b64decode(entry["png"])))
    assert decoded.format == "PNG" and entry["size"] == [40, 24]
    assert entry["hash"] == content_hash(decoded.convert("RGB"))


def test_project_rejects_edits_of_keyframes_and_out_of_range_when_built(project):
    with pytest.raises(ValueError, match="frame 0"):
        Project(project.timeline, SETTINGS, {0: FrameEdit(seed=1)})
    with pytest.raises(ValueError, match="keyframe"):
        Project(project.timeline, SETTINGS, {8: FrameEdit(seed=1)})


def test_endpoint_attention_knobs_round_trip(tmp_path, project):
    from interp.settings import AttentionBlocks, AttentionMode
    settings = SETTINGS.replace(attention=AttentionMode.EXTEND, attention_strength=0.5,
                                attention_share=0.25, attention_blocks=AttentionBlocks.UP)
    loaded = load_project(save_project(Project(project.timeline, settings, project.edits,
                                               project.export, model="tiny-sd15"), tmp_path / "a.json"))
    assert (loaded.settings.attention, loaded.settings.attention_strength,
            loaded.settings.attention_share, loaded.settings.attention_blocks) == (
        AttentionMode.EXTEND, 0.5, 0.25, AttentionBlocks.UP)
    assert loaded.settings == settings
