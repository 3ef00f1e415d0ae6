"""Running on the built-in toy model: its knob needs (64 px, guidance 3, ranking prompts), its own
CLIP as the default scorer, and its shape examples in the app."""
import json
from pathlib import Path

import numpy as np
import pytest

from interp.cli.main import main
from interp.models.startup import model_settings
from interp.toy import data

ROOT = Path(__file__).resolve().parent.parent
TOY_EXAMPLES = ROOT / "assets" / "examples" / "toy"


@pytest.fixture(scope="module")
def toy_bundle():
    from interp.models.load import load_bundle, weights_available
    assert weights_available("toy"), "assets/toy has no weights: run python -m interp.toy.train"
    return load_bundle("toy")


def test_model_settings_apply_under_flags_and_over_presets(tmp_path):
    import argparse
    from interp.cli.flags import add_settings_flags, settings_from_args
    parser = argparse.ArgumentParser()
    add_settings_flags(parser)
    paper = settings_from_args(parser.parse_args(["--preset", "paper"]), "toy")
    assert (paper.size, paper.guidance_scale) == (64, 3.0)          # the toy's needs beat the preset
    assert paper.num_inference_steps == 200                          # the rest is the preset's
    given = settings_from_args(parser.parse_args(["--guidance", "5", "--size", "128"]), "toy")
    assert (given.size, given.guidance_scale) == (128, 5.0)         # explicit flags beat both
    assert model_settings("tiny-sd21") == {"size": 64}
    assert model_settings("sd15") == {"rank_positive": "high quality, detailed",   # the paper's
                                      "rank_negative": "blurry, distorted"}        # ranking prompts


def test_sd15_defaults_to_its_native_area_at_the_input_aspect():
    """No size flag on sd15: size None, so the working size is ~512^2 px at the input's aspect
    (multiples of 64). By hand: 3:2 -> 576 x 384 (aspect exact, 221184 px = 0.84 x 512^2) beats
    640 x 448 (aspect off by 4.8%, 1.09 x area); 9:16 at 1024^2 -> 768 x 1344 (the SDXL bucket)."""
    import argparse
    from interp.cli.flags import add_settings_flags, settings_from_args
    from interp.images import working_size
    parser = argparse.ArgumentParser()
    add_settings_flags(parser)
    sd15 = settings_from_args(parser.parse_args([]), "sd15")
    assert (sd15.size, sd15.width, sd15.height) == (None, None, None)
    assert working_size(512, 512, sd15, 512) == (512, 512)       # SD 1.5's native side: 64 x 8
    assert working_size(600, 400, sd15, 512) == (576, 384)
    assert working_size(900, 1600, sd15, 1024) == (768, 1344)
    sized = settings_from_args(parser.parse_args(["--size", "640"]), "sd15")
    assert working_size(600, 400, sized, 512) == (640, 448)      # --size: the long side, 640 * 2/3 -> 448


def test_cli_render_on_toy_uses_its_knobs_and_its_own_clip(tmp_path, toy_bundle):
    example = data.example_pairs()[0]
    a, b = (TOY_EXAMPLES / f"{s.colour}_{s.shape}_{s.background}.png" for s in example)
    out = tmp_path / "toy"
    assert main(["render", str(a), str(b), "--model", "toy", "--preset", "draft", "--frames", "3",
                 "--steps", "4", "--candidates", "2", "--store", "none", "--out", str(out),
                 "--prompt", data.caption(example[0]), "--prompt-b", data.caption(example[1])]) == 0
    summary = json.loads((out / "summary.json").read_text())
    settings = summary["settings"]
    assert settings["size"] == 64 and settings["guidance_scale"] == 3.0    # the toy's needs
    assert settings["rank_positive"] == "a clean single shape"
    assert summary["model_calls"]["rows"]["clip"] == 2          # the middle frame's 2 candidates
    assert summary["frames"][1]["scores"] is not None


def test_toy_examples_are_the_drawn_pairs():
    from PIL import Image
    for a, b in data.example_pairs():
        for spec in (a, b):
            path = TOY_EXAMPLES / f"{spec.colour}_{spec.shape}_{spec.background}.png"
            assert np.array_equal(np.asarray(Image.open(path).convert("RGB")),
                                  np.asarray(data.draw(spec)))


def test_app_on_toy_offers_shape_examples_and_toy_knobs(toy_bundle):
    from ui import layout
    from ui.keyframes import examples
    from ui.projects import Projects
    from ui.sessions import Sessions
    from interp.render import Interpolator
    from interp.store import FrameStore
    shown = examples("toy")
    first = data.example_pairs()[0]
    assert [text for _, text in shown[0][1]] == [data.caption(s) for s in first]
    assert len(shown[-1][1]) == 3 and shown[-1][3] is True          # a looped 3-keyframe one
    assert all(Path(p).is_file() for example in shown for p, _ in example[1])
    engine = Interpolator(toy_bundle, FrameStore(None), None)
    demo = layout.build_demo(engine)
    values = {c.get("props", {}).get("label"): c.get("props", {}).get("value")
              for c in demo.config["components"]}
    assert values["Guidance scale"] == 3.0
    assert values["Size (long side, pixels; 0 = the model's native size)"] == 64
    paper = Projects(engine, Sessions()).apply_preset("paper")
    assert paper["num_inference_steps"] == 200
    assert "guidance_scale" not in paper                            # the toy keeps its 3


def test_without_a_clip_scorer_a_preset_makes_one_candidate_unless_asked():
    from interp.models.startup import settings_for
    ranked, note = settings_for("balanced", "sd15", {}, scorer=object())
    assert ranked.candidates == 3 and note is None                  # the balanced preset's 3
    assert ranked.rank_positive == "high quality, detailed"         # ranked by default
    alone, note = settings_for("balanced", "sd15", {}, scorer=None)
    assert alone.candidates == 1 and "manual pick" in note and "no CLIP model" in note
    kept, note = settings_for("balanced", "sd15", {"candidates": 3}, scorer=None)
    assert kept.candidates == 3 and note is None                    # asked for: kept to pick by hand
