"""The studio under hostile input (issue 11), through gradio_client and raw HTTP on one in-process
server (tiny model, 64 px). Every test ends with the server alive and with no file of the secret
folder opened by this process (Python's audit hook records every open)."""
import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from hostile import TINY, guard, raw, secret, studio  # noqa: F401 (the shared fixtures)
from studio import EXAMPLES
from ui.handlers import RENDER
from interp.timeline import two_image

REFUSED = "Keyframe {k}: this file cannot be used here"
FAST = dict(frames=3, num_inference_steps=4, candidates=1)
# where the strip and the project file sit in /interpolate's raw outputs (the state comes first)
STRIP, RENDER_PROJECT = (RENDER.index(n) for n in ("strip", "project"))


def upload(raw, name="astronaut.jpg"):
    return raw.upload(EXAMPLES / name)


def two(raw, session: str) -> None:
    """Two uploaded keyframes in `session`."""
    reply = raw.call("add_keyframes", session, files=[upload(raw), upload(raw, "rocket.jpg")])
    assert not reply.failed, reply.error


def leaks(text, secret: Path) -> bool:
    """Whether the secret's bytes (raw or base64) or its pixels appear in a reply or download."""
    data = [(secret / "secret.png").read_bytes(), (secret / "secret.txt").read_bytes(),
            Image.open(secret / "secret.png").tobytes()]
    marks = [d[16:64] for d in data] + [base64.b64encode(d)[8:60] for d in data]
    blob = text.encode(errors="ignore") if isinstance(text, str) else text
    return any(m in blob for m in marks)


def httpx_get(url: str) -> bytes:
    import httpx
    return httpx.get(url, timeout=30).content


def project_file(tmp_path, change=None, name="p.interp.json") -> Path:
    """A two-keyframe project file (changed by `change(data)`), written to tmp_path."""
    from interp.project import Project
    timeline = two_image(Image.new("RGB", (64, 64), (200, 0, 0)),
                         Image.new("RGB", (64, 64), (0, 0, 200)), TINY)
    data = Project(timeline, TINY).to_json()
    if change is not None:
        change(data)
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


# -- 1. reading files on the server ---------------------------------------------------------------

def forged(secret: Path, raw) -> list:
    """Payloads naming files the session did not upload (the last is a bare path string)."""
    cache = Path(raw.upload(EXAMPLES / "coffee.jpg")["path"]).parent.parent
    meta = {"meta": {"_type": "gradio.FileData"}}
    return [{"path": str(secret / "secret.png")}, {"path": str(secret / "secret.txt")},
            {"path": str(secret / "missing.png")}, {"path": str(secret / "inner")},
            {"path": str(secret / "empty.png")}, {"path": "/etc/shadow"},
            {"path": f"{cache}/x/../../{secret.relative_to('/')}/secret.png"},
            {"url": "file:///etc/shadow"}, {"path": str(secret / "secret.png"), **meta},
            "/etc/shadow"]


def test_forged_paths_are_refused_alike_and_no_byte_comes_back(raw, secret):
    session = "forger"
    two(raw, session)
    for payload in forged(secret, raw):
        replies = {"C": raw.call("add_keyframes", session, files=[payload]),
                   "A": raw.call("replace_keyframe", session, keyframe=0, file=payload)}
        for k, reply in replies.items():
            assert reply.failed and not leaks(reply.text, secret)
            # Gradio's file widgets refuse paths that were not uploaded, with no message; past
            # them, ours: one message whatever the path is
            assert reply.error is None or reply.error.startswith(REFUSED.format(k=k)), reply.error
        project = raw.call("load_project", session, file=payload)
        assert project.failed and not leaks(project.text, secret)
    done = raw.call("interpolate", session, **FAST)
    assert not done.failed and not leaks(done.text, secret)
    saved = httpx_get(done.data[RENDER_PROJECT]["url"])
    assert not leaks(saved, secret)
    embedded = json.loads(saved)["keyframes"][0]["image"]["png"]
    image = Image.open(io.BytesIO(base64.b64decode(embedded)))
    assert image.size == Image.open(EXAMPLES / "astronaut.jpg").size   # the upload, not the secret


def test_another_sessions_outputs_cannot_be_opened(raw):
    two(raw, "owner")
    mine = raw.call("interpolate", "owner", **FAST)
    frame, project = mine.data[STRIP][1]["image"], mine.data[RENDER_PROJECT]
    theirs = {"path": frame["path"], "meta": {"_type": "gradio.FileData"}}
    stolen = raw.call("add_keyframes", "thief", files=[theirs])
    assert stolen.failed and (stolen.error is None or stolen.error.startswith(
        REFUSED.format(k="A")))
    loaded = raw.call("load_project", "thief",
                      file={"path": project["path"], "meta": {"_type": "gradio.FileData"}})
    assert loaded.failed and (loaded.error is None or loaded.error.startswith(
        "This project file cannot be used here"))


def test_a_loaded_projects_keyframes_stay_in_its_own_session(raw, tmp_path):
    loaded = raw.call("load_project", "loader", file=raw.upload(project_file(tmp_path)))
    assert not loaded.failed
    again = raw.call("interpolate", "loader", **FAST)          # no upload needed to render it
    assert not again.failed and again.data[STRIP][0]["caption"] == "0 · A"
    shown = {**loaded.data[1]["value"][0]["image"], "meta": {"_type": "gradio.FileData"}}
    other = raw.call("add_keyframes", "stranger", files=[shown])  # its thumbnail, elsewhere
    assert other.failed and (other.error is None or other.error.startswith(
        REFUSED.format(k="A")))


def test_the_examples_load_by_name_only(raw):
    name = raw.config["components"]
    dropdown = next(c for c in name if c["props"].get("elem_id") == "interp-example")
    label = dropdown["props"]["choices"][-1][1]
    assert not raw.call("load_example", "example", example=label).failed
    assert not raw.call("interpolate", "example", **FAST).failed
    bad = raw.call("load_example", "example", example="/etc/shadow")   # Gradio's own check
    assert bad.failed and "is not in the list of choices" in bad.error


def test_the_file_rule_itself(tmp_path):
    from types import SimpleNamespace
    from interp.session import Session
    from ui.sessions import Sessions
    rule, session = Sessions(), Session()
    rule.bind(SimpleNamespace(upload_file_set=set()))
    assert rule.may_open(session, str(EXAMPLES / "chelsea.jpg"))      # a repo example
    link = tmp_path / "link.jpg"
    link.symlink_to("/etc/hostname")
    for path in (str(EXAMPLES / ".." / "README.md"), str(EXAMPLES), str(link), "/etc/shadow"):
        assert not rule.may_open(session, path)
    assert not rule.may_open(session, str(EXAMPLES / "chelsea.jpg"), examples=False)


def test_the_file_rule_refuses_with_one_message_before_any_file_is_touched(tmp_path, secret):
    from types import SimpleNamespace
    from interp.errors import InputError
    from interp.session import Session
    from ui.sessions import Sessions
    import threading
    rule, session = Sessions(), Session()
    rule.bind(SimpleNamespace(upload_file_set=set()))
    messages = []

    def attempt(payload):                 # in a thread of its own: the open log records it
        try:
            rule.add_keyframes(session, [payload])
        except InputError as exc:
            messages.append(str(exc))
    for payload in ({"path": str(secret / "secret.png")}, {"path": str(secret / "missing.png")},
                    {"path": str(secret / "inner")}, "/etc/shadow", {"url": "file:///etc/x"}):
        worker = threading.Thread(target=attempt, args=(payload,))
        worker.start()
        worker.join()
    assert messages == [REFUSED.format(k="A") + " (only images uploaded in this session and the "
                        "examples can be opened): upload the image again."] * 5
    assert session.slots == []            # and the guard: no file of the secret folder opened


# -- 2. bounds ------------------------------------------------------------------------------------

@pytest.mark.parametrize("knob, value, variable", [
    ("frames", 200, "INTERP_MAX_FRAMES"), ("candidates", 40, "INTERP_MAX_CANDIDATES"),
    ("size", 2048, "INTERP_MAX_SIZE"), ("num_inference_steps", 1001, "INTERP_MAX_STEPS"),
    ("invert_steps", 10_000, "INTERP_MAX_INVERT_STEPS")])
def test_knobs_past_the_limits_name_the_bound(raw, knob, value, variable):
    two(raw, f"bound-{knob}")
    reply = raw.call("interpolate", f"bound-{knob}", **{knob: value})
    assert reply.failed and f"{knob}={value}" in reply.error and variable in reply.error


def test_a_lowered_bound_is_enforced_and_named(raw, monkeypatch):
    monkeypatch.setenv("INTERP_MAX_FRAMES", "9")
    two(raw, "lowered")
    reply = raw.call("interpolate", "lowered", frames=17)
    assert "frames=17" in reply.error and "9 is this server's limit" in reply.error
    segment = raw.call("edit_keyframe", "lowered", keyframe=0, frames=17)
    assert "frames=17" in segment.error and "INTERP_MAX_FRAMES" in segment.error


def test_export_holds_are_bounded_in_the_api_and_in_projects(raw, tmp_path):
    reply = raw.call("export", hold_last=10**6)
    assert "hold_last=1000000" in reply.error and "INTERP_MAX_HOLD_FRAMES" in reply.error
    path = project_file(tmp_path, lambda d: d["export"].update(hold_last=10**6), "holds.json")
    loaded = raw.call("load_project", file=raw.upload(path))
    assert "hold_last=1000000" in loaded.error and "INTERP_MAX_HOLD_FRAMES" in loaded.error


@pytest.mark.parametrize("side", [200_000, 10**30])
def test_pose_canvas_past_the_limit_is_refused(raw, side):
    pose = {"canvas_width": side, "canvas_height": side, "people": []}
    reply = raw.call("set_pose", text=json.dumps(pose), value={"target": "keyframe:1"})
    assert "canvas_width" in reply.error and "INTERP_MAX_POSE_CANVAS" in reply.error
    huge = {"canvas_width": 64, "canvas_height": 64,
            "people": [{"pose_keypoints_2d": [10**30, 0, 0] * 18}]}
    reply = raw.call("set_pose", text=json.dumps(huge), value={"target": "keyframe:1"})
    assert reply.failed and "pose_keypoints_2d[0]" in reply.error


# -- 6. memory: inputs at the working size --------------------------------------------------------

def test_a_huge_input_is_kept_at_the_largest_working_size(raw, tmp_path):
    from interp import limits
    big = tmp_path / "big.png"
    Image.new("RGB", (6000, 4000), (200, 30, 60)).save(big)          # 24 MP, a small file
    assert not raw.call("add_keyframes", "huge", files=[raw.upload(big), upload(raw)]).failed
    reply = raw.call("interpolate", "huge", **FAST)
    project = json.loads(httpx_get(reply.data[RENDER_PROJECT]["url"]))
    png = base64.b64decode(project["keyframes"][0]["image"]["png"])
    assert limits.current().size == 1536                               # the built-in bound
    assert Image.open(io.BytesIO(png)).size == (2304, 1536)            # 6000 x 4000, short side kept


# -- 7. messages that name the field --------------------------------------------------------------

def test_data_urls_and_oversized_uploads_never_reach_the_studio(raw, tmp_path, secret):
    """Keyframes are uploads: Gradio's file widgets refuse a data: URL (no path, nothing to read)
    and its upload route refuses a file over the upload limit, naming it."""
    import httpx
    for url in ("data:image/png;base64", "data:image/png;base64," + "A" * 4096):
        reply = raw.call("add_keyframes", files=[{"url": url, "meta": {"_type": "gradio.FileData"}}])
        assert reply.failed and not leaks(reply.text, secret)
    big = tmp_path / "big.png"
    with open(big, "wb") as handle:                  # 51 MB, over the 50 MB limit
        handle.truncate(51 * 2**20)
    with open(big, "rb") as handle:
        reply = httpx.post(raw.url + "gradio_api/upload", files={"files": ("big.png", handle)},
                           timeout=120)
    assert reply.status_code == 413 and "52428800 bytes" in reply.text     # 50 MB


def test_values_of_the_wrong_type_name_the_field(raw, tmp_path):
    two(raw, "types")
    assert "frames='abc' is not a number" in raw.call("interpolate", "types", frames="abc").error
    points = raw.call("interpolate", "types", curve_points="0.25:0.1").error
    assert points.startswith("curve_points='0.25:0.1' is not allowed")
    plan = raw.call("plan", curve_points="abc", frames="x")
    assert "frames=&#x27;x&#x27; is not a number" in plan.data[0]
    seed = raw.call("edit_keyframe", "types", keyframe=0, seed="abc").error
    assert "seed='abc' is not a number" in seed
    for text, words in ((project_file(tmp_path, lambda d: d["settings"].update(
            guidance_scale="3")).read_text(), "guidance_scale='3' is not allowed: expected a number"),
                        ("[" * 5000 + "]" * 5000, "nested too deeply")):
        path = tmp_path / "typed.json"
        path.write_text(text)
        assert words in raw.call("load_project", file=raw.upload(path)).error


# -- 8. long prompts ------------------------------------------------------------------------------

def test_long_prompts_warn_with_the_cut_words_and_log_short_lines(raw, caplog):
    two(raw, "long")
    prompt = " ".join(["cat"] * 120)         # "cat" is one token: 75 fit between BOS and EOS
    assert not raw.call("edit_keyframe", "long", keyframe=1, prompt=" ".join(["dog"] * 80)).failed
    reply = raw.call("interpolate", "long", prompt=prompt, **FAST)
    assert not reply.failed
    assert reply.warnings == ["45 words of Prompt were cut at CLIP's 77-token window: "
                              "cat cat cat cat cat cat cat cat…",
                              "5 words of Keyframe B's prompt were cut at CLIP's 77-token "
                              "window: dog dog dog dog dog"]
    lines = [r.getMessage() for r in caplog.records if r.name == "interp.text"]
    assert lines and all(len(line) < 400 for line in lines)
    huge = raw.call("interpolate", "long", prompt="x" * 10**6)
    assert "prompt is 1000000 characters long" in huge.error and "INTERP_MAX_PROMPT_CHARS" in huge.error
