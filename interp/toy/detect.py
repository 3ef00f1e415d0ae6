"""Is a toy frame "on the manifold"? Exactly one clean shape in a palette colour on a palette background.

After a 3x3 median filter (decoder noise), a frame passes when (1) its border is one palette background;
(2) the pixels of the dominant palette colour form mostly ONE connected component: the core; (3) the core
fills its own outline (no faded holes); (4) few foreground pixels (away from the background colour) are
stray: outside the core's outline and not a background-to-colour mixture within 3 px of it (blurred
edges are such mixtures), after an opening that drops specks. An alpha blend fails: its shapes are faded,
off-palette colours that leave no large palette core, or its second ghost is stray.
single_shape applies the same tests with the shape's own median colour instead of the palette: it
separates "one clean shape in some in-between colour" (a colour morph) from ghosting.
The shape kind comes from rotation-invariant outline features (fill = area / (pi R^2) about the centroid and
the harmonics of the radial profile), matched to the nearest prototypes drawn by data.draw.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

import numpy as np
from PIL import Image

from . import data

COLOUR_TOL = 40.0        # RGB distance to count as a palette colour (half the closest pair, orange-yellow)
BACKGROUND_TOL = 40.0    # RGB distance to count as the background colour
MIN_MIX = 0.7            # a shape pixel is at least 70% its colour, 30% background (model's shading)
MIN_AREA = 0.008         # core pixels as a fraction of the image (the smallest shapes are ~0.02)
MIN_PURITY = 0.85        # core pixels / pixels inside the core's filled outline
MAX_STRAY = 0.10         # foreground pixels outside the core's edge band / core pixels
MIN_SHARE = 0.90         # largest component / all core pixels of the dominant colour
EDGE_BAND = 3            # pixels of blurred edge (background-to-colour mixtures) allowed around the core


@dataclass(frozen=True)
class Detection:
    """One clean shape: its kind, colour and background names, and the evidence."""
    shape: str
    colour: str
    background: str
    area: float          # core pixels as a fraction of the image
    purity: float        # core / filled outline
    stray: float         # foreground outside the edge band / core


def _names_and_colours(table: dict) -> tuple:
    return list(table), np.array(list(table.values()), dtype=np.float64)


def _background(rgb: np.ndarray) -> Optional[str]:
    """The palette background that the border pixels share, or None (e.g. a blend of two backgrounds)."""
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    median = np.median(border, axis=0)
    names, colours = _names_and_colours(data.BACKGROUNDS)
    dist = np.linalg.norm(colours - median, axis=1)
    near = np.linalg.norm(border - colours[dist.argmin()], axis=1) < BACKGROUND_TOL
    if dist.min() >= BACKGROUND_TOL or near.mean() < 0.9:
        return None
    return names[int(dist.argmin())]


def _labels(rgb: np.ndarray, background: str) -> tuple:
    """(foreground mask, palette index per pixel or -1): a pixel shows colour c when it lies within
    COLOUR_TOL of the segment background -> c at least MIN_MIX of the way to c (a shaded shape)."""
    bg = np.array(data.BACKGROUNDS[background], dtype=np.float64)
    foreground = np.linalg.norm(rgb - bg, axis=-1) >= BACKGROUND_TOL
    _, colours = _names_and_colours(data.COLOURS)
    axis = colours - bg                                              # [C, 3]
    t = np.clip(((rgb - bg) @ axis.T) / (axis * axis).sum(1), 0.0, 1.0)   # [H, W, C]
    dist = np.linalg.norm(rgb[:, :, None, :] - (bg + t[..., None] * axis), axis=-1)
    dist = np.where(t >= MIN_MIX, dist, np.inf)
    ok = foreground & (dist.min(-1) < COLOUR_TOL)
    return foreground, np.where(ok, dist.argmin(-1), -1)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (1 + int(sizes.argmax()))


def _segment(rgb: np.ndarray, background: np.ndarray, colour: np.ndarray) -> tuple:
    """(t, distance) of each pixel on the segment background -> colour: t = how far along it lies."""
    axis = colour - background
    t = np.clip(((rgb - background) @ axis) / max(float(axis @ axis), 1e-9), 0.0, 1.0)
    return t, np.linalg.norm(rgb - (background + t[..., None] * axis), axis=-1)


def _judge(rgb: np.ndarray, bg: np.ndarray, foreground: np.ndarray, core: np.ndarray,
           colour: np.ndarray) -> Optional[tuple]:
    """(purity, stray) when the core is one clean shape of `colour`, else None (see the module doc)."""
    from scipy import ndimage
    if core.sum() < MIN_AREA * core.size:
        return None
    outline = ndimage.binary_fill_holes(core)
    band = ndimage.binary_dilation(outline, iterations=EDGE_BAND)
    edge = band & (_segment(rgb, bg, colour)[1] < COLOUR_TOL)
    stray = ndimage.binary_opening(foreground & ~outline & ~edge)
    purity, stray_share = float(core.sum() / outline.sum()), float(stray.sum() / core.sum())
    if purity < MIN_PURITY or stray_share > MAX_STRAY:
        return None
    return purity, stray_share


def _prepare(image: Image.Image) -> tuple:
    """(median-filtered RGB, background name or None)."""
    from scipy import ndimage
    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL image, got {type(image).__name__}")
    rgb = ndimage.median_filter(np.asarray(image.convert("RGB"), dtype=np.float64), size=(3, 3, 1))
    return rgb, _background(rgb)


def classify(image: Image.Image) -> Optional[Detection]:
    """The one clean shape in a palette colour a toy frame shows, or None when it is off the manifold
    (blend, ghosts, a second shape, an off-palette colour, nothing)."""
    rgb, background = _prepare(image)
    if background is None:
        return None
    foreground, label = _labels(rgb, background)
    counts = np.bincount(label[label >= 0], minlength=len(data.COLOURS))
    colour = int(counts.argmax())
    core = _largest_component(label == colour)
    if core.sum() < MIN_SHARE * counts[colour]:
        return None
    palette = np.array(list(data.COLOURS.values())[colour], dtype=np.float64)
    bg = np.array(data.BACKGROUNDS[background], dtype=np.float64)
    judged = _judge(rgb, bg, foreground, core, palette)
    if judged is None:
        return None
    return Detection(shape=shape_of(core), colour=list(data.COLOURS)[colour], background=background,
                     area=float(core.mean()), purity=judged[0], stray=judged[1])


def on_manifold(image: Image.Image) -> bool:
    """True when classify finds exactly one clean shape in a palette colour."""
    return classify(image) is not None


def single_shape(image: Image.Image) -> bool:
    """Colour-agnostic: one clean shape of one uniform colour (any colour) on a palette background.

    The same tests as classify with the palette replaced by the shape's own median colour, so a
    morph through in-between hues passes while ghosts, blends and second shapes still fail.
    """
    from scipy import ndimage
    rgb, background = _prepare(image)
    if background is None:
        return False
    bg = np.array(data.BACKGROUNDS[background], dtype=np.float64)
    foreground = np.linalg.norm(rgb - bg, axis=-1) >= BACKGROUND_TOL
    blob = _largest_component(ndimage.binary_opening(foreground))
    inner = ndimage.binary_erosion(blob, iterations=2)
    if not inner.any():
        return False
    colour = np.median(rgb[inner], axis=0)
    t, dist = _segment(rgb, bg, colour)
    core = _largest_component(blob & (t >= MIN_MIX) & (dist < COLOUR_TOL))
    return _judge(rgb, bg, foreground, core, colour) is not None


CHECKS = {"on_manifold": on_manifold, "single_shape": single_shape}   # the harness's toy checks


# ------------------------------------------------------------------------------ shape kind

def outline_features(mask: np.ndarray, bins: int = 36) -> np.ndarray:
    """Rotation-invariant outline features: fill = area / (pi R^2) about the centroid, and the
    magnitudes of harmonics 1-5 of the radial profile r(theta) / mean r (square: 4, triangle: 3, ...)."""
    ys, xs = np.nonzero(mask)
    dx, dy = xs - xs.mean(), ys - ys.mean()
    r = np.sqrt(dx ** 2 + dy ** 2) + 0.5
    theta = ((np.arctan2(dy, dx) + np.pi) / (2 * np.pi) * bins).astype(int) % bins
    profile = np.zeros(bins)
    np.maximum.at(profile, theta, r)
    spectrum = np.abs(np.fft.rfft(profile)) / (profile.sum() + 1e-9)
    return np.concatenate([[len(xs) / (np.pi * r.max() ** 2)], spectrum[1:6] * 4])


@functools.lru_cache(maxsize=1)
def _prototypes() -> tuple:
    """Features of every shape kind drawn by data.draw at several sizes and angles (computed once)."""
    rng = np.random.default_rng(0)
    names, feats = [], []
    for shape in data.SHAPES:
        for _ in range(12):
            spec = data.sample_spec(rng)
            spec = data.ShapeSpec(shape, spec.colour, spec.background, spec.cx, spec.cy, spec.size,
                                  spec.angle if shape not in ("circle",) else 0.0)
            rgb = np.asarray(data.draw(spec), dtype=np.float64)
            _, label = _labels(rgb, spec.background)
            names.append(shape)
            feats.append(outline_features(_largest_component(label >= 0)))
    return tuple(names), np.array(feats)


def shape_of(mask: np.ndarray) -> str:
    """The shape kind whose prototypes' outline features are nearest (3-nearest-neighbour vote)."""
    names, feats = _prototypes()
    dist = np.linalg.norm(feats - outline_features(mask), axis=1)
    votes = [names[i] for i in np.argsort(dist)[:3]]
    return max(sorted(set(votes)), key=lambda n: (votes.count(n), -votes.index(n)))
