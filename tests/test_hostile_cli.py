"""The CLI under hostile input (issue 11): bad outputs are found before any model work, every
failure is one line `error: ...` without a traceback, and bounds name their variables."""
import json
import os
from pathlib import Path

import pytest

from helpers import read_only_mount
from interp.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
A = str(ROOT / "assets/examples/astronaut.jpg")
B = str(ROOT / "assets/examples/chelsea.jpg")
TINY = ["--model", "tiny", "--size", "64", "--steps", "4", "--candidates", "1", "--frames", "3",
        "--store", "none", "--invert-steps", "0"]


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if a command gets as far as loading a model."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the inputs were checked")
    monkeypatch.setattr("interp.models.startup.resolve_and_load", refuse)


def error_line(capsys) -> str:
    """The command's stderr, which must be exactly one line starting 'error: '."""
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


@pytest.fixture
def read_only(tmp_path):
    """A folder nobody may write to, and the cause its writes fail with: a read-only tmpfs as root,
    else a mode-555 folder (root could write to that one)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder, "Permission denied"
        folder.chmod(0o755)
        return
    with read_only_mount(folder) as mounted:
        if not mounted:
            pytest.skip("cannot make a read-only folder here (root without mount rights)")
        yield folder, "Read-only file system"


def test_files_in_the_way_fail_before_any_model_work(tmp_path, capsys, no_model):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    cases = [(["--out", str(a_file)], f"{a_file}: a file is in the way"),
             (["--out", str(a_file / "run")], f"{a_file / 'run'}: a file is in the way"),
             (["--out", str(tmp_path / "ok"), "--store", str(a_file)], f"{a_file}: a file is in")]
    for flags, words in cases:
        assert main(["render", A, B, *TINY, *flags]) == 2
        assert words in error_line(capsys)


def test_a_read_only_output_fails_before_any_model_work(tmp_path, capsys, no_model, read_only):
    folder, cause = read_only
    for flags in (["--out", str(folder / "run")],
                  ["--out", str(tmp_path / "ok"), "--store", str(folder / "store")]):
        assert main(["render", A, B, *TINY, *flags]) == 2
        assert f"{flags[-1]}: {cause}" in error_line(capsys)


def test_missing_and_malformed_files_are_named(tmp_path, capsys, no_model):
    out = ["--out", str(tmp_path / "run")]
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    broken = tmp_path / "broken.json"
    broken.write_text("{nope")
    cases = [(["--edits", str(tmp_path / "none.json")], "none.json: edits file not found"),
             (["--edits", str(listed)], "holds a JSON object such as"),
             (["--edits", str(broken)], "broken.json: edits file is not valid JSON"),
             (["--edit", f"1:pose={tmp_path / 'gone.json'}"], "gone.json: pose file not found"),
             (["--edit", "1:strength=abc"], "strength='abc' is not a number"),
             (["--store-max-gb", "nan"], "--store-max-gb nan is not allowed"),
             (["--pose-a", str(tmp_path / "pa.json")], "pa.json: pose file not found")]
    for flags, words in cases:
        assert main(["render", A, B, *TINY, *out, *flags]) == 2
        assert words in error_line(capsys)


def test_pose_render_checks_its_files_and_canvas(tmp_path, capsys):
    pose = tmp_path / "pose.json"
    pose.write_text(json.dumps({"canvas_width": 200_000, "canvas_height": 200_000, "people": []}))
    cases = [(["--render", str(tmp_path / "no.json"), "--out", str(tmp_path / "s.png")],
              "no.json: pose file not found"),
             (["--render", str(pose), "--out", str(tmp_path / "skeleton")],
              "give a file name ending in .png"),
             (["--render", str(pose), "--out", str(tmp_path / "s.png")],
              "canvas_width=200000 is over this server's limit of 4096 (set by "
              "INTERP_MAX_POSE_CANVAS)"),
             ([A, "--size", "100000"], "--size 100000 is not allowed")]
    for flags, words in cases:
        assert main(["pose", *flags]) == 2
        assert words in error_line(capsys)
    assert not (tmp_path / "s.png").exists()


@pytest.mark.parametrize("flags, words", [
    (["--hold-last", "1000000"], "hold_last=1000000 is not allowed: expected a whole number from 0 "
                                 "to 300; 300 is this server's limit, set by INTERP_MAX_HOLD_FRAMES"),
    (["--frames", "200"], "frames=200 is not allowed"),
    (["--fps", "1000"], "INTERP_MAX_FPS"),
    (["--curve", "custom", "--curve-points", ",".join(["0.5:0.5"] * 200)], "INTERP_MAX_CURVE_POINTS"),
])
def test_cli_bounds_name_their_variable(tmp_path, capsys, no_model, flags, words):
    assert main(["render", A, B, *TINY, "--out", str(tmp_path / "r"), *flags]) == 2
    assert words in error_line(capsys)


def test_a_folder_as_an_image_is_named(tmp_path, capsys):
    assert main(["render", str(tmp_path), B, *TINY, "--out", str(tmp_path / "r")]) == 2
    assert "is a folder, not an image file" in error_line(capsys)


def test_invalid_limit_variables_stop_every_command(monkeypatch, capsys):
    for value, words in (("abc", "is not a number"), ("0", "must be a whole number >= 3"),
                         ("5000", "above the built-in ceiling 129")):
        monkeypatch.setenv("INTERP_MAX_FRAMES", value)
        assert main(["plan", "--frames", "5"]) == 2
        err = error_line(capsys)
        assert err.startswith("error: INTERP_MAX_FRAMES=") and words in err


def test_a_corrupt_store_entry_is_recomputed(tmp_path, capsys, caplog):
    store = tmp_path / "store"
    args = ["render", A, B, *TINY, "--store", str(store)]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    key = json.loads((tmp_path / "one" / "summary.json").read_text())["frames"][1]["key"]
    (store / key[:2] / key / "image_000.png").write_bytes(b"\x89PNG garbage")
    assert main([*args, "--out", str(tmp_path / "two")]) == 0
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["generated"] == [1]
    assert any(key in r.getMessage() for r in caplog.records if r.name == "interp.store")
