"""interp.video: exact frame counts, frame order and timing of every export format."""
from __future__ import annotations

import io
import itertools
import subprocess
import zipfile
from fractions import Fraction

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image, ImageSequence

from interp.settings import Export
from interp.video import (
    export_all,
    gif_durations,
    read_video_frames,
    sequence_frames,
    video_metadata,
    write_frames_dir,
    write_gif,
    write_mp4,
    write_webm,
    write_zip,
)

# 64 colours 85 apart on every channel: frame i is solid COLOURS[i], easy to tell apart after H.264
COLOURS = np.array(list(itertools.product((0, 85, 170, 255), repeat=3)))


def solid_frames(count: int, size: tuple = (64, 64)) -> list[Image.Image]:
    return [Image.new("RGB", size, tuple(int(v) for v in COLOURS[i])) for i in range(count)]


def indices(frames) -> list[int]:
    """The index of the nearest test colour of each frame's mean colour."""
    means = [np.asarray(f, dtype=float).reshape(-1, 3).mean(0) for f in frames]
    return [int(np.argmin(((COLOURS - m) ** 2).sum(1))) for m in means]


def read_at_constant_rate(path, fps: float) -> list[int]:
    """Frames resampled by ffmpeg to a constant fps: drops/doubles appear if timestamps are off."""
    rate = str(Fraction(fps).limit_denominator(10_000))
    width, height = video_metadata(path)["size"]
    raw = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f",
                          "rawvideo", "-pix_fmt", "rgb24", "-fps_mode", "cfr", "-r", rate, "-"],
                         capture_output=True, check=True).stdout
    return indices(np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3))


@pytest.mark.parametrize("count", [7, 17, 30])
@pytest.mark.parametrize("fps", [10, 24, 29.97, 7.5])
def test_mp4_has_every_frame_once_in_order(count, fps, tmp_path):
    path = write_mp4(solid_frames(count), tmp_path / "v.mp4", Export(fps=fps))
    assert indices(read_video_frames(path)) == list(range(count))
    assert read_at_constant_rate(path, fps) == list(range(count))
    meta = video_metadata(path)
    assert meta["fps"] == pytest.approx(fps, abs=0.005)
    assert meta["duration"] == pytest.approx(count / fps, abs=0.011)


def test_mp4_is_h264_yuv420p_faststart_and_pads_odd_sizes(tmp_path):
    path = write_mp4(solid_frames(5, (63, 33)), tmp_path / "odd.mp4", Export(fps=10))
    meta = video_metadata(path)
    assert meta["codec"].startswith("h264") and meta["pix_fmt"].startswith("yuv420p")
    assert meta["size"] == (64, 34)
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")   # +faststart: index before the media
    frames = read_video_frames(path)
    assert indices(frames) == list(range(5))
    assert np.abs(frames[2][-1, -1].astype(int) - COLOURS[2]).max() < 12   # padding repeats edge


def test_mp4_applies_holds_and_pingpong(tmp_path):
    export = Export(fps=24, pingpong=True, hold_first=2, hold_last=1)
    path = write_mp4(solid_frames(4), tmp_path / "p.mp4", export)
    assert indices(read_video_frames(path)) == [0, 0, 0, 1, 2, 3, 3, 2, 1]


def test_webm_has_every_frame(tmp_path):
    path = write_webm(solid_frames(9), tmp_path / "v.webm", Export(fps=12.5, hold_last=2))
    assert indices(read_video_frames(path)) == list(range(9)) + [8, 8]
    assert video_metadata(path)["codec"].startswith("vp9")


def test_sequence_frames_counts():
    a, b, c, d = solid_frames(4)
    assert sequence_frames([a, b, c, d], Export()) == [a, b, c, d]
    assert sequence_frames([a, b, c, d], Export(pingpong=True)) == [a, b, c, d, c, b]
    assert sequence_frames([a, b, c, d], Export(hold_first=2, hold_last=1)) == [a, a, a, b, c, d, d]
    assert sequence_frames([a, b], Export(pingpong=True)) == [a, b]
    assert sequence_frames([a], Export(pingpong=True, hold_first=1, hold_last=2)) == [a] * 4


@pytest.mark.parametrize("count", [2, 3, 8])
@pytest.mark.parametrize("hold_first, hold_last", [(0, 0), (1, 3)])
def test_pingpong_loops_seamlessly(count, hold_first, hold_last):
    frames = solid_frames(count)
    order = sequence_frames(frames, Export(pingpong=True, hold_first=hold_first,
                                           hold_last=hold_last))
    assert len(order) == 2 * count - 2 + hold_first + hold_last
    runs = [(k, len(list(g))) for k, g in itertools.groupby(indices(order * 2))]
    # over two passes every frame shows in single steps except the held ends
    assert all(n == 1 for k, n in runs if k not in (0, count - 1))
    assert (count - 1, 1 + hold_last) in runs and (0, 1 + hold_first) in runs[1:]


@pytest.mark.parametrize("bad, error", [([], ValueError), (None, TypeError),
                                        ([Image.new("RGB", (8, 8)), Image.new("RGB", (8, 9))],
                                         ValueError), ([np.zeros((8, 8, 3))], TypeError)])
def test_bad_frames_are_rejected(bad, error, tmp_path):
    with pytest.raises(error, match="frames"):
        sequence_frames(bad, Export())
    with pytest.raises(error, match="frames"):
        write_zip(bad, tmp_path / "x.zip")
    assert not list(tmp_path.iterdir())


def gif_frames(path) -> tuple[list[int], list[int], dict]:
    """Colour indices, durations (ms) and header info of a GIF as PIL reads it."""
    with Image.open(path) as image:
        frames = [(f.convert("RGB"), f.info["duration"]) for f in ImageSequence.Iterator(image)]
        return indices([f for f, _ in frames]), [d for _, d in frames], dict(image.info)


def gif_length(path) -> int:
    with Image.open(path) as image:
        return image.n_frames


@pytest.mark.parametrize("fps", [10, 24, 7.5])
def test_gif_keeps_held_frames_and_timing(fps, tmp_path):
    export = Export(fps=fps, hold_first=2, hold_last=3, pingpong=True, gif_loop=0)
    path = write_gif(solid_frames(5), tmp_path / "a.gif", export)
    order, durations, info = gif_frames(path)
    assert order == [0, 0, 0, 1, 2, 3, 4, 4, 4, 4, 3, 2, 1]
    assert info["loop"] == 0
    assert all(d % 10 == 0 and d > 0 for d in durations)
    elapsed = np.cumsum(durations)
    exact = np.arange(1, len(durations) + 1) * 1000 / fps
    assert np.abs(elapsed - exact).max() <= 5   # no drift: total time right at every frame


def test_gif_colours_and_loop_count(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    frames = [Image.fromarray(noise), Image.fromarray(255 - noise)]
    path = write_gif(frames, tmp_path / "b.gif", Export(fps=10, gif_loop=3))
    with Image.open(path) as image:
        assert image.info["loop"] == 3 and image.n_frames == 2 and image.size == (40, 48)
        decoded = [np.asarray(f.convert("RGB"), int) for f in ImageSequence.Iterator(image)]
    for frame, source in zip(decoded, frames):
        assert np.abs(frame - np.asarray(source, int)).mean() < 40   # quantised, same frame
    # ffmpeg (another decoder) sees the same frames
    assert len(read_video_frames(path)) == 2


def test_pil_save_all_would_merge_held_frames(tmp_path):
    """The PIL behaviour write_gif works around: identical neighbours become one frame."""
    frames = solid_frames(2)
    frames[0].save(tmp_path / "pil.gif", save_all=True, append_images=[frames[0], frames[1]],
                   duration=100, loop=0)
    assert gif_length(tmp_path / "pil.gif") == 2


@pytest.mark.parametrize("count, fps, expected", [
    (3, 10, [100, 100, 100]),
    (3, 24, [40, 40, 50]),       # 41.67 ms: 4.17, 8.33, 12.5 cs -> 4, 8, 13 cs
    (4, 7.5, [130, 140, 130, 130]),
    (2, 30, [30, 40]),
])
def test_gif_durations_by_hand(count, fps, expected):
    assert gif_durations(count, fps) == expected


def test_frames_dir_and_zip(tmp_path):
    frames = solid_frames(12, (16, 8))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "frame_0099.png").write_bytes(b"stale")
    (tmp_path / "out" / "notes.txt").write_text("keep")
    paths = write_frames_dir(frames, tmp_path / "out")
    assert [p.name for p in paths] == [f"frame_{i:04d}.png" for i in range(12)]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [p.name for p in paths] + ["notes.txt"])
    assert indices([load_png(p.read_bytes()) for p in paths]) == list(range(12))
    with zipfile.ZipFile(write_zip(frames, tmp_path / "f.zip")) as archive:
        assert archive.namelist() == [p.name for p in paths]
        pngs = [archive.read(name) for name in archive.namelist()]
    assert indices([load_png(data) for data in pngs]) == list(range(12))


def load_png(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return image.convert("RGB")


def test_export_all(tmp_path):
    export = Export(fps=10, hold_last=1)
    out = export_all(solid_frames(3), tmp_path / "exp", export, stem="walk")
    assert set(out) == {"mp4", "gif", "zip", "frames"}
    assert out["mp4"].name == "walk.mp4" and out["frames"].name == "walk_frames"
    assert indices(read_video_frames(out["mp4"])) == [0, 1, 2, 2]
    assert gif_length(out["gif"]) == 4
    with zipfile.ZipFile(out["zip"]) as archive:
        assert len(archive.namelist()) == 3   # the frames themselves, no holds
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == [
        "walk.gif", "walk.mp4", "walk.zip", "walk_frames"]   # no temporary files left
    with pytest.raises(ValueError, match="stem"):
        export_all(solid_frames(3), tmp_path, export, stem="../x")
    with pytest.raises(ValueError, match="formats"):
        export_all(solid_frames(3), tmp_path, export, formats=("avi",))


def test_read_missing_video(tmp_path):
    with pytest.raises(FileNotFoundError, match="path"):
        read_video_frames(tmp_path / "none.mp4")
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(ValueError, match="not a video"):
        video_metadata(tmp_path / "text.mp4")
