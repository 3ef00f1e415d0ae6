"""Hostile inputs the studio already handled (issue 11: "the 27 classes that already pass, so they
stay passing"), and the keyframe row's own: damaged and unusual image files, bad pose JSON, bad
presets, enums and project files, frame and keyframe operations out of range or too early, and
more keyframes than the server allows. Same server and guards as test_hostile_app."""
import io
import json

import numpy as np
import pytest
from PIL import Image

from hostile import guard, raw, secret, studio  # noqa: F401 (the shared fixtures)
from studio import EXAMPLES, connect
from test_hostile_app import FAST, project_file, two, upload


def _bomb() -> bytes:
    """A small PNG whose header claims 100000 x 100000 pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    head = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", zlib.compress(b"\0" * 10))
            + chunk(b"IEND", b""))


def _encoded(image: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kw)
    return out.getvalue()


BAD_FILES = {
    "not an image": (b"hello, this is text", "is not an image"),
    "truncated PNG": (_encoded(Image.new("RGB", (64, 64), (9, 9, 9)), "PNG")[:60], "damaged or truncated"),
    "zero bytes": (b"", "is empty"),
    "decompression bomb": (_bomb(), "megapixels"),
    "tiny": (_encoded(Image.new("RGB", (8, 8)), "PNG"), "too small"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_image_files_get_clear_messages(studio, case, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    data, words = BAD_FILES[case]
    path = tmp_path / "upload.png"
    path.write_bytes(data)
    with pytest.raises(AppError, match=f"Keyframe A: .*'upload.png'.*{words}"):
        connect(studio).predict(files=[handle_file(str(path))], api_name="/add_keyframes")


def _animated() -> bytes:
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    return _encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])


ODD_IMAGES = {
    "16-bit gray": lambda: _encoded(Image.fromarray(np.full((32, 32), 40000, np.uint16)), "PNG"),
    "CMYK JPEG": lambda: _encoded(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG"),
    "RGBA": lambda: _encoded(Image.new("RGBA", (32, 32), (255, 0, 0, 128)), "PNG"),
    "palette with transparency": lambda: _encoded(
        Image.new("P", (32, 32), 1), "PNG", transparency=1),
    "animated GIF": _animated,
}


@pytest.mark.parametrize("case", sorted(ODD_IMAGES))
def test_unusual_images_are_read(raw, case, tmp_path):
    path = tmp_path / "odd.bin"
    path.write_bytes(ODD_IMAGES[case]())
    assert not raw.call("add_keyframes", files=[raw.upload(path)]).failed


BAD_POSES = {
    "not JSON": ("{canvas", "not valid JSON"),
    "no canvas": (json.dumps({"people": []}), "canvas_width is missing"),
    "short keypoints": (json.dumps({"canvas_width": 64, "canvas_height": 64,
                                    "people": [{"pose_keypoints_2d": [1, 1, 1]}]}), "has 3 numbers"),
    "too many people": (json.dumps({"canvas_width": 64, "canvas_height": 64, "people": [
        {"pose_keypoints_2d": [1, 1, 1] * 18}] * 11}), "at most 10"),
    "negative confidence": (json.dumps({"canvas_width": 64, "canvas_height": 64, "people": [
        {"pose_keypoints_2d": [1, 1, -1] * 18}]}), "negative confidence"),
}


@pytest.mark.parametrize("case", sorted(BAD_POSES))
def test_bad_pose_json_is_named(raw, case):
    text, words = BAD_POSES[case]
    reply = raw.call("set_pose", text=text, value={"target": "keyframe:1"})
    assert reply.error.startswith("invalid pose JSON") and words in reply.error


def test_a_pose_for_a_keyframe_that_is_gone_or_forged(raw):
    two(raw, "poses")
    pose = json.dumps({"canvas_width": 64, "canvas_height": 64, "people": []})
    gone = raw.call("set_pose", "poses", text=pose, value={"target": "keyframe:999999"})
    assert "that keyframe was removed" in gone.error
    forged = raw.call("set_pose", "poses", text=pose, value={"target": "keyframe:../../x"})
    assert "is not a keyframe of this session" in forged.error


def test_unknown_preset_and_bad_enum_values(raw):
    assert "zzz" in raw.call("apply_preset", name="zzz").error
    reply = raw.call("interpolate", curve="zigzag")
    assert reply.error.startswith("curve='zigzag' is not one of")
    two(raw, "enums")
    curve = raw.call("edit_keyframe", "enums", keyframe=0, curve="zigzag")
    assert curve.error.startswith("curve='zigzag' is not one of")


PROJECTS = {
    "malformed JSON": ("{not json", "not valid JSON"),
    "wrong version": (lambda d: d.update(version=99), "version 99 is not supported"),
    "damaged image hash": (lambda d: d["keyframes"][0]["image"].update(hash="0" * 64),
                           "does not match"),
    "unknown settings field": (lambda d: d["settings"].update(colour=1), "unknown Settings field"),
    "too many keyframes": (lambda d: d.update(keyframes=d["keyframes"] * 9),
                           "has 18 entries: expected 2 to 16"),
}


@pytest.mark.parametrize("case", sorted(PROJECTS))
def test_bad_project_files_are_named(raw, case, tmp_path):
    change, words = PROJECTS[case]
    path = project_file(tmp_path, None if isinstance(change, str) else change)
    if isinstance(change, str):
        path.write_text(change)
    assert words in raw.call("load_project", file=raw.upload(path)).error


def test_frame_operations_out_of_range_or_too_early(raw):
    early = "frames"
    for api, values in (("regenerate_frame", dict(frame=1)), ("use_candidate", dict(frame=1,
                        candidate=0)), ("even_pacing", {}), ("export", {})):
        assert "press Interpolate first" in raw.call(api, early, **values).error
    assert not raw.call("cancel", early).failed                       # nothing running: no-op
    two(raw, early)
    raw.call("interpolate", early, **FAST)
    assert "frame 99 is not available" in raw.call("select_frame", early, frame=99).error
    assert "in-between frames are 1..1" in raw.call("regenerate_frame", early, frame=2).error
    assert "frame 1 has candidates 0..0, not 5" in raw.call("use_candidate", early, frame=1,
                                                              candidate=5).error
    assert "frame must be a whole number" in raw.call("select_frame", early, frame="abc").error


def test_keyframe_operations_out_of_range_or_too_early(raw):
    early = "keys"
    assert "Add images and pick a keyframe first" in raw.call("remove_keyframe", early).error
    assert "add at least two images" in raw.call("interpolate", early, **FAST).error
    two(raw, early)
    assert "keyframe 5 does not exist: there are 2" in raw.call("remove_keyframe", early,
                                                                  keyframe=5).error
    assert "is already the first" in raw.call("move_keyframe_earlier", early, keyframe=0).error
    assert "is already the last" in raw.call("move_keyframe_later", early, keyframe=1).error
    assert "keyframe must be a whole number" in raw.call("select_keyframe", early,
                                                         keyframe="abc").error
    both = raw.call("edit_keyframe", early, keyframe=0, frames=5, duration=1.0).error
    assert "a segment takes frames or seconds" in both


def test_more_keyframes_than_the_limit_are_refused_whole(raw, monkeypatch):
    monkeypatch.setenv("INTERP_MAX_KEYFRAMES", "3")
    session = "many"
    two(raw, session)
    reply = raw.call("add_keyframes", session, files=[upload(raw, "coffee.jpg"),
                                                      upload(raw, "chelsea.jpg")])
    assert "4 keyframes are over this server's limit of 3" in reply.error
    assert "INTERP_MAX_KEYFRAMES" in reply.error
    assert not raw.call("add_keyframes", session, files=[upload(raw, "coffee.jpg")]).failed
    assert str(EXAMPLES)  # the examples folder is where the uploads came from
