"""The frame plan: paper tree and noise levels (hand-computed), properties for any frame count."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from interp.plan import (
    FrameNode, Plan, bisection_tree, curve_positions, fraction_to_index,
    level_ddim_indices, make_plan, positions_to_points, respace,
)
from interp.scheduler import ddim_timesteps
from interp.settings import Curve, NoiseShape, Settings

# Timesteps of SD's DDIM config ("leading", steps_offset 1): index i -> 1 + i * (1000 // S).
TS200 = np.arange(200) * 5 + 1
FAST = hsettings(max_examples=60, deadline=None)


def _ts(s: int) -> np.ndarray:
    return np.arange(s) * (1000 // s) + 1


# ------------------------------------------------------------------------- hand-computed values

def test_paper_tree_17_frames():
    tree = bisection_tree(17)
    assert tree[8] == (0, 16, 1)
    assert tree[4] == (0, 8, 2) and tree[12] == (8, 16, 2)
    assert {i: tree[i][2] for i in (2, 6, 10, 14)} == {2: 3, 6: 3, 10: 3, 14: 3}
    for i in range(1, 16, 2):
        assert tree[i] == (i - 1, i + 1, 4)
    assert sorted(tree) == list(range(1, 16))


def test_paper_tree_65_frames_matches_gaps():
    tree = bisection_tree(65)
    for i, (lo, hi, level) in tree.items():
        gap = 2 ** (6 - level)
        assert i % gap == 0 and (i // gap) % 2 == 1      # level k makes df, 3df, 5df, ...
        assert (lo, hi) == (i - gap, i + gap)
    assert max(v[2] for v in tree.values()) == 6


def test_uneven_tree_small():
    assert bisection_tree(4) == {1: (0, 3, 1), 2: (1, 3, 2)}
    assert bisection_tree(3) == {1: (0, 2, 1)}
    assert bisection_tree(2) == {}


def test_paper_noise_levels_and_timesteps():
    assert level_ddim_indices(4, 200, 0.30, 0.55, NoiseShape.LINEAR) == [110, 93, 76, 60]
    ts = ddim_timesteps(200)
    assert ts.tolist() == TS200.tolist()
    assert [int(ts[i]) for i in (110, 93, 76, 60)] == [551, 466, 381, 301]


def test_ddim_timesteps_other_config():
    ts = ddim_timesteps(10, {"num_train_timesteps": 100, "steps_offset": 0, "timestep_spacing": "leading"})
    assert ts.tolist() == list(range(0, 100, 10))


def test_noise_shapes_hand_computed():
    # lo = 60, hi = 110, u = 0, 1/3, 2/3, 1
    assert level_ddim_indices(4, 200, 0.30, 0.55, "convex") == [110, 82, 65, 60]     # 60 + 50 u^2
    assert level_ddim_indices(4, 200, 0.30, 0.55, "concave") == [110, 100, 88, 60]   # 60 + 50 sqrt(u)
    assert level_ddim_indices(6, 200, 0.30, 0.55) == [110, 100, 90, 80, 70, 60]


def test_single_level_gets_max_and_float_floor():
    assert level_ddim_indices(1, 200, 0.30, 0.55) == [110]
    assert level_ddim_indices(0, 200, 0.30, 0.55) == []
    assert int(100 * 0.29) == 28                           # the float trap the rule avoids
    assert fraction_to_index(100, 0.29) == 29
    assert level_ddim_indices(2, 100, 0.29, 0.29) == [29, 29]
    assert fraction_to_index(200, 0.55) == 110
    assert fraction_to_index(10, 0.9999999999) == 9        # never past the last index


def test_make_plan_paper_17_frames():
    plan = make_plan(Settings(), timesteps=TS200)
    assert plan.levels == 4
    mid = plan.nodes[8]
    assert mid == FrameNode(8, 0.5, 1, (0, 16), 0.5, 110, 551)
    assert plan.nodes[0] == FrameNode(0, 0.0, 0, None, None, None, None)
    assert [(plan.nodes[i].ddim_index, plan.nodes[i].timestep) for i in (4, 2, 1)] == \
        [(93, 466), (76, 381), (60, 301)]
    assert plan.order == (8, 4, 12, 2, 6, 10, 14, 1, 3, 5, 7, 9, 11, 13, 15)
    assert plan.children(8) == (4, 6, 7, 9, 10, 12) and plan.children(16) == (8, 12, 14, 15)
    assert plan.children(3) == ()
    assert plan.descendants(4) == frozenset({1, 2, 3, 5, 6, 7})
    assert plan.descendants(0) == frozenset(range(1, 16))
    assert plan.nodes[12].level == 2 and plan.nodes[16].level == 0
    js = plan.to_json()
    assert js[8] == {"index": 8, "position": 0.5, "level": 1, "parents": [0, 16], "weight": 0.5,
                     "ddim_index": 110, "timestep": 551}


def test_make_plan_default_timesteps_and_65_frames():
    plan = make_plan(Settings(frames=65))
    assert plan.levels == 6
    assert [plan.nodes[i].ddim_index for i in (32, 16, 8, 4, 2, 1)] == [110, 100, 90, 80, 70, 60]
    assert plan.nodes[32].timestep == 551 and plan.nodes[1].timestep == 301


def test_weights_follow_positions():
    plan = make_plan(Settings(frames=5, curve=Curve.EASE_IN), timesteps=TS200)
    # positions (i/4)^2 = 0, 1/16, 1/4, 9/16, 1; frame 2 from (0, 4), frame 1 from (0, 2), 3 from (2, 4)
    assert plan.positions.tolist() == [0.0, 1 / 16, 0.25, 9 / 16, 1.0]
    assert plan.nodes[2].weight == pytest.approx(0.25)
    assert plan.nodes[1].weight == pytest.approx(0.25)
    assert plan.nodes[3].weight == pytest.approx((9 / 16 - 0.25) / 0.75)


def test_curves_hand_computed():
    assert curve_positions(5, "uniform").tolist() == [0, 0.25, 0.5, 0.75, 1]
    assert curve_positions(3, Curve.EASE_OUT).tolist() == [0, 0.75, 1]
    assert curve_positions(5, Curve.EASE_IN_OUT)[1] == pytest.approx(0.15625)   # smoothstep(1/4)
    assert curve_positions(5, Curve.BETA, 1.0, 1.0) == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    assert curve_positions(3, Curve.BETA, 2.0, 2.0)[1] == pytest.approx(0.5)
    assert curve_positions(3, Curve.BETA, 2.0, 1.0)[1] == pytest.approx(math.sqrt(0.5))  # CDF x^2
    assert curve_positions(3, Curve.CUSTOM, points=((0.5, 0.2),)).tolist() == [0, 0.2, 1]


def test_positions_to_points_roundtrip_through_settings():
    target = respace(np.linspace(0, 1, 9), [1, 1, 1, 1, 2, 3, 4, 5])
    pts = positions_to_points(target)
    s = Settings.from_dict(Settings(frames=9, curve=Curve.CUSTOM, curve_points=pts).to_dict())
    assert make_plan(s, TS200).positions.tolist() == target.tolist()


# ---------------------------------------------------------------------------------- validation

@pytest.mark.parametrize("points, word", [
    (((0.5, 1.5),), "[0, 1]"), (((0.6, 0.2), (0.4, 0.5)), "strictly increasing"),
    (((0.4, 0.6), (0.6, 0.5)), "non-decreasing"), (((0.0, 0.3),), "strictly increasing"),
    ((("a", 0.3),), "pairs"),
])
def test_bad_control_points_name_the_field(points, word):
    with pytest.raises(ValueError, match="curve_points") as err:
        curve_positions(9, Curve.CUSTOM, points=points)
    assert word in str(err.value)


def test_flat_custom_curve_names_field_and_fix():
    with pytest.raises(ValueError, match=r"curve_points=.*strictly increasing"):
        curve_positions(33, Curve.CUSTOM, points=((0.3, 0.5), (0.7, 0.5)))
    curve_positions(3, Curve.CUSTOM, points=((0.3, 0.5), (0.7, 0.5)))  # no frame on the flat part


def test_other_validation_errors():
    with pytest.raises(ValueError, match="curve_alpha/curve_beta"):
        curve_positions(300, Curve.BETA, 0.01, 0.01)
    with pytest.raises(ValueError, match="curve_alpha"):
        curve_positions(5, Curve.BETA, -1.0, 1.0)
    with pytest.raises(ValueError, match="curve="):
        curve_positions(5, "wiggly")
    with pytest.raises(ValueError, match="n_frames"):
        bisection_tree(1)
    with pytest.raises(TypeError, match="n_frames"):
        curve_positions(5.0, Curve.UNIFORM)
    with pytest.raises(ValueError, match="noise_min/noise_max"):
        level_ddim_indices(4, 200, 0.6, 0.5)
    with pytest.raises(ValueError, match="noise_shape"):
        level_ddim_indices(4, 200, 0.3, 0.5, "wavy")
    with pytest.raises(ValueError, match="noise="):
        fraction_to_index(200, 1.0)
    with pytest.raises(ValueError, match="timesteps"):
        make_plan(Settings(), timesteps=TS200[:10])
    with pytest.raises(ValueError, match="distances"):
        respace([0, 0.5, 1], [1.0, -1.0])
    with pytest.raises(ValueError, match="positions"):
        respace([0, 0.7, 0.5, 1], [1, 1, 1])
    with pytest.raises(ValueError, match="frame="):
        make_plan(Settings(), TS200).children(17)


# ---------------------------------------------------------------------------------- properties

@FAST
@given(n=st.integers(3, 129))   # up to the frames bound (interp.limits)
def test_tree_properties_any_count(n):
    plan = make_plan(Settings(frames=n, num_inference_steps=50), timesteps=_ts(50))
    tree = bisection_tree(n)
    assert sorted(plan.order) == list(range(1, n - 1)) == sorted(tree)   # every in-between once
    assert plan.levels == math.ceil(math.log2(n - 1))
    made = {0, n - 1}
    for i in plan.order:
        node = plan.nodes[i]
        lo, hi = node.parents
        assert lo < i < hi and lo in made and hi in made                   # parents made earlier
        assert 0 < node.weight < 1
        assert node.level == max(plan.nodes[lo].level, plan.nodes[hi].level) + 1
        made.add(i)
        assert all(i in plan.descendants(p) for p in node.parents)
    levels = [plan.nodes[i].level for i in plan.order]
    assert levels == sorted(levels)


@FAST
@given(n=st.integers(2, 300), curve=st.sampled_from(list(Curve)),
       a=st.floats(0.3, 5.0), b=st.floats(0.3, 5.0),
       gaps=st.lists(st.tuples(st.floats(0.01, 1.0), st.floats(0.01, 1.0)), min_size=1, max_size=6))
def test_positions_strictly_increasing(n, curve, a, b, gaps):
    xs = np.cumsum([g[0] for g in gaps] + [0.01]) / (sum(g[0] for g in gaps) + 0.02)
    ys = np.cumsum([g[1] for g in gaps] + [0.01]) / (sum(g[1] for g in gaps) + 0.02)
    points = tuple(zip(xs[:-1].tolist(), ys[:-1].tolist()))
    t = curve_positions(n, curve, a, b, points)
    assert t.dtype == np.float64 and len(t) == n
    assert t[0] == 0.0 and t[-1] == 1.0 and np.all(np.diff(t) > 0)


@FAST
@given(k=st.integers(1, 10), s=st.integers(10, 1000), lo=st.floats(0.01, 0.98),
       width=st.floats(0.0, 1.0), shape=st.sampled_from(list(NoiseShape)))
def test_level_indices_decrease_from_max_to_min(k, s, lo, width, shape):
    hi = lo + (0.99 - lo) * width
    idx = level_ddim_indices(k, s, lo, hi, shape)
    assert len(idx) == k and idx[0] == fraction_to_index(s, hi)
    assert all(a >= b for a, b in zip(idx, idx[1:])) and 0 <= idx[-1] <= idx[0] < s
    if k > 1:
        assert idx[-1] == fraction_to_index(s, lo)


def _warp(x: np.ndarray, c: float) -> np.ndarray:
    return (np.exp(c * x) - 1) / (np.exp(c) - 1)


@FAST
@given(n=st.integers(3, 120), c=st.floats(-6.0, 6.0).filter(lambda c: abs(c) > 0.05),
       curve=st.sampled_from([Curve.UNIFORM, Curve.EASE_IN_OUT, Curve.EASE_OUT]))
def test_respace_equalises_linear_distance_model(n, c, curve):
    p = curve_positions(n, curve)
    g = _warp(p, c)                                   # perceptual coordinate of each frame
    q = respace(p, np.diff(g))
    assert q[0] == 0.0 and q[-1] == 1.0 and np.all(np.diff(q) > 0)
    new = np.diff(np.interp(q, p, g))                 # same (piecewise-linear) model at new positions
    assert new == pytest.approx(np.full(n - 1, 1.0 / (n - 1)), abs=1e-9)


def test_respace_smooth_warp_converges_and_fixed_point():
    p = np.linspace(0, 1, 257)
    q = respace(p, np.diff(p ** 2))
    d = np.diff(q ** 2)
    assert d.max() / d.min() < 1.01                    # was 511 before re-spacing
    assert respace(q, np.full(256, 0.3)) == pytest.approx(q, abs=1e-12)   # equal distances: unchanged


def test_respace_zero_distances():
    p = np.linspace(0, 1, 5)
    assert respace(p, [0, 0, 0, 0]).tolist() == p.tolist()
    q = respace(p, [0.0, 1.0, 0.0, 1.0])               # frames 0-1 and 2-3 look identical
    assert q.tolist() == pytest.approx([0, 0.375, 0.75, 0.875, 1])  # target 1 -> end of the flat run
    assert np.all(np.isfinite(q)) and np.all(np.diff(q) > 0)


def test_plan_rejects_misnumbered_nodes():
    node = FrameNode(1, 0.0, 0, None, None, None, None)
    with pytest.raises(ValueError, match=r"nodes\[0\]"):
        Plan((node,), 0)


def test_respace_to_another_count_inverts_the_cumulative_distance():
    # distances 1, 3 over positions 0, 0.5, 1: cumulative 0, 1, 4; 5 frames want 0, 1, 2, 3, 4
    q = respace([0.0, 0.5, 1.0], [1.0, 3.0], count=5)
    # by hand: D = 1 at 0.5; D = 2, 3 are 1/3 and 2/3 of the way from 0.5 to 1
    assert q.tolist() == pytest.approx([0.0, 0.5, 0.5 + 0.5 / 3, 0.5 + 1.0 / 3, 1.0])
    assert respace([0.0, 1.0], [0.0], count=3).tolist() == [0.0, 0.5, 1.0]
