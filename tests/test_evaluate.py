"""The quality harness and perceptual respacing: end-to-end on the tiny random model; quality on the toy."""
import argparse
import json

import numpy as np
import pytest
from PIL import Image

from interp import metrics
from interp.eval.harness import ALPHA_BLEND, SCHEMES, evaluate, folder_pairs, make_variants, toy_pairs
from interp.pacing import respace_render
from interp.timeline import two_image
from helpers import evenly_paced
from interp.render import Interpolator
from interp.settings import Curve, Settings
from interp.store import FrameStore

FAST = Settings(frames=5, num_inference_steps=6, size=64, candidates=1, guidance_scale=3.0)


@pytest.fixture(scope="module")
def tiny():
    from interp.models.load import load_bundle
    return Interpolator(load_bundle("tiny-sd15"), FrameStore(None))


def test_harness_end_to_end_all_schemes_numbers_finite_files_written(tiny, tmp_path):
    from interp.eval.report import write_report
    from interp.toy.detect import CHECKS
    pairs = toy_pairs(2, seed=0)
    variants = make_variants(list(SCHEMES), [1])
    ev = evaluate(tiny, pairs, FAST, variants, checks=CHECKS)
    assert len(ev.runs) == 2 * len(SCHEMES)
    for run in ev.runs:
        assert len(run.frames) == 5 and len(run.distances) == 4
        assert [len(v) for v in run.checks.values()] == [3, 3]
        assert all(np.isfinite(v) for v in run.metrics.values())
    table = ev.table()
    assert set(table) == set(SCHEMES) and {"on_manifold", "single_shape"} <= set(table["did"])
    assert all(np.isfinite(m) for row in table.values() for m, _ in row.values())
    # the blend baseline is the pixel blend of the inputs at the plan's positions
    blend = ev.runs_of(ALPHA_BLEND)[0]
    expected = Image.blend(pairs[0].image_a, pairs[0].image_b, 0.25)
    assert np.array_equal(np.asarray(blend.frames[1]), np.asarray(expected))
    paths = write_report(ev, tmp_path)
    assert "| method |" in paths["markdown"].read_text()
    data = json.loads(paths["json"].read_text())
    assert len(data["runs"]) == len(ev.runs) and data["table"]["did"]["ppl"][0] > 0
    for key in ("distances", "contact method", "contact alpha_blend"):
        with Image.open(paths[key]) as im:
            assert im.size[0] > 100
    with Image.open(paths["contact method"]) as sheet:   # rows = pairs, columns = frames
        assert sheet.size == (5 * 66 + 2, 2 * (64 + 8 + 2) + 2)   # 2 check bars of 4 px
    with Image.open(paths["comparison"]) as sheet:       # rows = 2 pairs x every variant
        assert sheet.size == (150 + 5 * 66 + 2, 2 * len(SCHEMES) * (64 + 8 + 2) + 2)
    # one engine, one store: measuring the method again generates nothing
    again = evaluate(tiny, pairs[:1], FAST, make_variants(["method"], [1]), fid=False)
    assert again.runs[0].unet_rows == 0 and again.runs[0].distances == ev.runs[0].distances


def test_make_variants_labels_and_validation():
    assert [v.label for v in make_variants(["method", "did"], [1, 4])] == ["method K=1", "method K=4",
                                                                           "did"]
    assert make_variants(["method"], [3])[0].candidates == 3
    with pytest.raises(ValueError, match="schemes"):
        make_variants(["warp"])
    with pytest.raises(ValueError, match="candidates"):
        make_variants(["method"], [-1])
    modes = make_variants(["method", "did"], [1], ["off", "interpolate", "extend"])
    assert [v.label for v in modes] == ["method attn=off", "method attn=interpolate",
                                        "method attn=extend", "did"]
    assert [v.attention for v in modes] == ["off", "interpolate", "extend", None]
    with pytest.raises(ValueError):
        make_variants(["method"], [1], ["sideways"])


def test_folder_pairs_names_and_prompts(tmp_path):
    for name, colour in (("cat", "red"), ("dog", "blue")):
        for side in "ab":
            Image.new("RGB", (64, 48), colour).save(tmp_path / f"{name}_{side}.png")
    (tmp_path / "cat.txt").write_text("a cat\na dog\n")
    (tmp_path / "lonely_a.png").write_bytes((tmp_path / "cat_a.png").read_bytes())
    pairs = folder_pairs(tmp_path)
    assert [p.name for p in pairs] == ["cat", "dog"]
    assert (pairs[0].prompt_a, pairs[0].prompt_b) == ("a cat", "a dog")
    assert (pairs[1].prompt_a, pairs[1].prompt_b) == ("", "")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no <name>_a"):
        folder_pairs(tmp_path / "empty")
    with pytest.raises(ValueError, match="not a directory"):
        folder_pairs(tmp_path / "missing")


def test_respace_render_moves_frames_by_inverse_cumulative_distance(tiny, photo_pair):
    settings = FAST.replace(prompt="a photo")
    result, report = respace_render(tiny, two_image(*photo_pair, settings), settings, {},
                                    metrics.pixel_distance)
    before = report["before"]["segments"][0]
    expected = evenly_paced(before["positions"], before["distances"])
    np.testing.assert_allclose([f.position for f in result.frames], expected, atol=1e-9)
    paced = result.segments[0].settings
    assert paced.curve == Curve.CUSTOM and result.settings.curve == settings.curve
    after = metrics.adjacent_distances(result.images, metrics.pixel_distance)
    np.testing.assert_allclose(report["after"]["distances"], after)
    assert report["after"]["pdv"] == pytest.approx(metrics.pdv(after))
    # the respaced sequence is cached: rendering it again generates nothing
    again = tiny.render(*photo_pair, paced)
    assert again.generated == [] and again.reused == [1, 2, 3]
    with pytest.raises(ValueError, match="rounds"):
        respace_render(tiny, two_image(*photo_pair, settings), settings, rounds=0)


def test_cli_eval_writes_table_for_cheap_schemes(tmp_path, capsys):
    from interp.cli.eval import add_eval_parser
    parser = argparse.ArgumentParser()
    add_eval_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", "--model", "tiny", "--toy-pairs", "2", "--same-colour", "--frames", "5",
                              "--schemes", "interpolate_only,alpha_blend", "--store", "none",
                              "--out", str(tmp_path)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "| interpolate_only |" in out and "| alpha_blend |" in out and "on-manifold" in out
    assert (tmp_path / "contact_interpolate_only.png").is_file()
    assert (tmp_path / "comparison.png").is_file()
    same = toy_pairs(3, seed=0, same_colour=True)       # what --same-colour selects
    assert all(p.prompt_a.split()[1] == p.prompt_b.split()[1] for p in same)   # "a red ..."


# ---------------------------------------------------------------------------- quality on the toy model

def _toy_available() -> bool:
    from interp.toy import TOY_DIR, toy_clip_path
    return (TOY_DIR / "model_index.json").is_file() and toy_clip_path().is_file()


TOY = Settings(frames=9, num_inference_steps=20, size=64, guidance_scale=3.0, eta=0.0, candidates=1,
               rank_positive="a clean single shape", rank_negative="a faded blend of two shapes")
TOY_PAIRS = 6


@pytest.fixture(scope="module")
def toy_engine():
    if not _toy_available():
        pytest.skip("the toy model is not in assets/toy (train it: python -m interp.toy.train)")
    from interp.models.load import load_bundle
    from interp.toy.nets import load_toy_clip
    bundle = load_bundle("toy")
    return Interpolator(bundle, FrameStore(None), load_toy_clip(counter=bundle.counter))


@pytest.fixture(scope="module")
def toy_eval(toy_engine):
    """Held-out pairs that change shape and colour."""
    from interp.toy.detect import CHECKS
    variants = make_variants(["method", "interpolate_only", ALPHA_BLEND], [1, 4])
    return evaluate(toy_engine, toy_pairs(TOY_PAIRS, seed=0), TOY, variants, checks=CHECKS, fid=False)


@pytest.fixture(scope="module")
def toy_eval_same_colour(toy_engine):
    """Held-out pairs that change shape only (in-betweens can stay in the palette), at 50 steps."""
    from interp.toy.detect import CHECKS
    variants = make_variants(["method", "interpolate_only", ALPHA_BLEND], [1, 4])
    return evaluate(toy_engine, toy_pairs(8, seed=0, same_colour=True),
                    TOY.replace(num_inference_steps=50), variants, checks=CHECKS, fid=False)


def _rate(ev, label, check="on_manifold") -> float:
    return ev.table()[label][check][0]


@pytest.mark.slow
def test_toy_method_makes_single_clean_shapes_where_blends_ghost(toy_eval):
    method = _rate(toy_eval, "method K=1", "single_shape")
    assert method >= 0.7
    assert method >= _rate(toy_eval, "interpolate_only", "single_shape") + 0.3
    assert method >= _rate(toy_eval, ALPHA_BLEND, "single_shape") + 0.3


@pytest.mark.slow
def test_toy_shape_morphs_stay_on_the_palette_manifold_far_more_than_blends(toy_eval_same_colour):
    # benchmarks/quality.py, 16 pairs: method 0.89, interpolate_only 0.62, alpha blend 0.44
    method = _rate(toy_eval_same_colour, "method K=1")
    assert method >= 0.75
    assert method >= _rate(toy_eval_same_colour, "interpolate_only") + 0.15
    assert method >= _rate(toy_eval_same_colour, ALPHA_BLEND) + 0.3


@pytest.mark.slow
def test_toy_clip_ranking_raises_the_palette_rate_of_shape_morphs(toy_eval_same_colour):
    # benchmarks/quality.py, 16 pairs: K=1 0.89 -> K=4 0.96 on-manifold, never lower on any pair
    ev = toy_eval_same_colour
    assert _rate(ev, "method K=4") >= _rate(ev, "method K=1") + 0.04
    for k1, k4 in zip(ev.runs_of("method K=1"), ev.runs_of("method K=4")):
        assert sum(k4.checks["on_manifold"]) >= sum(k1.checks["on_manifold"]), k1.pair
    assert ev.table()["method K=4"]["on_manifold_gain"][0] > 0   # the pick beats its candidates


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="known shortfall (issue 7): on pairs that also change colour, CLIP "
                   "ranking barely helps on the toy model: 16 pairs at 50 steps K=1 -> K=4 single-shape "
                   "0.92 -> 0.95, on-manifold 0.46 -> 0.46; 6 pairs at 20 steps -0.05..+0.05")
def test_toy_clip_ranking_raises_the_rates_of_colour_morphs(toy_eval):
    for check in ("on_manifold", "single_shape"):
        assert _rate(toy_eval, "method K=4", check) >= _rate(toy_eval, "method K=1", check) + 0.05


@pytest.mark.slow
def test_toy_respacing_shrinks_the_distance_spread(toy_engine, toy_eval):
    before, after = [], []
    for pair in toy_pairs(TOY_PAIRS, seed=0):
        s = TOY.replace(prompt=pair.prompt_a, prompt_b=pair.prompt_b)
        _, report = respace_render(toy_engine, two_image(pair.image_a, pair.image_b, s), s, {})
        before.append(report["before"]["pdv"])
        after.append(report["after"]["pdv"])
    assert np.median(after) < 0.8 * np.median(before)


def test_ranking_gain_compares_the_pick_with_its_candidates():
    from interp.eval.harness import Evaluation, Variant, measure
    black, white = Image.new("RGB", (8, 8)), Image.new("RGB", (8, 8), (255, 255, 255))
    bright = {"bright": lambda im: im.getpixel((0, 0))[0] > 128}
    frames = [black, white, black]
    good = measure("K=3", "p", frames, metrics.pixel_distance, bright,
                   candidates=[([black, white, black], 1)])      # the pick is the 1 of 3 that passes
    bad = measure("K=3", "q", frames, metrics.pixel_distance, bright,
                  candidates=[([white, white, black, black], 3)])  # a failing pick of 4, 2 pass
    single = measure("K=1", "p", frames, metrics.pixel_distance, bright, candidates=[([white], 0)])
    assert good.ranking_gain("bright") == pytest.approx(2 / 3)
    assert bad.ranking_gain("bright") == pytest.approx(-0.5)
    assert single.ranking_gain("bright") is None and single.picks == {}
    ev = Evaluation([good, bad, single], [Variant("K=3", "method", 3), Variant("K=1", "method", 1)],
                    Settings())
    assert ev.table()["K=3"]["bright_gain"][0] == pytest.approx((2 / 3 - 0.5) / 2)
    assert "bright_gain" not in ev.table()["K=1"]
    from interp.eval.report import markdown_table
    assert "bright gain of CLIP pick" in markdown_table(ev)


def test_cli_eval_compares_attention_modes_as_variants(tmp_path, capsys):
    from interp.cli.main import main
    assert main(["eval", "--model", "tiny", "--toy-pairs", "1", "--frames", "3", "--steps", "6",
                 "--schemes", "method", "--attention", "off,extend", "--store", "none",
                 "--out", str(tmp_path)]) == 0
    assert "| method attn=off |" in capsys.readouterr().out
    runs = {r["variant"]: r for r in json.loads((tmp_path / "results.json").read_text())["runs"]}
    # By hand: one frame at DDIM index int(6 x 0.55) = 3: 4 steps x 1 candidate x 2 (CFG) = 8 rows;
    # extend adds 2 endpoint rows x 2 (CFG) for each of the 4 steps (share 1): 16 more
    assert (runs["method attn=off"]["unet_rows"], runs["method attn=extend"]["unet_rows"]) == (8, 24)
