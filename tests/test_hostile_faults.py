"""Faults while exporting (issue 11, item 4): ffmpeg failing on a full or read-only output leaves no
partial or broken file and says why; a SIGKILL during an export leaves the previous export intact."""
import errno
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from PIL import Image

from helpers import read_only_mount
from interp import video
from interp.settings import Export

ROOT = Path(__file__).resolve().parents[1]
FRAMES = [Image.new("RGB", (64, 48), (40 * i, 90, 200 - 40 * i)) for i in range(5)]
FIXED = uuid.UUID("12345678" + "0" * 24)


def partials(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)


@pytest.fixture
def full_disk(tmp_path, monkeypatch):
    """The next temporary file the writers create in tmp_path is /dev/full (ENOSPC on write)."""
    monkeypatch.setattr(video.uuid, "uuid4", lambda: FIXED)

    def arm(target: Path) -> None:
        tmp = target.with_name(f".{target.stem}.{os.getpid()}-{FIXED.hex[:8]}.partial"
                               f"{target.suffix}")
        tmp.symlink_to("/dev/full")
    return arm


@pytest.mark.parametrize("kind", ["mp4", "gif", "zip"])
def test_a_full_disk_leaves_the_old_file_and_no_partial_one(tmp_path, full_disk, kind):
    target = tmp_path / f"sequence.{kind}"
    writers = {"mp4": lambda: video.write_mp4(FRAMES, target, Export()),
               "gif": lambda: video.write_gif(FRAMES, target, Export()),
               "zip": lambda: video.write_zip(FRAMES, target)}
    writers[kind]()
    before = target.read_bytes()
    full_disk(target)
    with pytest.raises(OSError) as caught:
        writers[kind]()
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    assert "No space left on device" in str(caught.value)
    assert target.read_bytes() == before and partials(tmp_path) == []
    if kind == "mp4":
        assert len(video.read_video_frames(target)) == len(FRAMES)


def test_ffmpeg_failing_for_another_reason_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(video, "MP4_PARAMS", ["-crf", "not-a-number"])
    target = tmp_path / "sequence.mp4"
    with pytest.raises(video.FFmpegError, match=f"ffmpeg could not write {target}"):
        video.write_mp4(FRAMES, target, Export())
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_output_folder_is_named_with_its_cause(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(OSError) as caught:
        video.export_all(FRAMES, blocker / "out", Export(), formats=("mp4",))
    assert caught.value.filename == str(blocker / "out")
    assert "a file is in the way" in str(caught.value)


def test_a_read_only_output_folder_is_named_with_its_cause(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    with read_only_mount(folder) as mounted:
        if not mounted:
            pytest.skip("cannot mount a read-only tmpfs here (needs root with mount rights)")
        with pytest.raises(OSError) as caught:
            video.write_mp4(FRAMES, folder / "sequence.mp4", Export())
        assert caught.value.errno == errno.EROFS and caught.value.filename == str(folder)
        assert "Read-only file system" in str(caught.value) and list(folder.iterdir()) == []


def test_a_frames_folder_is_replaced_only_when_every_frame_is_written(tmp_path, monkeypatch):
    folder = tmp_path / "frames"
    video.write_frames_dir(FRAMES, folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    saved = []

    def failing_save(self, fp, *args, **kwargs):
        saved.append(fp)
        if len(saved) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, fp, *args, **kwargs)
    original = Image.Image.save
    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="No space left on device"):
        video.write_frames_dir(FRAMES[:4], folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_temporary_files_of_killed_writers_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tmp_path / f".sequence.{dead.pid}-abcdef12.partial.mp4"
    live = tmp_path / f".sequence.{os.getppid()}-abcdef12.partial.mp4"
    frame = tmp_path / "frames" / f".frame_0003.{dead.pid}-0badc0de.partial.png"
    frame.parent.mkdir()
    for path in (orphan, live, frame):
        path.write_bytes(b"half a file")
    video.write_mp4(FRAMES, tmp_path / "sequence.mp4", Export())
    video.write_frames_dir(FRAMES, tmp_path / "frames")
    assert not orphan.exists() and live.exists() and not frame.exists()


def _render(argv: list) -> None:
    """A forked child: the CLI render, then exit (the test SIGKILLs it during its export)."""
    from interp.cli.main import main
    os._exit(main(argv))


def test_sigkill_during_an_export_leaves_the_previous_export_intact(tmp_path):
    import multiprocessing
    from interp.cli.main import main
    out, store = tmp_path / "run", tmp_path / "store"
    # 256 px frames: the second run's MP4 and GIF of 305 frames take ~0.3 s and ~0.8 s to write on
    # this machine, so a kill within milliseconds of the first temporary file lands mid-write
    argv = ["render", str(ROOT / "assets/examples/astronaut.jpg"),
            str(ROOT / "assets/examples/chelsea.jpg"), "--model", "tiny", "--size", "256",
            "--steps", "4", "--candidates", "1", "--frames", "5", "--invert-steps", "0",
            "--store", str(store), "--out", str(out)]
    assert main(argv) == 0
    first = {name: (out / name).read_bytes() for name in ("sequence.mp4", "sequence.gif",
                                                         "sequence.zip")}
    assert partials(out) == []
    # a forked copy of this process reuses every frame from the store, then writes a long
    # video: it is killed as soon as its temporary file appears
    second = multiprocessing.get_context("fork").Process(
        target=_render, args=(argv + ["--hold-last", "300"],))
    second.start()
    deadline = time.time() + 120
    seen = []
    while not seen and second.is_alive() and time.time() < deadline:
        seen = partials(out)
        if not seen:
            time.sleep(0.002)
    os.kill(second.pid, signal.SIGKILL)
    second.join()
    assert seen, "no temporary export file appeared before the kill (deadline or an early exit)"
    assert second.exitcode == -signal.SIGKILL, "the render finished before it could be killed"
    # the killed writer never renamed its temporary file: the kill landed while it was writing one
    left = partials(out)
    assert left and all(name.startswith(".sequence.") and f".{second.pid}-" in name for name in left), left
    for name, data in first.items():
        assert (out / name).read_bytes() == data
    assert len(video.read_video_frames(out / "sequence.mp4")) == 5
    assert json.loads((out / "summary.json").read_text())["settings"]["frames"] == 5
