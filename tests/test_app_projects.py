"""Project files and even pacing in the studio (gradio_client, tiny model at 64 px): a project
restores the whole timeline in a fresh session and its render reuses every cached frame; even
pacing moves frames across the timeline where the measured distances say."""
import itertools
import re
import zipfile

import numpy as np
import pytest

from studio import add, by_name, connect, fetch, render, studio_fixture
from interp.settings import Settings

TINY = Settings(frames=5, num_inference_steps=6, size=64, candidates=2, prompt="a photo",
                rank_positive="a photo")


url = studio_fixture(TINY)


def load(url, project_file) -> tuple:
    """A fresh session with the project loaded: (client, its outputs by name)."""
    from gradio_client import handle_file
    from ui.keyframes import BOARD
    from ui.knobs import STUDIO_FIELDS
    from interp.forms import EXPORT_FIELDS
    fresh = connect(url)
    out = by_name((*BOARD, *STUDIO_FIELDS, *EXPORT_FIELDS, "status"),
                  fresh.predict(file=handle_file(str(project_file)), api_name="/load_project"))
    return fresh, out


def test_a_loaded_project_restores_the_timeline_and_reuses_cached_frames(url, tmp_path):
    from ui.handlers import RENDER
    from ui.knobs import STUDIO_FIELDS
    client = connect(url)
    add(client, "astronaut.jpg", "chelsea.jpg", "coffee.jpg")
    client.predict(keyframe=2, prompt="a cup", api_name="/edit_keyframe")
    render(client, seed=5, prompt="a cat", frames=5)
    pinned = by_name(RENDER, client.predict(frame=6, candidate=1, api_name="/use_candidate"))
    fresh, loaded = load(url, fetch(url, pinned["project"], tmp_path))
    assert [g["caption"] for g in loaded["keyframes"]] == ["A", "B", "C · a cup"]
    assert loaded["seed"] == 5 and loaded["prompt"] == "a cat"
    assert "3 keyframes, 1 frame edit" in loaded["status"]
    job = fresh.submit(**{f: loaded[f] for f in STUDIO_FIELDS}, loop=loaded["loop"],
                       api_name="/interpolate")
    result = by_name(RENDER, job.result())
    assert "regenerated 0, reused 6" in result["status"]
    assert result["strip"][6]["caption"] == "6 · pinned"


def test_a_four_keyframe_loop_round_trips_with_every_frame_once(url, tmp_path):
    from ui.handlers import RENDER
    from ui.knobs import STUDIO_FIELDS
    from interp.video import read_video_frames
    client = connect(url)
    add(client, "astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg")
    _, out = render(client, loop=True, seed=6, frames=5)
    assert len(out["strip"]) == 4 * 5 - 4                        # sum(n) - s with a loop
    frames = read_video_frames(fetch(url, out["mp4"], tmp_path / "first"))
    assert len(frames) == 16
    fresh, loaded = load(url, fetch(url, out["project"], tmp_path / "project"))
    assert loaded["loop"] is True and len(loaded["keyframes"]) == 4
    again = by_name(RENDER, fresh.submit(**{f: loaded[f] for f in STUDIO_FIELDS}, loop=True,
                                         api_name="/interpolate").result())
    assert "16 frames · regenerated 0, reused 12" in again["status"]


def _measured(url, out, tmp_path) -> tuple:
    """(positions, adjacent Lab distances) of each segment of a finished render's frames."""
    from PIL import Image
    from interp import metrics
    with zipfile.ZipFile(fetch(url, out["zip"], tmp_path)) as archive:
        images = [Image.open(archive.open(n)).convert("RGB") for n in sorted(archive.namelist())]
    frames = out["details"]["frames"]
    segments = []
    for s in range(len(out["details"]["segments"])):
        idx = [f["index"] for f in frames if f["segment"] == s]
        idx = ([idx[0] - 1] if s > 0 else []) + idx        # the keyframe it starts from
        positions = [0.0] + [frames[i]["position"] for i in idx[1:]]
        d = metrics.adjacent_distances([images[i] for i in idx], metrics.lab_distance)
        segments.append((positions, d))
    return segments


def _even(positions, distances, n) -> np.ndarray:
    """n positions where the cumulative distance is evenly split (numpy's interpolation)."""
    cumulative = np.concatenate([[0.0], np.cumsum(distances)])
    return np.interp(np.linspace(0.0, cumulative[-1], n), cumulative, positions)


def test_even_pacing_across_the_timeline(url, tmp_path):
    from ui.handlers import RENDER
    client = connect(url)
    add(client, "astronaut.jpg", "chelsea.jpg", "coffee.jpg")
    _, first = render(client, seed=7, frames=9, candidates=1)
    measured = _measured(url, first, tmp_path / "first")
    kept = by_name(RENDER, client.predict(keep_counts=True, api_name="/even_pacing"))   # keep the counts
    for s, (positions, d) in enumerate(measured):
        got = [f["position"] for f in kept["details"]["frames"] if f["segment"] == s]
        assert got[-len(positions) + 1:] == pytest.approx(_even(positions, d, 9)[1:].tolist(),
                                                          abs=1e-6)
    assert re.search(r"pacing: largest/smallest step [\d.]+ -> [\d.]+", kept["status"])
    moved = by_name(RENDER, client.predict(keep_counts=False, api_name="/even_pacing"))
    counts = [s["frames"] for s in moved["details"]["segments"]]
    lengths = [sum(d) for _, d in _measured(url, kept, tmp_path / "kept")]
    # the budget (16 intervals) split so the longest step is as short as any split makes it
    best = min(max(x / c for x, c in zip(lengths, split))
               for split in itertools.product(range(2, 15), repeat=2) if sum(split) == 16)
    assert sum(c - 1 for c in counts) == 16
    assert max(x / (c - 1) for x, c in zip(lengths, counts)) == pytest.approx(best)
    assert len(moved["strip"]) == 17
