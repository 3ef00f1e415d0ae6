"""Project files: a lossless round trip, and clear errors for every kind of damage."""
import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from interp.errors import InputError
from interp.pose.keypoints import Pose
from interp.project import Project, load_project, save_project
from interp.settings import Curve, Export, FrameEdit, Settings
from interp.hashing import content_hash


def _image(seed: int, size=(40, 24)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


POSE = Pose(40, 24, (tuple((float(k), 2.0 * (k % 10), 1.0 if k % 3 else 0.0)
                           for k in range(18)),))


@pytest.fixture
def project():
    settings = Settings(frames=9, curve=Curve.CUSTOM, curve_points=((0.3, 0.1), (0.7, 0.9)),
                        seed=123, prompt="a cat", prompt_b="a dog", size=64)
    edits = {3: FrameEdit(prompt="a fox", strength=0.5, keyframe=True, seed=7),
             4: FrameEdit(candidate=2, noise=0.4, pose=POSE.to_json())}
    return Project(_image(1), _image(2), settings, edits, Export(fps=12.0, pingpong=True),
                   pose_a=POSE, pose_b=None, model="tiny-sd15", seeds={4: (1, 2, 3)})


def _dump(project) -> dict:
    return json.loads(json.dumps(project.to_json()))


def test_round_trip_keeps_pixels_settings_edits_poses_and_export(tmp_path, project):
    path = save_project(project, tmp_path / "sub" / "p.json")
    loaded = load_project(path)
    assert np.array_equal(np.asarray(loaded.image_a), np.asarray(project.image_a))
    assert np.array_equal(np.asarray(loaded.image_b), np.asarray(project.image_b))
    assert content_hash(loaded.image_a) == content_hash(project.image_a)  # same frame keys
    assert loaded.settings == project.settings
    assert loaded.edits == project.edits
    assert loaded.export == project.export
    assert loaded.pose_a == POSE and loaded.pose_b is None
    assert loaded.model == "tiny-sd15" and loaded.seeds == {4: (1, 2, 3)}


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
    (lambda d: d.pop("inputs"), "'inputs'"),
    (lambda d: d["inputs"]["a"].update(hash="0" * 64), "inputs.a.hash does not match"),
    (lambda d: d["inputs"]["b"].update(png="@@@"), "inputs.b.png is not valid base64"),
    (lambda d: d["inputs"]["b"].update(png=base64.b64encode(b"hello").decode()),
     "inputs.b: "),
    (lambda d: d["settings"].update(frames=2), "frames=2"),
    (lambda d: d["settings"].update(colour="red"), "colour"),
    (lambda d: d["settings"].update(curve="wiggly"), "wiggly"),
    (lambda d: d["edits"].update({"8": {"seed": 1}}), "frame 8 is out of range"),
    (lambda d: d["edits"].update({"x": {}}), "'x' is not a frame number"),
    (lambda d: d["edits"]["3"].update(strength=3), "strength=3"),
    (lambda d: d["edits"]["4"]["pose"].update(canvas_width=-1), "canvas_width"),
    (lambda d: d["export"].update(fps=0), "fps=0"),
    (lambda d: d["export"].update(speed=2), "speed"),
    (lambda d: d["poses"].update(b={"people": []}), "poses.b"),
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
    entry = project.to_json()["inputs"]["a"]
    decoded = Image.open(io.BytesIO(base64.b64decode(entry["png"])))
    assert decoded.format == "PNG" and entry["size"] == [40, 24]
    assert entry["hash"] == content_hash(decoded.convert("RGB"))


def test_project_rejects_out_of_range_edits_when_built():
    with pytest.raises(ValueError, match="frame 0"):
        Project(_image(1), _image(2), Settings(frames=5), {0: FrameEdit(seed=1)})
