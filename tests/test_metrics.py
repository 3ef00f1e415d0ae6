"""Metrics against hand-computed values and properties."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st
from PIL import Image

from interp import metrics
from interp.errors import ModelUnavailable

finite = st.floats(min_value=0.0, max_value=10.0, allow_nan=False)


def _grey(value: int, size: int = 8) -> Image.Image:
    return Image.new("RGB", (size, size), (value, value, value))


def test_adjacent_distances_pixel_hand_computed():
    frames = [_grey(0), _grey(51), _grey(51), _grey(255)]
    d = metrics.adjacent_distances(frames, metrics.pixel_distance)
    np.testing.assert_allclose(d, [0.2, 0.0, 0.8])


def test_known_ppl_pdv_gini_on_hand_computed_sequence():
    d = [0.0, 0.0, 1.0]
    assert metrics.ppl(d) == 1.0
    assert metrics.pdv(d) == pytest.approx(2 / 9)            # mean 1/3: (1/9 + 1/9 + 4/9) / 3
    assert metrics.gini(d) == pytest.approx(2 / 3)           # sum|di-dj| = 4, 2 n^2 mean = 6
    assert metrics.smoothness(d) == pytest.approx(1 / 3)
    m = metrics.sequence_metrics([0.1, 0.3])
    assert m["ppl"] == pytest.approx(0.4) and m["consistency"] == pytest.approx(0.2)
    assert m["pdv"] == pytest.approx(0.01) and m["max"] == pytest.approx(0.3)
    assert m["smoothness"] == pytest.approx(1 - 0.25)        # sum|.| = 0.4, 2 * 4 * 0.2 = 1.6


@given(st.integers(1, 20), st.floats(min_value=1e-3, max_value=5.0))
def test_equal_distances_are_perfectly_smooth(n, value):
    d = [value] * n
    assert metrics.gini(d) == pytest.approx(0.0, abs=1e-12)
    assert metrics.smoothness(d) == pytest.approx(1.0)
    assert metrics.pdv(d) == pytest.approx(0.0, abs=1e-12)
    assert metrics.spread(d)["max_min_ratio"] == pytest.approx(1.0)


@given(st.lists(finite, min_size=1, max_size=30), st.floats(min_value=0.1, max_value=10))
def test_gini_bounds_and_scale_invariance(d, scale):
    g = metrics.gini(d)
    assert 0.0 <= g <= (len(d) - 1) / len(d) + 1e-9
    assert metrics.gini([x * scale for x in d]) == pytest.approx(g, abs=1e-9)


def test_all_zero_distances_and_spread_with_a_zero_step():
    assert metrics.gini([0.0, 0.0]) == 0.0 and metrics.smoothness([0.0, 0.0]) == 1.0
    s = metrics.spread([0.0, 0.5])
    assert math.isinf(s["max_min_ratio"]) and s["max"] == 0.5


@pytest.mark.parametrize("bad", [[], [-0.1], [float("nan")], [float("inf")]])
def test_bad_distances_are_rejected(bad):
    with pytest.raises(ValueError, match="distances"):
        metrics.ppl(bad)


def test_frames_must_share_a_size_and_be_at_least_two():
    with pytest.raises(ValueError, match="shapes"):
        metrics.pixel_distance(_grey(0, 8), _grey(0, 9))
    with pytest.raises(ValueError, match="at least 2"):
        metrics.adjacent_distances([_grey(0)])
    with pytest.raises(TypeError, match="PIL image"):
        metrics.as_array([[0, 0, 0]])


def test_lab_conversion_reference_values():
    lab = metrics.srgb_to_lab(np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    np.testing.assert_allclose(lab[0], [100, 0, 0], atol=0.05)
    np.testing.assert_allclose(lab[1], [0, 0, 0], atol=1e-9)
    np.testing.assert_allclose(lab[2], [53.24, 80.09, 67.20], atol=0.1)   # sRGB red, CIE76


def test_lab_distance_white_black_is_one_and_symmetric():
    assert metrics.lab_distance(_grey(255), _grey(0)) == pytest.approx(1.0, abs=1e-3)
    a = Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8))
    b = Image.fromarray(np.random.default_rng(1).integers(0, 256, (96, 128, 3), dtype=np.uint8))
    assert metrics.lab_distance(a, b) == pytest.approx(metrics.lab_distance(b, a))
    assert metrics.lab_distance(a, a) == 0.0


def test_get_distance_names():
    assert metrics.get_distance("lab") is metrics.lab_distance
    assert metrics.get_distance("pixel") is metrics.pixel_distance
    with pytest.raises(ValueError, match="unknown"):
        metrics.get_distance("ssim")
    ok, note = metrics.lpips_status()
    if not ok:
        assert "LPIPS skipped" in note
        with pytest.raises(ModelUnavailable, match="LPIPS"):
            metrics.get_distance("lpips")


def test_frechet_distance_of_shifted_sets_is_the_squared_shift():
    x = np.random.default_rng(0).normal(size=(200, 3))
    assert metrics.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert metrics.frechet_distance(x, x + [1.0, 2.0, 0.0]) == pytest.approx(5.0, abs=1e-6)
    # 1-D Gaussians: (mu1 - mu2)^2 + (s1 - s2)^2 with sample std
    y = np.array([[0.0], [2.0]])
    z = np.array([[0.0], [4.0]])                               # var 2 and 8: (sqrt2 - sqrt8)^2 = 2
    assert metrics.frechet_distance(y, z) == pytest.approx(1.0 + 2.0)


def test_fid_against_inputs_uses_two_inbetweens_per_sequence_and_repeats():
    calls = []

    def features(images):
        calls.append(len(images))
        return np.array([[np.asarray(im, dtype=float).mean()] for im in images])
    seqs = [[_grey(0), _grey(100), _grey(120), _grey(140), _grey(255)] for _ in range(3)]
    inputs = [im for s in seqs for im in (s[0], s[-1])]
    fid = metrics.fid_against_inputs(inputs, seqs, features, repeats=4)
    assert calls == [6] + [6] * 4 and np.isfinite(fid) and fid > 0
    ok, note = metrics.inception_status()
    if not ok:
        assert "FID skipped" in note
