"""The app through gradio_client: named endpoints, streaming, the frame panel, cancel, errors,
poses, projects and per-session state. The app runs in-process on the tiny model (64 px)."""
import json
import re
import socket
import threading
import time
import zipfile
from pathlib import Path

import pytest

from interp.forms import FORM_FIELDS, form_from_settings, settings_from_form
from interp.settings import PRESETS, Settings, preset

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "assets" / "examples"
TINY = Settings(frames=5, num_inference_steps=10, size=64, candidates=3, prompt="a photo",
                rank_positive="a photo")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def url():
    from ui import layout
    from interp.models.load import load_bundle
    from interp.rank import build_tiny_clip
    from interp.render import Interpolator
    from interp.store import FrameStore
    bundle = load_bundle("tiny")
    engine = Interpolator(bundle, FrameStore(), build_tiny_clip(counter=bundle.counter))
    demo = layout.build_demo(engine, "running on the tiny test model", TINY)
    port = free_port()
    demo.launch(prevent_thread_lock=True, quiet=True, server_port=port, **layout.launch_options())
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def connect(url):
    """A client (its own session); files come back as FileData dicts (fetch() what is needed)."""
    from gradio_client import Client
    return Client(url, verbose=False, download_files=False, analytics_enabled=False)


@pytest.fixture
def client(url):
    return connect(url)


def fetch(url, filedata, directory: Path) -> Path:
    """Download one output file of the app into directory."""
    import httpx
    path = directory / Path(filedata["path"]).name
    path.write_bytes(httpx.get(filedata["url"]).content)
    return path


def images(a="astronaut.jpg", b="chelsea.jpg") -> dict:
    from gradio_client import handle_file
    return {"image_a": handle_file(str(EXAMPLES / a)), "image_b": handle_file(str(EXAMPLES / b))}


def render(client, **knobs):
    """/interpolate with the tiny knobs -> (job, final outputs)."""
    job = client.submit(**{**images(), **{k: v for k, v in knobs.items()}},
                        api_name="/interpolate")
    return job, job.result()


# -- the one mapping ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PRESETS))
def test_form_round_trips_every_preset(name):
    settings = preset(name, curve_points=((0.2, 0.3),), prompt_b="a dog")
    assert settings_from_form(form_from_settings(settings)) == settings


def test_form_coerces_widget_values_and_names_bad_ones():
    s = settings_from_form({"frames": 9.0, "seed": "12", "curve": "beta", "prompt_b": "",
                            "curve_points": {"headers": ["x", "y"], "data": [[0.5, 0.2], ["", ""]]}})
    assert (s.frames, s.seed, s.curve.value, s.prompt_b, s.curve_points) == (
        9, 12, "beta", None, ((0.5, 0.2),))
    for values, words in (({"frames": 4.5}, "frames=4.5"), ({"frames": None}, "frames is empty"),
                          ({"colour": 1}, "colour"), ({"noise_min": 0.9}, "noise_min")):
        with pytest.raises(ValueError, match=words):
            settings_from_form(values)


def test_endpoint_knobs_are_the_settings_fields_and_cli_flags(client):
    from interp.cli.main import build_parser
    params = [p["parameter_name"] for p in client.view_api(print_info=False, return_format="dict")
              ["named_endpoints"]["/interpolate"]["parameters"]]
    assert params[:2] == ["image_a", "image_b"] and sorted(params[2:]) == sorted(FORM_FIELDS)
    render_parser = build_parser()._subparsers._group_actions[0].choices["render"]
    flags = {o for a in render_parser._actions for o in a.option_strings}
    assert {"--" + f.replace("_", "-") for f in FORM_FIELDS} <= flags


# -- rendering ------------------------------------------------------------------------------------

def test_interpolate_streams_middle_first_exports_and_reuses(client, url, tmp_path):
    from interp.video import read_video_frames
    job, out = render(client, seed=1)
    strips = [[s["caption"] for s in o[0]] for o in job.outputs() if isinstance(o[0], list)]
    assert strips[0] == ["frame 0", "frame 4"]          # the inputs at once, then the middle
    assert next(s for s in strips if len(s) > 2) == ["frame 0", "frame 2", "frame 4"]
    assert len(out[0]) == 5 and out[1].startswith("5 frames · regenerated 3, reused 0")
    video, mp4, gif, archive, project = (fetch(url, f, tmp_path) for f in out[2:7])
    assert len(read_video_frames(mp4)) == 5 and gif.stat().st_size > 0
    assert len(zipfile.ZipFile(archive).namelist()) == 5
    assert json.loads(project.read_text())["settings"]["seed"] == 1
    assert out[7]["generated"] == [1, 2, 3]
    _, again = render(client, seed=1)
    assert "regenerated 0, reused 3" in again[1]


def test_frame_panel_pin_and_regenerate_touch_only_descendants(client):
    _, out = render(client, seed=2, frames=9)
    shown = client.predict(4, api_name="/select_frame")
    gallery, info, chosen = shown[0], shown[1], shown[2]
    assert len(gallery) == 3 and all(re.fullmatch(rf"#{c} · -?\d\.\d{{3}}( ✓)?", g["caption"])
                                     for c, g in enumerate(gallery))  # CLIP scores
    assert "**Frame 4**" in info and gallery[int(chosen)]["caption"].endswith("✓")
    other = (int(chosen) + 1) % 3
    pinned = client.predict(6, other, api_name="/use_candidate")
    assert "regenerated 2, reused 5" in pinned[1]  # frame 6's children 5 and 7
    assert pinned[0][6]["caption"] == "frame 6 · pinned"
    redone = client.predict(2, "", "", 1.0, False, None, 0, "", api_name="/regenerate_frame")
    assert "regenerated 3, reused 4" in redone[1]  # frame 2 and its children 1 and 3
    assert set(redone[7]["generated"]) == {1, 2, 3}
    seed = client.predict(2, api_name="/select_frame")[7]
    assert isinstance(seed, (int, float)) and seed >= 0  # the re-roll's seed is shown


def test_cancel_stops_within_steps_and_keeps_finished_frames(client):
    job = client.submit(**images(), seed=3, frames=17, num_inference_steps=100, candidates=1,
                        api_name="/interpolate")
    deadline = time.time() + 60
    while time.time() < deadline and not any(
            isinstance(o[0], list) and len(o[0]) >= 3 for o in job.outputs()):
        time.sleep(0.1)
    client.predict(api_name="/cancel")
    out = job.result(timeout=60)
    assert out[1].startswith("cancelled: kept")
    kept = int(out[1].split("kept ")[1].split()[0])
    assert 1 <= kept < 15 and len(out[0]) == kept + 2
    assert out[2] is None and out[3] is None  # no video or download for an incomplete run


def test_bad_uploads_and_settings_are_clear_errors_and_the_app_keeps_working(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    for path, words in ((text, "Image A: 'notes.png' is not an image"), (empty, "empty")):
        with pytest.raises(AppError, match=words):
            client.predict(handle_file(str(path)), api_name="/set_image_a")
    with pytest.raises(AppError, match="noise_min/noise_max"):
        render(client, noise_min=0.9, noise_max=0.2)
    with pytest.raises(AppError, match="is not an image"):
        client.predict(**{**images(), "image_b": handle_file(str(text))}, api_name="/interpolate")
    with pytest.raises(AppError, match="press Interpolate first"):
        client.predict(2, 0, api_name="/use_candidate")
    _, out = render(client, seed=4)
    assert "5 frames" in out[1]


def test_plan_endpoint_follows_the_curve(client):
    base = dict(frames=5, curve_alpha=1.0, curve_beta=1.0, curve_points={"headers": ["x", "y"],
                "data": [[0.5, 0.5]]}, noise_min=0.3, noise_max=0.55, noise_shape="linear",
                num_inference_steps=10)
    svg, rows = client.predict(curve="uniform", **base, api_name="/plan")
    assert [r["position"] for r in rows] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert 'data-position="0.250000"' in svg and 'data-noise="0.5000"' in svg
    svg2, rows2 = client.predict(curve="ease_in", **base, api_name="/plan")
    assert rows2[1]["position"] == pytest.approx(0.0625) and svg2 != svg
    bad, none = client.predict(curve="custom", **{**base, "curve_points": {
        "headers": ["x", "y"], "data": [[0.5, 1.0], [0.6, 0.2]]}}, api_name="/plan")
    assert "Cannot plan" in bad and "non-decreasing" in bad and none is None


def test_pose_endpoints_validate_and_keep_the_pose(client):
    from gradio_client.exceptions import AppError
    files = images()
    value, text = client.predict(files["image_a"], files["image_b"], "a", None, 64, "crop", False,
                                 api_name="/load_pose")
    assert value["target"] == "a" and value["image"].startswith("data:image/jpeg")
    pose = {"canvas_width": 64, "canvas_height": 64,
            "people": [{"pose_keypoints_2d": [32, 20, 1] * 18}]}
    value2, text2, _ = client.predict(json.dumps(pose), value, api_name="/set_pose")
    assert json.loads(text2) == pose and value2["pose"] == pose
    again, _ = client.predict(None, None, "a", None, 64, "crop", False, api_name="/load_pose")
    assert again["pose"] == pose  # kept in the session
    bad = {**pose, "people": [{"pose_keypoints_2d": [99, 20, 1] * 18}]}
    with pytest.raises(AppError, match="outside the canvas width"):
        client.predict(json.dumps(bad), value, api_name="/set_pose")
    moved = {**pose, "people": [{"pose_keypoints_2d": [40, 20, 1] * 18}]}
    client.predict(json.dumps(moved), {**value, "target": "b"}, api_name="/set_pose")
    render(client, seed=10, pose=True)
    framed, _ = client.predict(None, None, "frame", 2, 64, "crop", False, api_name="/load_pose")
    assert framed["target"] == "frame:2" and framed["label"] == "Frame 2"
    assert framed["pose"]["people"][0]["pose_keypoints_2d"][:3] == [36, 20, 1]  # halfway A-B
    _, _, frame_text = client.predict(json.dumps(pose), framed, api_name="/set_pose")
    assert json.loads(frame_text) == pose  # goes into the frame's override form
    out = client.predict(2, "", "", 1.0, False, None, 0, frame_text, api_name="/regenerate_frame")
    assert out[7]["edits"]["2"]["pose"] == pose and "regenerated 3, reused 0" in out[1]


def test_load_project_restores_everything_and_reuses_cached_frames(client, url, tmp_path):
    from gradio_client import handle_file
    _, out = render(client, seed=5, prompt="a cat", frames=5)
    pinned = client.predict(2, 1, api_name="/use_candidate")
    fresh = connect(url)
    loaded = fresh.predict(handle_file(str(fetch(url, pinned[6], tmp_path))),
                           api_name="/load_project")
    image_a, image_b, knobs = loaded[0], loaded[1], dict(zip(FORM_FIELDS, loaded[2:2 + len(FORM_FIELDS)]))
    assert knobs["seed"] == 5 and knobs["prompt"] == "a cat" and "1 frame edit" in loaded[-1]
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    job = fresh.submit(image_a=handle_file(str(fetch(url, image_a, tmp_path / "a"))),
                       image_b=handle_file(str(fetch(url, image_b, tmp_path / "b"))), **knobs,
                       api_name="/interpolate")
    result = job.result()
    assert "regenerated 0, reused 3" in result[1] and result[0][2]["caption"] == "frame 2 · pinned"


def test_two_sessions_at_once_keep_their_own_results(url):
    one, two = connect(url), connect(url)
    results = {}

    def go(name, c, seed):
        results[name] = render(c, seed=seed, frames=5)[1]
    threads = [threading.Thread(target=go, args=("one", one, 6)),
               threading.Thread(target=go, args=("two", two, 7))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert results["one"][7]["settings"]["seed"] == 6 and results["two"][7]["settings"]["seed"] == 7
    keys = [client.predict(2, api_name="/select_frame")[1] for client in (one, two)]
    assert results["one"][7]["frames"][2]["seeds"] != results["two"][7]["frames"][2]["seeds"]
    assert keys[0] != keys[1]  # each session's frame panel shows its own frame


def test_presets_fill_only_their_knobs(client):
    values = dict(zip(FORM_FIELDS, client.predict("paper", api_name="/apply_preset")))
    assert values["num_inference_steps"] == 200 and values["invert_steps"] == 500
    assert values["candidates"] == 0 and values["noise_max"] == 0.55
    changed = {k for k, v in values.items() if not isinstance(v, dict)}  # dict = "left as is"
    assert changed == set(PRESETS["paper"]) and "prompt" not in changed


def test_out_of_memory_and_library_errors_become_clear_messages():
    import torch
    from ui.handlers import OOM_HINT, user_error
    from interp.errors import ModelUnavailable
    assert user_error(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried ...")).message == OOM_HINT
    assert user_error(ModelUnavailable("no ControlNet")).message == "no ControlNet"
    assert "KeyError" in user_error(KeyError("x")).message


def test_pose_guidance_needs_poses_and_uses_drawn_ones(client):
    from gradio_client.exceptions import AppError
    with pytest.raises(AppError, match="Draw the pose by hand"):
        render(client, seed=8, pose=True)   # no detector weights offline and nothing drawn
    person = [20, 10, 1] * 18
    for which in ("a", "b"):
        pose = {"canvas_width": 64, "canvas_height": 64, "people": [{"pose_keypoints_2d": person}]}
        client.predict(json.dumps(pose), {"target": which}, api_name="/set_pose")
    _, out = render(client, seed=8, pose=True)
    assert "5 frames · regenerated 3" in out[1]
    assert out[7]["model_calls"]["calls"]["controlnet"] > 0


def test_export_endpoint_applies_the_export_knobs(client, url, tmp_path):
    from interp.video import read_video_frames
    render(client, seed=9)
    video, mp4, gif, archive, project = client.predict(12, True, 0, 2, 1, api_name="/export")
    frames = read_video_frames(fetch(url, mp4, tmp_path))
    assert len(frames) == (1 + 2) + 3 + (1 + 1) + 3  # A held 2 more, inner, B held 1, inner back


def test_even_pacing_respaces_the_last_render_and_reports_the_spread(client, url, tmp_path):
    from PIL import Image
    from interp import metrics
    from helpers import evenly_paced
    with pytest.raises(Exception, match="Interpolate"):
        client.predict(api_name="/even_pacing")   # nothing rendered in this session yet
    _, first = render(client, seed=5, frames=9, candidates=1)
    with zipfile.ZipFile(fetch(url, first[5], tmp_path)) as archive:
        frames = [Image.open(archive.open(n)).convert("RGB") for n in sorted(archive.namelist())]
    before = [f["position"] for f in first[7]["frames"]]
    expected = evenly_paced(before, metrics.adjacent_distances(frames, metrics.lab_distance))
    paced = client.predict(api_name="/even_pacing")
    assert paced[7]["settings"]["curve"] == "custom"
    assert [f["position"] for f in paced[7]["frames"]] == pytest.approx(expected.tolist(), abs=1e-6)
    line = re.search(r"pacing: largest/smallest step ([\d.]+) -> ([\d.]+), PDV ([\d.]+) -> ([\d.]+)",
                     paced[1])
    assert line, paced[1]
    assert paced[2] is not None and len(paced[0]) == 9   # a complete, exported sequence
