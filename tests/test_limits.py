"""interp.limits: one frozen set of bounds, lowered by INTERP_MAX_* variables and never raised; the
library, the studio's knobs, its presets and the README agree with it."""
import argparse
import dataclasses
import re
from pathlib import Path

import pytest

from interp import limits
from interp.settings import Export, FrameEdit, Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_bounds_are_frozen_and_lowered_by_their_variables(monkeypatch):
    built_in = limits.current()
    with pytest.raises(dataclasses.FrozenInstanceError):
        built_in.frames = 5
    monkeypatch.setenv("INTERP_MAX_FRAMES", "33")
    monkeypatch.setenv("INTERP_MAX_SIZE", "512")
    lowered = limits.current()
    assert (lowered.frames, lowered.size, lowered.steps) == (33, 512, built_in.steps)
    Settings(frames=33, size=512)
    for change in (dict(frames=34), dict(size=576)):
        with pytest.raises(ValueError, match="this server's limit, set by INTERP_MAX_"):
            Settings(**change)


@pytest.mark.parametrize("variable, value, words", [
    ("INTERP_MAX_FRAMES", "lots", "is not a number"),
    ("INTERP_MAX_FRAMES", "2", "must be a whole number >= 3"),
    ("INTERP_MAX_STEPS", "-1", "must be a whole number >= 2"),
    ("INTERP_MAX_SIZE", "100", "multiple of 64"),
    ("INTERP_MAX_CANDIDATES", "64", "above the built-in ceiling 16"),
    ("INTERP_MAX_FPS", "30.5", "is not a whole number"),
])
def test_invalid_variables_are_refused_at_start_up(monkeypatch, variable, value, words):
    import app
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=words):
        limits.current()
    args = argparse.Namespace(store=None, store_max_gb=10.0)
    with pytest.raises(SystemExit, match=f"error: {variable}=.*{words}"):
        app.check_start(args)


def test_each_bound_is_enforced_by_the_library(monkeypatch):
    for variable in ("HOLD_FRAMES", "GIF_LOOP", "FPS", "PROMPT_CHARS"):
        monkeypatch.setenv(f"INTERP_MAX_{variable}", "10")
    monkeypatch.setenv("INTERP_MAX_CANDIDATES", "4")
    checks = [(lambda: Export(hold_first=11), "INTERP_MAX_HOLD_FRAMES"),
              (lambda: Export(gif_loop=11), "INTERP_MAX_GIF_LOOP"),
              (lambda: Export(fps=11), "INTERP_MAX_FPS"),
              (lambda: FrameEdit(candidate=4), "INTERP_MAX_CANDIDATES"),
              (lambda: FrameEdit(prompt="x" * 11), "INTERP_MAX_PROMPT_CHARS"),
              (lambda: Settings(candidates=0, frames=5), "the paper's 8, 7, 6"),
              (lambda: Settings(negative_prompt="y" * 11, candidates=1), "INTERP_MAX_PROMPT_CHARS")]
    for build, words in checks:
        with pytest.raises(ValueError, match=re.escape(words)):
            build()
    Export(hold_first=10, gif_loop=10, fps=10)
    FrameEdit(candidate=3, prompt="x" * 10)


def test_knobs_and_presets_follow_lowered_bounds(monkeypatch):
    import gradio as gr
    from interp.forms import form_from_export, form_from_settings
    from ui import knobs
    from ui.layout import initial_settings
    for name, value in (("FRAMES", "33"), ("STEPS", "100"), ("CANDIDATES", "4"),
                        ("INVERT_STEPS", "200"), ("SIZE", "256"), ("HOLD_FRAMES", "20"),
                        ("FPS", "30")):
        monkeypatch.setenv(f"INTERP_MAX_{name}", value)
    paper = initial_settings("paper", "sd15")       # 17 frames, 200 steps, 0 = 8 candidates
    assert (paper.frames, paper.num_inference_steps, paper.candidates, paper.invert_steps) == (
        17, 100, 4, 200)
    v = form_from_settings(paper)
    with gr.Blocks():
        widgets = {**knobs.schedule_knobs(v), **knobs.sampling_knobs(v),
                   **knobs.inversion_knobs(v), **knobs.output_knobs(v),
                   **knobs.export_knobs(form_from_export(Export()))}
    maxima = {name: widgets[name].maximum for name in ("frames", "num_inference_steps",
              "candidates", "invert_steps", "size", "hold_first", "hold_last", "fps")}
    assert maxima == dict(frames=33, num_inference_steps=100, candidates=4, invert_steps=200,
                          size=256, hold_first=20, hold_last=20, fps=30)
    assert widgets["candidates"].minimum == 1          # the paper's rule (8) does not fit


def test_the_readme_documents_every_bound():
    section = README.split("## Limits and security", 1)[1].split("\n## ", 1)[0]
    for variable, _, ceiling in limits.describe(limits.Limits()):
        assert re.search(rf"`{variable}`[^\n]*\b{ceiling}\b", section), variable
