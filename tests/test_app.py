"""The studio through gradio_client: named endpoints, keyframes, streaming, the frame panel,
cancel, errors, poses, projects and per-session state. The app runs in-process on the tiny model
(64 px); outputs are read by component name (tests/studio.py)."""
import json
import re
import threading
import time
import zipfile

import pytest

from studio import EXAMPLES, add, by_name, connect, fetch, outputs, render, studio_fixture
from interp.forms import FORM_FIELDS, form_from_settings, settings_from_form
from interp.settings import PRESETS, Settings, preset

TINY = Settings(frames=5, num_inference_steps=10, size=64, candidates=3, prompt="a photo",
                rank_positive="a photo")


url = studio_fixture(TINY)


def two(client):
    return add(client, "astronaut.jpg", "chelsea.jpg")


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
    # every Settings field but B's prompts, which are keyframe B's own prompts in the studio
    assert params[0] == "loop"
    assert sorted(params[1:]) == sorted(set(FORM_FIELDS) - {"prompt_b", "negative_prompt_b"})
    render_parser = build_parser()._subparsers._group_actions[0].choices["render"]
    flags = {o for a in render_parser._actions for o in a.option_strings}
    assert {"--" + f.replace("_", "-") for f in FORM_FIELDS} <= flags


# -- keyframes and rendering ----------------------------------------------------------------------

def test_interpolate_streams_middle_first_exports_and_reuses(client, url, tmp_path):
    from ui.handlers import RENDER
    from interp.video import read_video_frames
    board = two(client)
    assert [g["caption"] for g in board["keyframes"]] == ["A", "B"]
    job, out = render(client, seed=1)
    strips = [[s["caption"] for s in o["strip"]] for o in outputs(job, RENDER)
              if isinstance(o["strip"], list)]
    assert strips[0] == ["0 · A", "4 · B"]             # the keyframes at once, then the middle
    assert next(s for s in strips if len(s) > 2) == ["0 · A", "2", "4 · B"]
    assert len(out["strip"]) == 5 and out["status"].startswith("5 frames · regenerated 3, reused 0")
    mp4, gif, archive, project = (fetch(url, out[k], tmp_path) for k in ("mp4", "gif", "zip",
                                                                        "project"))
    assert len(read_video_frames(mp4)) == 5 and gif.stat().st_size > 0
    assert len(zipfile.ZipFile(archive).namelist()) == 5
    assert json.loads(project.read_text())["settings"]["seed"] == 1
    assert out["details"]["generated"] == [1, 2, 3]
    _, again = render(client, seed=1)
    assert "regenerated 0, reused 3" in again["status"]


def test_three_keyframes_reorder_and_a_segment_of_its_own(client):
    from ui.keyframes import BOARD
    add(client, "astronaut.jpg", "chelsea.jpg", "coffee.jpg")
    _, out = render(client, seed=2, frames=5)
    # 3 keyframes, 2 segments of 5 frames sharing B: 5 + 5 - 1 frames, each made once
    assert len(out["strip"]) == 9 and "regenerated 6, reused 0" in out["status"]
    assert [s["frames"] for s in out["details"]["segments"]] == [5, 5]
    assert [f["segment"] for f in out["details"]["frames"]] == [0] * 5 + [1] * 4
    # segment B -> C gets 7 frames and a seed of its own; A -> B stays cached
    client.predict(keyframe=1, frames=7, seed=5, api_name="/edit_keyframe")
    _, seven = render(client, seed=2, frames=5)
    assert len(seven["strip"]) == 11 and "regenerated 5, reused 3" in seven["status"]
    # C moves before B: A -> C and C -> B are new segments; the row follows
    moved = by_name(BOARD, client.predict(keyframe=2, api_name="/move_keyframe_earlier"))
    assert [g["caption"] for g in moved["keyframes"]] == ["A", "B", "C"]   # letters by place
    assert moved["kf"] == 1
    _, swapped = render(client, seed=2, frames=5)
    assert swapped["details"]["generated"] != [] and len(swapped["strip"]) == 9


def test_keyframe_prompts_loop_and_removal(client):
    from ui.keyframes import BOARD
    add(client, "astronaut.jpg", "chelsea.jpg", "coffee.jpg")
    client.predict(keyframe=1, prompt="a cat", api_name="/edit_keyframe")
    shown = by_name(BOARD, client.predict(keyframe=1, api_name="/select_keyframe"))
    assert [g["caption"] for g in shown["keyframes"]] == ["A", "B · a cat", "C"]
    assert shown["kf_prompt"] == "a cat"
    looped = by_name(BOARD, client.predict(loop=True, keyframe=2, api_name="/set_loop"))
    assert looped["seg_title"].startswith("Segment **C → A**")
    _, out = render(client, loop=True, seed=3, frames=5)
    assert len(out["strip"]) == 3 * 5 - 3 and out["details"]["loop"] is True
    assert out["details"]["segments"][1]["settings"]["prompt"] == "a cat"   # B's prompt
    removed = by_name(BOARD, client.predict(keyframe=0, api_name="/remove_keyframe"))
    assert [g["caption"] for g in removed["keyframes"]] == ["A · a cat", "B"]


def test_frame_panel_pin_and_regenerate_touch_only_descendants(client):
    from ui.frame_panel import SHOWN
    from ui.handlers import RENDER
    two(client)
    render(client, seed=2, frames=9)
    shown = by_name(SHOWN, client.predict(frame=4, api_name="/select_frame"))
    gallery = shown["cand_gallery"]
    assert len(gallery) == 3 and all(re.fullmatch(rf"#{c} · -?\d\.\d{{3}}( ✓)?", g["caption"])
                                     for c, g in enumerate(gallery))  # CLIP scores
    assert "**Frame 4**" in shown["frame_info"] and "segment A → B" in shown["frame_info"]
    assert gallery[int(shown["cand_no"])]["caption"].endswith("✓")
    other = (int(shown["cand_no"]) + 1) % 3
    pinned = by_name(RENDER, client.predict(frame=6, candidate=other, api_name="/use_candidate"))
    assert "regenerated 2, reused 5" in pinned["status"]  # frame 6's children 5 and 7
    assert pinned["strip"][6]["caption"] == "6 · pinned"
    redone = by_name(RENDER, client.predict(frame=2, api_name="/regenerate_frame"))
    assert "regenerated 3, reused 4" in redone["status"]  # frame 2 and its children 1 and 3
    assert set(redone["details"]["generated"]) == {1, 2, 3}
    seed = by_name(SHOWN, client.predict(frame=2, api_name="/select_frame"))["frame_seed"]
    assert isinstance(seed, (int, float)) and seed >= 0  # the re-roll's seed is shown


def test_cancel_stops_within_steps_and_keeps_finished_frames(client):
    from ui.handlers import RENDER
    two(client)
    job = client.submit(seed=3, frames=17, num_inference_steps=100, candidates=1,
                        api_name="/interpolate")
    deadline = time.time() + 60
    while time.time() < deadline and not any(
            isinstance(o["strip"], list) and len(o["strip"]) >= 3 for o in outputs(job, RENDER)):
        time.sleep(0.1)
    client.predict(api_name="/cancel")
    out = by_name(RENDER, job.result(timeout=60))
    assert out["status"].startswith("cancelled: kept")
    kept = int(out["status"].split("kept ")[1].split()[0])
    assert 1 <= kept < 15 and len(out["strip"]) == kept + 2
    assert out["video"] is None and out["mp4"] is None  # nothing for an incomplete run


def test_bad_uploads_and_settings_are_clear_errors_and_the_app_keeps_working(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    for path, words in ((text, "Keyframe A: 'notes.png' is not an image"), (empty, "empty")):
        with pytest.raises(AppError, match=words):
            client.predict(files=[handle_file(str(path))], api_name="/add_keyframes")
    with pytest.raises(AppError, match="add at least two images"):
        render(client)
    with pytest.raises(AppError, match="press Interpolate first"):
        client.predict(frame=2, candidate=0, api_name="/use_candidate")
    two(client)
    with pytest.raises(AppError, match="noise_min/noise_max"):
        render(client, noise_min=0.9, noise_max=0.2)
    with pytest.raises(AppError, match="Keyframe D: .notes.png. is not an image"):
        client.predict(files=[handle_file(str(EXAMPLES / "coffee.jpg")), handle_file(str(text))],
                       api_name="/add_keyframes")
    _, out = render(client, seed=4)
    assert out["status"].startswith("5 frames")          # the bad pair added nothing


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


def test_timeline_endpoint_shows_segment_lengths_and_the_working_size(client):
    two(client)
    add(client, "coffee.jpg")
    client.predict(keyframe=0, duration=0.8, api_name="/edit_keyframe")
    svg = client.predict(fps=10, keyframe=0, frames=5, api_name="/timeline")
    # A -> B: 0.8 s at 10 fps = 9 frames; B -> C: the run's 5; 9 + 5 - 1 = 13 frames, 1.2 s
    assert re.findall(r'data-frames="(\d+)"', svg) == ["9", "5"]
    assert "13 frames · 1.2 s at 10 fps · working size 64 × 64" in svg


def test_presets_fill_only_their_knobs(client):
    from ui.knobs import STUDIO_FIELDS
    values = by_name(STUDIO_FIELDS, client.predict(name="paper", api_name="/apply_preset"))
    assert values["num_inference_steps"] == 200 and values["invert_steps"] == 500
    assert values["candidates"] == 0 and values["noise_max"] == 0.55
    changed = {k for k, v in values.items() if not isinstance(v, dict)}  # dict = "left as is"
    assert changed == set(PRESETS["paper"]) and "prompt" not in changed


def test_out_of_memory_and_library_errors_become_clear_messages():
    import torch
    from ui.errors import OOM_HINT, user_error
    from interp.errors import ModelUnavailable
    assert user_error(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried ...")).message == OOM_HINT
    assert user_error(ModelUnavailable("no ControlNet")).message == "no ControlNet"
    assert "KeyError" in user_error(KeyError("x")).message


def test_export_endpoint_applies_the_export_knobs(client, url, tmp_path):
    from interp.video import read_video_frames
    two(client)
    render(client, seed=9)
    out = by_name(("video", "mp4", "gif", "zip", "project"),
                  client.predict(fps=12, pingpong=True, gif_loop=0, hold_first=2, hold_last=1,
                                 api_name="/export"))
    frames = read_video_frames(fetch(url, out["mp4"], tmp_path))
    assert len(frames) == (1 + 2) + 3 + (1 + 1) + 3  # A held 2 more, inner, B held 1, inner back


def test_two_sessions_at_once_keep_their_own_results(url):
    from ui.frame_panel import SHOWN
    one, two_ = connect(url), connect(url)
    results = {}

    def go(name, c, photos, seed):
        add(c, *photos)
        results[name] = render(c, seed=seed, frames=5)[1]
    threads = [threading.Thread(target=go, args=("one", one, ("astronaut.jpg", "chelsea.jpg"), 6)),
               threading.Thread(target=go, args=("two", two_, ("coffee.jpg", "rocket.jpg"), 7))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert results["one"]["details"]["settings"]["seed"] == 6
    assert results["two"]["details"]["settings"]["seed"] == 7
    infos = [by_name(SHOWN, c.predict(frame=2, api_name="/select_frame"))["frame_info"]
             for c in (one, two_)]
    assert results["one"]["details"]["frames"][2]["key"] != results["two"]["details"]["frames"][2]["key"]
    assert infos[0] != infos[1]  # each session's frame panel shows its own frame
