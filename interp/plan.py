"""The frame plan: positions (schedule curves), the bisection tree, noise level per frame, re-spacing.

Wang & Golland 2023, sections 3.1-3.2: frames 0..N are made coarse to fine; frame m = middle of (lo, hi)
is made from its parents lo and hi at a noise level that grows with the parents' distance. For N = 2^K
this is exactly the paper's tree; any other N gives uneven splits. Pure functions (numpy/scipy).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from interp.scheduler import ddim_timesteps
from interp.settings import Curve, NoiseShape, Settings

_EPS = 1e-9  # guards int() against float results such as 200 * 0.29 = 57.99999999999999


def _floor(x: float) -> int:
    """int() of a non-negative schedule value, robust to float round-off just below an integer."""
    return int(x + _EPS)


def _check_count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}={value!r} is not allowed: expected an integer")
    if value < minimum:
        raise ValueError(f"{name}={value!r} is not allowed: expected an integer >= {minimum}")
    return int(value)


# ----------------------------------------------------------------------------------------- positions

def curve_positions(n_frames: int, curve: Curve | str, alpha: float = 1.0, beta: float = 1.0,
                    points: Sequence[Sequence[float]] = ()) -> np.ndarray:
    """Frame positions 0 = t_0 < ... < t_N = 1 from a schedule curve (paper 5.2: non-uniform schedules)."""
    n = _check_count("n_frames", n_frames, 2)
    try:
        curve = Curve(curve)
    except ValueError:
        raise ValueError(f"curve={curve!r} is not one of {[c.value for c in Curve]}") from None
    u = np.linspace(0.0, 1.0, n)
    if curve == Curve.UNIFORM:
        t = u.copy()
    elif curve == Curve.EASE_IN:
        t = u * u
    elif curve == Curve.EASE_OUT:
        t = 1.0 - (1.0 - u) ** 2
    elif curve == Curve.EASE_IN_OUT:
        t = u * u * (3.0 - 2.0 * u)  # smoothstep
    elif curve == Curve.BETA:
        t = _beta_positions(u, alpha, beta)
    else:
        t = _custom_positions(u, points)
    t[0], t[-1] = 0.0, 1.0
    if not np.all(np.diff(t) > 0):
        raise _not_increasing(curve, alpha, beta, points)
    return t.astype(np.float64)


def _beta_positions(u: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """Inverse CDF of Beta(alpha, beta) at the uniform grid (as AID/PAID do)."""
    from scipy.stats import beta as beta_dist

    for name, value in (("curve_alpha", alpha), ("curve_beta", beta)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name}={value!r} is not allowed: expected a positive number")
    return np.asarray(beta_dist.ppf(u, float(alpha), float(beta)), dtype=np.float64)


def _custom_positions(u: np.ndarray, points: Sequence[Sequence[float]]) -> np.ndarray:
    """Monotone cubic (PCHIP) through (0, 0), the control points and (1, 1), at the uniform grid."""
    from scipy.interpolate import PchipInterpolator

    xs, ys = _control_points(points)
    return np.asarray(PchipInterpolator(xs, ys)(u), dtype=np.float64)


def _control_points(points: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Validated knots including the fixed ends; a point at x = 0 or x = 1 must be the end itself."""
    try:
        arr = np.asarray(points, dtype=np.float64).reshape(-1, 2) if len(points) else np.zeros((0, 2))
    except (TypeError, ValueError):
        raise ValueError(f"curve_points={points!r} is not allowed: expected (x, y) pairs") from None
    bad = f"curve_points={tuple(map(tuple, arr.tolist()))!r} is not allowed: expected "
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr > 1):
        raise ValueError(bad + "points in [0, 1] x [0, 1]")
    keep = ~((arr[:, 0] == 0) & (arr[:, 1] == 0)) & ~((arr[:, 0] == 1) & (arr[:, 1] == 1))
    knots = np.vstack([[0.0, 0.0], arr[keep], [1.0, 1.0]])
    if not np.all(np.diff(knots[:, 0]) > 0):
        raise ValueError(bad + "x strictly increasing inside (0, 1) (x = 0 / 1 only as (0, 0) / (1, 1))")
    if not np.all(np.diff(knots[:, 1]) >= 0):
        raise ValueError(bad + "y non-decreasing (the curve runs from (0, 0) to (1, 1))")
    return knots[:, 0], knots[:, 1]


def _not_increasing(curve: Curve, alpha: float, beta: float, points: Sequence) -> ValueError:
    if curve == Curve.CUSTOM:
        return ValueError(f"curve_points={tuple(points)!r} give frames at the same position: make the "
                          "y values strictly increasing (no flat part) or use fewer frames")
    return ValueError(f"curve_alpha/curve_beta={(alpha, beta)!r} put frames at the same position "
                      "in float64: use parameters closer to 1 or fewer frames")


def positions_to_points(positions: Sequence[float]) -> tuple:
    """Custom-curve control points that reproduce `positions` exactly (e.g. the result of respace)."""
    p = _check_positions(positions)
    grid = np.linspace(0.0, 1.0, len(p))
    return tuple((float(x), float(y)) for x, y in zip(grid[1:-1], p[1:-1]))


# ------------------------------------------------------------------------------------------- tree

def bisection_tree(n_frames: int) -> dict[int, tuple[int, int, int]]:
    """In-between frame -> (lo, hi, level): m = (lo + hi) // 2 made from lo and hi; level 1 = coarsest."""
    n = _check_count("n_frames", n_frames, 2)
    tree: dict[int, tuple[int, int, int]] = {}
    spans = [(0, n - 1)]
    level = 0
    while spans:
        level += 1
        nxt = []
        for lo, hi in spans:
            if hi - lo >= 2:
                m = (lo + hi) // 2
                tree[m] = (lo, hi, level)
                nxt += [(lo, m), (m, hi)]
        spans = nxt
    return tree


# ------------------------------------------------------------------------------------ noise levels

def level_ddim_indices(levels: int, num_inference_steps: int, noise_min: float, noise_max: float,
                       shape: NoiseShape | str = NoiseShape.LINEAR) -> list[int]:
    """DDIM index of each level (element k-1 = level k), the authors' step_schedule[-k] (paper 3.2).

    lo = int(S*min), hi = int(S*max); u = linspace(0, 1, K); index = int(lo + (hi - lo) * f(u)) with
    f = u (linear, = the authors' linspace), u^2 (convex) or sqrt(u) (concave); the coarsest level gets
    hi. With K = 1 the authors' linspace would give the single level lo; we give it hi instead, because
    its only in-between frame has the farthest parents (the two inputs), which is what hi is for.
    """
    k = _check_count("levels", levels, 0)
    s = _check_count("num_inference_steps", num_inference_steps, 1)
    if not (0.0 < noise_min <= noise_max < 1.0):
        raise ValueError(f"noise_min/noise_max={(noise_min, noise_max)!r} is not allowed: expected "
                         "fractions with 0 < noise_min <= noise_max < 1")
    try:
        shape = NoiseShape(shape)
    except ValueError:
        raise ValueError(f"noise_shape={shape!r} is not one of {[e.value for e in NoiseShape]}") from None
    lo, hi = _floor(s * noise_min), _floor(s * noise_max)
    if k == 0:
        return []
    if k == 1:
        return [hi]
    u = np.linspace(0.0, 1.0, k)
    f = {NoiseShape.LINEAR: u, NoiseShape.CONVEX: u * u, NoiseShape.CONCAVE: np.sqrt(u)}[shape]
    schedule = [min(_floor(lo + (hi - lo) * x), s - 1) for x in f]
    return schedule[::-1]


def fraction_to_index(num_inference_steps: int, fraction: float) -> int:
    """DDIM index of a schedule fraction (a per-frame noise override), by the same int rule as the levels."""
    s = _check_count("num_inference_steps", num_inference_steps, 1)
    if not (isinstance(fraction, (int, float)) and 0.0 < fraction < 1.0):
        raise ValueError(f"noise={fraction!r} is not allowed: expected a fraction in (0, 1)")
    return min(_floor(s * fraction), s - 1)


# ------------------------------------------------------------------------------------------- plan

@dataclass(frozen=True)
class FrameNode:
    """One frame: its position, level (0 = input), parents, slerp weight and noise level."""
    index: int
    position: float
    level: int
    parents: Optional[tuple[int, int]]
    weight: Optional[float]         # (t_child - t_lo) / (t_hi - t_lo)
    ddim_index: Optional[int]       # DDIM index of the noise level the parents are noised to
    timestep: Optional[int]         # its DDPM timestep

    def to_json(self) -> dict:
        return {"index": self.index, "position": self.position, "level": self.level,
                "parents": None if self.parents is None else list(self.parents),
                "weight": self.weight, "ddim_index": self.ddim_index, "timestep": self.timestep}


@dataclass(frozen=True)
class Plan:
    """All frames of a run (nodes[i].index == i) and the number of tree levels."""
    nodes: tuple[FrameNode, ...]
    levels: int

    def __post_init__(self) -> None:
        for i, node in enumerate(self.nodes):
            if node.index != i:
                raise ValueError(f"nodes[{i}].index={node.index!r} is not allowed: expected {i}")

    @property
    def positions(self) -> np.ndarray:
        return np.array([n.position for n in self.nodes], dtype=np.float64)

    @property
    def order(self) -> tuple[int, ...]:
        """In-between frames in generation order: level 1, then level 2 left to right, ..."""
        return tuple(n.index for n in sorted(self.nodes[1:-1], key=lambda n: (n.level, n.index)))

    def children(self, i: int) -> tuple[int, ...]:
        """Frames made directly from frame i, ascending."""
        return self._children()[self._index(i)]

    def descendants(self, i: int) -> frozenset:
        """All frames whose parent chain includes frame i (what must be remade when i changes)."""
        found: set = set()
        stack = list(self.children(i))
        while stack:
            j = stack.pop()
            if j not in found:
                found.add(j)
                stack.extend(self._children()[j])
        return frozenset(found)


    def to_json(self) -> list[dict]:
        return [n.to_json() for n in self.nodes]

    def _index(self, i: int) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < len(self.nodes):
            raise ValueError(f"frame={i!r} is not allowed: expected an index from 0 to {len(self.nodes) - 1}")
        return int(i)

    def _children(self) -> tuple[tuple[int, ...], ...]:
        cached = self.__dict__.get("_children_cache")
        if cached is None:
            kids: list[list[int]] = [[] for _ in self.nodes]
            for n in self.nodes:
                for p in n.parents or ():
                    kids[p].append(n.index)
            cached = tuple(tuple(sorted(k)) for k in kids)
            object.__setattr__(self, "_children_cache", cached)
        return cached


def make_plan(settings: Settings, timesteps: Optional[Sequence[int]] = None) -> Plan:
    """The frame plan of a run: positions, bisection tree, per-level DDIM index and timestep."""
    s = settings.num_inference_steps
    ts = ddim_timesteps(s) if timesteps is None else np.asarray(timesteps, dtype=np.int64)
    if ts.shape != (s,):
        raise ValueError(f"timesteps has length {len(ts)}: expected num_inference_steps={s}")
    positions = curve_positions(settings.frames, settings.curve, settings.curve_alpha,
                                settings.curve_beta, settings.curve_points)
    tree = bisection_tree(settings.frames)
    levels = max((lvl for _, _, lvl in tree.values()), default=0)
    indices = level_ddim_indices(levels, s, settings.noise_min, settings.noise_max, settings.noise_shape)
    nodes = []
    for i, t in enumerate(positions):
        if i not in tree:
            nodes.append(FrameNode(i, float(t), 0, None, None, None, None))
            continue
        lo, hi, lvl = tree[i]
        w = float((t - positions[lo]) / (positions[hi] - positions[lo]))
        d = indices[lvl - 1]
        nodes.append(FrameNode(i, float(t), lvl, (lo, hi), w, d, int(ts[d])))
    return Plan(tuple(nodes), levels)


# ------------------------------------------------------------------------------------ re-spacing

def respace(positions: Sequence[float], distances: Sequence[float],
            count: Optional[int] = None) -> np.ndarray:
    """Positions that equalise adjacent perceptual distances (beyond the paper; IMPUS/DiffMorpher-style).

    The cumulative distance D_i to frame i is read as a piecewise-linear function of position; it is
    inverted at equally spaced targets D_total * j / (count - 1), count = the number of positions wanted
    (default: as many as given). Zero distances are skipped (the inverse jumps over them); the ends stay
    0 and 1 and the result is strictly increasing. Feed it to positions_to_points.
    """
    p = _check_positions(positions)
    count = len(p) if count is None else _check_count("count", count, 2)
    d = np.asarray(distances, dtype=np.float64).reshape(-1)
    if d.shape != (len(p) - 1,) or not np.all(np.isfinite(d)) or np.any(d < 0):
        raise ValueError(f"distances={np.asarray(distances).tolist()!r} is not allowed: expected "
                         f"{len(p) - 1} finite numbers >= 0 (one per adjacent pair of frames)")
    cum = np.concatenate([[0.0], np.cumsum(d)])
    total = cum[-1]
    if total <= 0:
        return np.linspace(0.0, 1.0, count) if count != len(p) else p.copy()
    targets = total * np.arange(count) / (count - 1)
    seg = np.clip(np.searchsorted(cum, targets, side="right") - 1, 0, len(p) - 2)
    span = cum[seg + 1] - cum[seg]
    frac = np.clip((targets - cum[seg]) / np.where(span > 0, span, 1.0), 0.0, 1.0)
    out = p[seg] + frac * (p[seg + 1] - p[seg])
    out[0], out[-1] = 0.0, 1.0
    if not np.all(np.diff(out) > 0):  # only for positions a few ulps apart
        raise ValueError("positions are too close together to respace in float64: use fewer frames")
    return out


def _check_positions(positions: Sequence[float]) -> np.ndarray:
    p = np.asarray(positions, dtype=np.float64).reshape(-1)
    if len(p) < 2 or p[0] != 0.0 or p[-1] != 1.0 or not np.all(np.diff(p) > 0):
        raise ValueError(f"positions={p.tolist()!r} is not allowed: expected a strictly increasing "
                         "sequence from 0 to 1")
    return p
