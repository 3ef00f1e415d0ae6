"""The studio under hostile input (issue 11), through gradio_client and raw HTTP on one in-process
server (tiny model, 64 px). Every test ends with the server alive and with no file of the secret
folder opened by this process (Python's audit hook records every open)."""
import base64
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hostile import EXAMPLES, OpenLog, Raw, alive, connect, start_studio
from interp.settings import Settings

TINY = Settings(frames=3, num_inference_steps=4, size=64, candidates=1, prompt="a photo")
REFUSED = "Image {w}: this file cannot be used here"
FAST = dict(frames=3, num_inference_steps=4, candidates=1)


@pytest.fixture(scope="module")
def studio():
    demo, url = start_studio(TINY)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def raw(studio):
    return Raw(studio)


@pytest.fixture(scope="module")
def secret(tmp_path_factory):
    """A folder the app must never read: a distinctive image, a text, an empty file, a folder."""
    folder = tmp_path_factory.mktemp("secret")
    pixels = np.random.default_rng(11).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "secret.png")
    (folder / "secret.txt").write_text("SECRET-7f3a9 do not serve")
    (folder / "empty.png").write_bytes(b"")
    (folder / "inner").mkdir()
    return folder


@pytest.fixture(autouse=True)
def guard(studio, secret):
    """After each test: the server answers, and nothing in the secret folder was opened."""
    log = OpenLog.shared()
    log.paths.clear()
    log.recording = True
    yield
    log.recording = False
    assert alive(studio)
    assert log.under(secret) == []


def upload(raw, name="astronaut.jpg"):
    return raw.upload(EXAMPLES / name)


def leaks(text, secret: Path) -> bool:
    """Whether the secret's bytes (raw or base64) or its pixels appear in a reply or download."""
    data = [(secret / "secret.png").read_bytes(), (secret / "secret.txt").read_bytes(),
            Image.open(secret / "secret.png").tobytes()]
    marks = [d[16:64] for d in data] + [base64.b64encode(d)[8:60] for d in data]
    blob = text.encode(errors="ignore") if isinstance(text, str) else text
    return any(m in blob for m in marks)


# -- 1. reading files on the server ---------------------------------------------------------------

def forged(secret: Path, raw) -> list:
    """Payloads naming files the session did not upload (the last is another session's output)."""
    cache = Path(raw.upload(EXAMPLES / "coffee.jpg")["path"]).parent.parent
    meta = {"meta": {"_type": "gradio.FileData"}}
    return [{"path": str(secret / "secret.png")}, {"path": str(secret / "secret.txt")},
            {"path": str(secret / "missing.png")}, {"path": str(secret / "inner")},
            {"path": str(secret / "empty.png")}, {"path": "/etc/shadow"},
            {"path": f"{cache}/x/../../{secret.relative_to('/')}/secret.png"},
            {"url": "file:///etc/shadow"}, {"path": str(secret / "secret.png"), **meta},
            "/etc/shadow"]


def test_forged_paths_are_refused_alike_and_no_byte_comes_back(raw, secret):
    good = upload(raw)
    session = "forger"
    for payload in forged(secret, raw):
        replies = {
            "a": [raw.call("set_image_a", session, image=payload),
                  raw.call("interpolate", session, image_a=payload, image_b=good, **FAST),
                  raw.call("load_pose", session, image_a=payload, image_b=good, size=64),
                  raw.call("reset_pose", session, image_a=payload, image_b=good, size=64)],
            "b": [raw.call("set_image_b", session, image=payload)]}
        for which, group in replies.items():
            for reply in group:
                assert reply.failed and not leaks(reply.text, secret)
                # one message whatever the path is (Gradio's own refusal sends no message)
                assert reply.error is None or reply.error.startswith(REFUSED.format(w=which.upper()))
                if isinstance(payload, dict) and "meta" not in payload and "path" in payload:
                    assert reply.error.startswith(REFUSED.format(w=which.upper()))
    done = raw.call("interpolate", session, image_a=good, image_b=good, **FAST)
    assert not done.failed and not leaks(done.text, secret)
    project = httpx_get(done.data[7]["url"])
    assert not leaks(project, secret)
    embedded = json.loads(project)["inputs"]["a"]["png"]
    image = Image.open(io.BytesIO(base64.b64decode(embedded)))
    assert image.size == Image.open(EXAMPLES / "astronaut.jpg").size   # the upload, not the secret


def test_another_sessions_outputs_cannot_be_opened(raw):
    mine = raw.call("interpolate", "owner", image_a=upload(raw), image_b=upload(raw, "rocket.jpg"),
                    **FAST)
    frame, project = mine.data[1][1]["image"], mine.data[7]
    theirs = {"path": frame["path"], "meta": {"_type": "gradio.FileData"}}
    stolen = raw.call("set_image_a", "thief", image=theirs)
    assert stolen.error.startswith(REFUSED.format(w="A"))
    loaded = raw.call("load_project", "thief",
                      file={"path": project["path"], "meta": {"_type": "gradio.FileData"}})
    assert loaded.error.startswith("This project file cannot be used here")


def test_a_loaded_projects_inputs_stay_usable_in_its_own_session_only(raw, tmp_path):
    from interp.project import Project
    data = Project(Image.new("RGB", (64, 64), (200, 0, 0)), Image.new("RGB", (64, 64), (0, 0, 200)),
                   TINY).to_json()
    path = tmp_path / "mine.interp.json"
    path.write_text(json.dumps(data))
    loaded = raw.call("load_project", "loader", file=raw.upload(path))
    shown = [{**loaded.data[i], "meta": {"_type": "gradio.FileData"}} for i in (1, 2)]
    again = raw.call("interpolate", "loader", image_a=shown[0], image_b=shown[1], **FAST)
    assert not again.failed and again.data[1][0]["caption"] == "frame 0"
    other = raw.call("interpolate", "stranger", image_a=shown[0], image_b=shown[1], **FAST)
    assert other.error.startswith(REFUSED.format(w="A"))


def test_the_examples_as_the_browser_sends_them_are_read(raw):
    dataset = next(c for c in raw.config["components"] if c["type"] == "dataset")
    a, b = dataset["props"]["samples"][-1][:2]          # a pair the browser shows as an example
    assert not raw.call("interpolate", "example", image_a=a, image_b=b, **FAST).failed


def test_the_file_rule_itself(tmp_path):
    from types import SimpleNamespace
    from interp.session import Session
    from ui.sessions import Sessions
    rule, session = Sessions(), Session()
    cached = "/tmp/gradio/abc/astronaut.jpg"
    rule.bind(SimpleNamespace(upload_file_set=set()), [SimpleNamespace(temp_files={cached})])
    assert rule.may_open(session, cached)                              # an example's copy
    assert rule.may_open(session, str(EXAMPLES / "chelsea.jpg"))      # a repo example
    link = tmp_path / "link.jpg"
    link.symlink_to("/etc/hostname")
    for path in (str(EXAMPLES / ".." / "README.md"), str(EXAMPLES), str(link), "/etc/shadow"):
        assert not rule.may_open(session, path)
    assert not rule.may_open(session, cached, examples=False)         # not a project file


def httpx_get(url: str) -> bytes:
    import httpx
    return httpx.get(url, timeout=30).content


# -- 2. bounds ------------------------------------------------------------------------------------

@pytest.mark.parametrize("knob, value, variable", [
    ("frames", 200, "INTERP_MAX_FRAMES"), ("candidates", 40, "INTERP_MAX_CANDIDATES"),
    ("size", 2048, "INTERP_MAX_SIZE"), ("num_inference_steps", 1001, "INTERP_MAX_STEPS"),
    ("invert_steps", 10_000, "INTERP_MAX_INVERT_STEPS")])
def test_knobs_past_the_limits_name_the_bound(raw, knob, value, variable):
    reply = raw.call("interpolate", image_a=upload(raw), image_b=upload(raw), **{knob: value})
    assert reply.failed and f"{knob}={value}" in reply.error and variable in reply.error


def test_a_lowered_bound_is_enforced_and_named(raw, monkeypatch):
    monkeypatch.setenv("INTERP_MAX_FRAMES", "9")
    reply = raw.call("interpolate", image_a=upload(raw), image_b=upload(raw), frames=17)
    assert "frames=17" in reply.error and "9 is this server's limit" in reply.error


def test_export_holds_are_bounded_in_the_api_and_in_projects(raw, tmp_path):
    from interp.project import Project, save_project
    reply = raw.call("export", hold_last=10**6)
    assert "hold_last=1000000" in reply.error and "INTERP_MAX_HOLD_FRAMES" in reply.error
    data = Project(Image.new("RGB", (64, 64)), Image.new("RGB", (64, 64)), TINY).to_json()
    data["export"]["hold_last"] = 10**6
    path = tmp_path / "holds.interp.json"
    path.write_text(json.dumps(data))
    loaded = raw.call("load_project", file=raw.upload(path))
    assert "hold_last=1000000" in loaded.error and "INTERP_MAX_HOLD_FRAMES" in loaded.error


@pytest.mark.parametrize("side", [200_000, 10**30])
def test_pose_canvas_past_the_limit_is_refused(raw, side):
    pose = {"canvas_width": side, "canvas_height": side, "people": []}
    reply = raw.call("set_pose", text=json.dumps(pose), value={"target": "a"})
    assert "canvas_width" in reply.error and "INTERP_MAX_POSE_CANVAS" in reply.error
    huge = {"canvas_width": 64, "canvas_height": 64,
            "people": [{"pose_keypoints_2d": [10**30, 0, 0] * 18}]}
    reply = raw.call("set_pose", text=json.dumps(huge), value={"target": "a"})
    assert reply.failed and "pose_keypoints_2d[0]" in reply.error


# -- 6. memory: inputs at the working size --------------------------------------------------------

def test_a_huge_input_is_kept_at_the_largest_working_size(raw, tmp_path):
    from interp import limits
    big = tmp_path / "big.png"
    Image.new("RGB", (6000, 4000), (200, 30, 60)).save(big)          # 24 MP, a small file
    reply = raw.call("interpolate", image_a=raw.upload(big), image_b=upload(raw), **FAST)
    project = json.loads(httpx_get(reply.data[7]["url"]))
    png = base64.b64decode(project["inputs"]["a"]["png"])
    side = limits.current().size                                       # short side kept: 1024
    assert Image.open(io.BytesIO(png)).size == (round(6000 * side / 4000), side)


# -- 7. messages that name the field --------------------------------------------------------------

def test_data_urls_get_clear_messages(raw, monkeypatch):
    monkeypatch.setenv("INTERP_MAX_UPLOAD_MB", "1")
    png = io.BytesIO()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(png, "PNG")
    small = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()
    cases = [("data:image/png;base64", "has no comma"), ("data:image/png,abc", "is not base64"),
             ("data:image/png;base64,@@@@", "not valid base64"),
             ("data:image/png;base64," + "A" * (2 << 20), "over this server's limit of 1 MB")]
    for url, words in cases:
        error = raw.call("set_image_a", image={"url": url}).error
        assert error.startswith("Image A: the data: URL") and words in error
    assert "INTERP_MAX_UPLOAD_MB" in error
    assert not raw.call("set_image_a", image={"url": small}).failed


def test_values_of_the_wrong_type_name_the_field(raw, tmp_path):
    from interp.project import Project
    good = dict(image_a=upload(raw), image_b=upload(raw))
    assert "frames='abc' is not a number" in raw.call("interpolate", **good, frames="abc").error
    points = raw.call("interpolate", **good, curve_points="0.25:0.1").error
    assert points.startswith("curve_points='0.25:0.1' is not allowed")
    plan = raw.call("plan", curve_points="abc", frames="x")
    assert "frames=&#x27;x&#x27; is not a number" in plan.data[0]
    data = Project(Image.new("RGB", (64, 64)), Image.new("RGB", (64, 64)), TINY).to_json()
    data["settings"]["guidance_scale"] = "3"
    nested = "[" * 5000 + "]" * 5000
    for text, words in ((json.dumps(data), "guidance_scale='3' is not allowed: expected a number"),
                        (nested, "nested too deeply")):
        path = tmp_path / "p.json"
        path.write_text(text)
        assert words in raw.call("load_project", file=raw.upload(path)).error


# -- 8. long prompts ------------------------------------------------------------------------------

def test_long_prompts_warn_with_the_cut_words_and_log_short_lines(raw, caplog):
    prompt = " ".join(["cat"] * 120)         # "cat" is one token: 75 fit between BOS and EOS
    reply = raw.call("interpolate", image_a=upload(raw), image_b=upload(raw), prompt=prompt,
                     **FAST)
    assert not reply.failed
    assert reply.warnings == ["45 words of Prompt A were cut at CLIP's 77-token window: "
                              "cat cat cat cat cat cat cat cat…"]
    lines = [r.getMessage() for r in caplog.records if r.name == "interp.text"]
    assert lines and all(len(line) < 400 for line in lines)
    huge = raw.call("interpolate", image_a=upload(raw), image_b=upload(raw), prompt="x" * 10**6)
    assert "prompt is 1000000 characters long" in huge.error and "INTERP_MAX_PROMPT_CHARS" in huge.error


# -- classes that already passed ------------------------------------------------------------------

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
    with pytest.raises(AppError, match=f"Image A: .*'upload.png'.*{words}"):
        connect(studio).predict(handle_file(str(path)), api_name="/set_image_a")


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
    assert not raw.call("set_image_a", image=raw.upload(path)).failed


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
    reply = raw.call("set_pose", text=text, value={"target": "a"})
    assert reply.error.startswith("invalid pose JSON") and words in reply.error


def test_unknown_preset_and_bad_enum_values(raw):
    assert "zzz" in raw.call("apply_preset", name="zzz").error
    reply = raw.call("interpolate", image_a=upload(raw), image_b=upload(raw), curve="zigzag")
    assert reply.error.startswith("curve='zigzag' is not one of")


def _project_file(tmp_path, change) -> dict:
    from interp.project import Project
    data = Project(Image.new("RGB", (64, 64), (5, 5, 5)), Image.new("RGB", (64, 64)),
                   TINY).to_json()
    change(data)
    return data


PROJECTS = {
    "malformed JSON": ("{not json", "not valid JSON"),
    "wrong version": (lambda d: d.update(version=99), "version 99 is not supported"),
    "damaged image hash": (lambda d: d["inputs"]["a"].update(hash="0" * 64), "does not match"),
    "unknown settings field": (lambda d: d["settings"].update(colour=1), "unknown Settings field"),
}


@pytest.mark.parametrize("case", sorted(PROJECTS))
def test_bad_project_files_are_named(raw, case, tmp_path):
    change, words = PROJECTS[case]
    text = change if isinstance(change, str) else json.dumps(_project_file(tmp_path, change))
    path = tmp_path / "bad.interp.json"
    path.write_text(text)
    assert words in raw.call("load_project", file=raw.upload(path)).error


def test_frame_operations_out_of_range_or_too_early(raw):
    early = "frames"
    for api, values in (("regenerate_frame", dict(frame=1)), ("use_candidate", dict(frame=1,
                        candidate=0)), ("even_pacing", {}), ("export", {})):
        assert "press Interpolate first" in raw.call(api, early, **values).error
    assert not raw.call("cancel", early).failed                       # nothing running: no-op
    raw.call("interpolate", early, image_a=upload(raw), image_b=upload(raw), **FAST)
    assert "frame 99 is not available" in raw.call("select_frame", early, frame=99).error
    assert "in-between frames are 1..1" in raw.call("regenerate_frame", early, frame=2).error
    assert "frame 1 has candidates 0..0, not 5" in raw.call("use_candidate", early, frame=1,
                                                              candidate=5).error
    assert "frame must be a whole number" in raw.call("select_frame", early, frame="abc").error
