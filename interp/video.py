"""Frame-exact export: MP4 (H.264), WebM (VP9), GIF, PNG folder and ZIP; reading videos back.

Every frame lands exactly once. Videos go through imageio-ffmpeg's raw-frame pipe, never moviepy's
ImageSequenceClip, which drops and doubles frames at some rates (moviepy issues #2412, #2507).
GIFs are assembled frame by frame with PIL's GIF encoder helpers because PIL's save_all merges
identical consecutive frames into one (adding up their durations), which would swallow held frames.
"""
from __future__ import annotations

import errno
import io
import logging
import math
import os
import re
import subprocess
import tempfile
import uuid
import zipfile
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence, Union

import imageio_ffmpeg
import numpy as np
from PIL import GifImagePlugin, Image

from interp.settings import Export

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
FORMATS = ("mp4", "gif", "webm", "zip", "frames")
MP4_PARAMS = ["-crf", "18", "-preset", "medium", "-movflags", "+faststart"]
WEBM_PARAMS = ["-crf", "32", "-b:v", "0", "-row-mt", "1", "-deadline", "good", "-cpu-used", "4"]
GIF_MIN_CENTISECONDS = 2    # browsers show shorter GIF frames for 100 ms instead
_FRAME_FILE = re.compile(r"frame_\d{4,}\.png")


def sequence_frames(frames: Sequence[Image.Image], export: Export) -> list[Image.Image]:
    """Playback order: first frame held 1+hold_first times, last 1+hold_last; ping-pong adds
    the inner frames backwards, so a loop shows each turn-around frame once per pass."""
    frames = check_frames(frames)
    first, last, inner = frames[0], frames[-1], frames[1:-1]
    if len(frames) == 1:
        return [first] * (1 + export.hold_first + export.hold_last)
    order = [first] * (1 + export.hold_first) + inner + [last] * (1 + export.hold_last)
    if export.pingpong:
        order += inner[::-1]
    return order


def check_frames(frames: Sequence[Image.Image]) -> list[Image.Image]:
    """The frames as a list of RGB images; ValueError/TypeError if empty, mixed, not images."""
    if isinstance(frames, Image.Image) or not isinstance(frames, Sequence):
        raise TypeError(f"frames={type(frames).__name__} is not a sequence of PIL images")
    if len(frames) == 0:
        raise ValueError("frames is empty: expected at least one PIL image")
    out = []
    for index, frame in enumerate(frames):
        if not isinstance(frame, Image.Image):
            raise TypeError(f"frames[{index}]={type(frame).__name__} is not a PIL.Image.Image")
        if frame.size != frames[0].size:
            raise ValueError(f"frames[{index}] is {frame.size[0]}x{frame.size[1]} but frames[0] is "
                             f"{frames[0].size[0]}x{frames[0].size[1]}: all frames need one size")
        out.append(frame if frame.mode == "RGB" else frame.convert("RGB"))
    return out


def write_mp4(frames: Sequence[Image.Image], path: PathLike, export: Export) -> Path:
    """H.264 MP4 (yuv420p, crf 18, +faststart) of sequence_frames(frames, export) at export.fps."""
    return _write_ffmpeg(frames, Path(path), export, "libx264", MP4_PARAMS)


def write_webm(frames: Sequence[Image.Image], path: PathLike, export: Export) -> Path:
    """VP9 WebM (yuv420p, constant quality crf 32) of sequence_frames(frames, export)."""
    return _write_ffmpeg(frames, Path(path), export, "libvpx-vp9", WEBM_PARAMS)


def _write_ffmpeg(frames: Sequence[Image.Image], path: Path, export: Export, codec: str,
                  params: list[str]) -> Path:
    """Pipe raw RGB frames into ffmpeg at the exact (rational) frame rate; odd sizes padded.
    ffmpeg writes a temporary sibling that replaces `path` only when ffmpeg exits cleanly."""
    order = sequence_frames(frames, export)
    width, height = order[0].size
    size = f"{width + width % 2}x{height + height % 2}"
    with _atomic_path(path) as tmp:
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-f", "rawvideo",
                   "-pix_fmt", "rgb24", "-s", size, "-r", str(_fps_fraction(export.fps)),
                   "-i", "-", "-an", "-vcodec", codec, "-pix_fmt", "yuv420p", *params, str(tmp)]
        _pipe_frames(command, order, path)
    logger.info("wrote %s: %d frames at %s fps", path, len(order), export.fps)
    return path


def _pipe_frames(command: list[str], order: list[Image.Image], path: Path) -> None:
    """Run ffmpeg with the frames on stdin; OSError (ENOSPC, EACCES, ...) or FFmpegError naming
    `path` and ffmpeg's own words when it exits with an error."""
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                   stderr=log)
        try:
            for frame in order:
                process.stdin.write(_even_array(frame).data)
            process.stdin.close()
        except BrokenPipeError:
            pass   # ffmpeg stopped reading: its exit status and log say why
        except BaseException:
            process.kill()
            raise
        finally:
            code = process.wait()
        log.seek(0)
        text = log.read()[-2000:].decode(errors="replace").strip()
    if code != 0:
        raise _ffmpeg_error(code, text, path)


class FFmpegError(RuntimeError):
    """ffmpeg could not write a video; the message names the file and quotes ffmpeg."""


_ERRNO_WORDS = (("No space left on device", errno.ENOSPC), ("Permission denied", errno.EACCES),
                ("Read-only file system", errno.EROFS), ("Disk quota exceeded", errno.EDQUOT))


def _ffmpeg_error(code: int, log_text: str, path: Path) -> Exception:
    last = log_text.splitlines()[-1] if log_text else f"exit status {code}"
    for words, number in _ERRNO_WORDS:
        if words in log_text:
            return OSError(number, f"{os.strerror(number)} (ffmpeg: {last})", str(path))
    return FFmpegError(f"ffmpeg could not write {path} (exit status {code}): {last}")


def _fps_fraction(fps: float) -> Fraction:
    """The frame rate as a fraction (29.97 -> 2997/100) so ffmpeg does not round it."""
    return Fraction(fps).limit_denominator(10_000)


def _even_array(frame: Image.Image) -> np.ndarray:
    """H x W x 3 uint8, contiguous, with the last row/column repeated where a side is odd."""
    array = np.asarray(frame, dtype=np.uint8)
    pad = ((0, array.shape[0] % 2), (0, array.shape[1] % 2), (0, 0))
    if any(p[1] for p in pad):
        array = np.pad(array, pad, mode="edge")
    return np.ascontiguousarray(array)


def gif_durations(count: int, fps: float) -> list[int]:
    """Per-frame GIF delays in ms, multiples of 10 (GIF stores centiseconds), whose running sum
    stays within 5 ms of the exact time i * 1000 / fps, so long GIFs keep the right total."""
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count={count!r} is not allowed: expected a positive integer")
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps={fps!r} is not allowed: expected a positive number")
    ticks = [math.floor(i * 100 / fps + 0.5) for i in range(count + 1)]
    return [10 * (b - a) for a, b in zip(ticks, ticks[1:])]


def write_gif(frames: Sequence[Image.Image], path: PathLike, export: Export) -> Path:
    """Looping GIF of sequence_frames(frames, export): one GIF frame per frame, even if repeated."""
    order = sequence_frames(frames, export)
    durations = gif_durations(len(order), export.fps)
    if min(durations) < 10 * GIF_MIN_CENTISECONDS:
        logger.warning("fps=%s gives GIF frames shorter than %d ms, which browsers slow down",
                       export.fps, 10 * GIF_MIN_CENTISECONDS)
    path = Path(path)
    palettes: dict[int, Image.Image] = {}
    with _atomic_path(path) as tmp, tmp.open("wb") as handle:
        first = _quantize(order[0], palettes)
        header, _ = GifImagePlugin.getheader(first.copy(), info={"loop": export.gif_loop})
        handle.writelines(header)
        for frame, duration in zip(order, durations):
            data = GifImagePlugin.getdata(_quantize(frame, palettes), duration=duration,
                                          disposal=1, include_color_table=True)
            handle.writelines(data)
        handle.write(b";")  # GIF trailer
    logger.info("wrote %s: %d frames, loop=%d", path, len(order), export.gif_loop)
    return path


def _quantize(frame: Image.Image, cache: dict[int, Image.Image]) -> Image.Image:
    """The frame as a 256-colour palette image (its own local palette), computed once per object."""
    key = id(frame)
    if key not in cache:
        cache[key] = frame.quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                    dither=Image.Dither.FLOYDSTEINBERG)
    return cache[key]


def frame_names(count: int) -> list[str]:
    """frame_0000.png, frame_0001.png, ... (more digits past 10 000 frames)."""
    digits = max(4, len(str(count - 1)))
    return [f"frame_{i:0{digits}d}.png" for i in range(count)]


def write_frames_dir(frames: Sequence[Image.Image], directory: PathLike) -> list[Path]:
    """The frames as PNG files in directory. Earlier frame_*.png files there are replaced only once
    every new frame is written, so a failure leaves the folder as it was."""
    frames = check_frames(frames)
    directory = output_dir(directory)
    _remove_orphans(directory)
    paths = [directory / name for name in frame_names(len(frames))]
    staged: list[Path] = []
    try:
        for frame, path in zip(frames, paths):
            staged.append(path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}"
                                         f".partial.png"))
            frame.save(staged[-1], format="PNG")
    except OSError as exc:
        for tmp in staged:
            tmp.unlink(missing_ok=True)
        raise exc if exc.filename else _named(exc, directory) from None
    for stale in directory.iterdir():
        if _FRAME_FILE.fullmatch(stale.name) and stale.is_file() and stale not in paths:
            stale.unlink()
    for tmp, path in zip(staged, paths):
        os.replace(tmp, path)
    return paths


def write_zip(frames: Sequence[Image.Image], path: PathLike) -> Path:
    """A ZIP of the frames as frame_0000.png, ... (stored: PNG is already compressed)."""
    frames = check_frames(frames)
    path = Path(path)
    with _atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        for frame, name in zip(frames, frame_names(len(frames))):
            buffer = io.BytesIO()
            frame.save(buffer, format="PNG")
            archive.writestr(name, buffer.getvalue())
    return path


def export_all(frames: Sequence[Image.Image], out_dir: PathLike, export: Export,
               stem: str = "sequence", formats: Sequence[str] = ("mp4", "gif", "zip", "frames"),
               ) -> dict[str, Path]:
    """Write the requested formats into out_dir as <stem>.mp4/.gif/.webm/.zip and <stem>_frames/."""
    if not isinstance(stem, str) or not re.fullmatch(r"[\w][\w.-]*", stem):
        raise ValueError(f"stem={stem!r} is not allowed: expected a file name without folders")
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise ValueError(f"formats={list(formats)!r} is not allowed: choose from {FORMATS}")
    frames = check_frames(frames)
    out_dir = Path(out_dir)
    writers = {
        "mp4": lambda: write_mp4(frames, out_dir / f"{stem}.mp4", export),
        "webm": lambda: write_webm(frames, out_dir / f"{stem}.webm", export),
        "gif": lambda: write_gif(frames, out_dir / f"{stem}.gif", export),
        "zip": lambda: write_zip(frames, out_dir / f"{stem}.zip"),
        "frames": lambda: write_frames_dir(frames, out_dir / f"{stem}_frames")[0].parent,
    }
    return {name: writers[name]() for name in FORMATS if name in formats}


def read_video_frames(path: PathLike) -> list[np.ndarray]:
    """Every decoded frame of a video as H x W x 3 uint8, in order, none dropped or repeated."""
    width, height = video_metadata(path)["size"]
    raw = _ffmpeg("-noautorotate", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24",
                  "-fps_mode", "passthrough", "-").stdout
    frame_bytes = width * height * 3
    if len(raw) % frame_bytes:
        raise RuntimeError(f"{path}: decoded {len(raw)} bytes, not whole {width}x{height} frames")
    frames = np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)
    return [frame.copy() for frame in frames]


def video_metadata(path: PathLike) -> dict:
    """The first video stream as ffmpeg reports it: codec, pix_fmt, size (w, h), fps, duration (s)."""
    path = _existing(path)
    log = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                         capture_output=True, text=True, errors="replace").stderr
    stream = re.search(r"Stream #\d+:\d+.*?: Video: (\w+)[^,]*, (\w+).*?, (\d+)x(\d+)\b.*", log)
    fps = re.search(r"([\d.]+) fps", stream.group(0)) if stream else None
    duration = re.search(r"Duration: (\d+):(\d+):([\d.]+)", log)
    if not (stream and fps and duration):
        raise ValueError(f"path={str(path)!r} is not a video ffmpeg can read:\n{log[-500:]}")
    hours, minutes, seconds = duration.groups()
    return {"codec": stream.group(1), "pix_fmt": stream.group(2),
            "size": (int(stream.group(3)), int(stream.group(4))), "fps": float(fps.group(1)),
            "duration": int(hours) * 3600 + int(minutes) * 60 + float(seconds)}


def _ffmpeg(*args: str) -> subprocess.CompletedProcess:
    """Run the ffmpeg that imageio-ffmpeg ships; RuntimeError with its log if it fails."""
    done = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", *args],
                          capture_output=True)
    if done.returncode:
        log = done.stderr.decode(errors="replace")[-1000:]
        raise RuntimeError(f"ffmpeg {' '.join(args)} failed ({done.returncode}):\n{log}")
    return done


def _existing(path: PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path={str(path)!r} is not an existing file")
    return path


def output_dir(directory: PathLike) -> Path:
    """The folder, created if needed and checked writable by creating a file in it; OSError
    naming the folder and the cause otherwise (a file in the way, no permission, full disk)."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if not directory.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "exists and is not a folder")
        handle, probe = tempfile.mkstemp(prefix=".interp-probe-", dir=directory)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise _named(exc, directory) from None
    return directory


def _named(exc: OSError, path: Path) -> OSError:
    """The same kind of OSError with `path` as its file name and a plain cause."""
    cause = {errno.ENOTDIR: "a file is in the way (not a folder)",
             errno.EEXIST: "a file is in the way (not a folder)"}.get(
        exc.errno, exc.strerror or str(exc))
    return type(exc)(exc.errno, cause, str(path)) if exc.errno else OSError(cause, str(path))


@contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    """A temporary sibling (same suffix) that replaces `path` only when the block succeeds;
    on any failure the temporary file is removed and `path` keeps what it held."""
    _remove_orphans(output_dir(path.parent))
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise exc if exc.filename else _named(exc, path) from None
    finally:
        tmp.unlink(missing_ok=True)


_PARTIAL = re.compile(r"\..+\.(\d+)-[0-9a-f]{8}\.partial(\.\w+)?")


def _remove_orphans(folder: Path) -> None:
    """Temporary files in `folder` left by writers that no longer run (killed mid-write)."""
    for entry in folder.iterdir():
        match = _PARTIAL.fullmatch(entry.name)
        if match and not pid_alive(int(match.group(1))):
            entry.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs (one of another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
