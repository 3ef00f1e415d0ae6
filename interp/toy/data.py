"""Procedural data for the built-in toy model: one clean coloured shape per 64x64 image, with a caption.

Everything is seeded and deterministic (numpy Generators, PIL drawing; no global RNG). Positions and
sizes are fractions of the image side, so a spec draws at any resolution. Streams: training images come
from sample(n, seed), alpha blends from sample_blends(n, seed), evaluation pairs from
held_out_pairs(n, seed); each uses its own SeedSequence tag, so the streams never share draws.
"""
from __future__ import annotations


import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "heart")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 30),
    "green": (40, 170, 60),
    "cyan": (30, 200, 210),
    "blue": (30, 60, 220),
    "purple": (140, 50, 190),
    "pink": (245, 120, 190),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
    "beige": (230, 215, 180),
}
BLEND_CAPTION = "a faded blend of two shapes"
CLEAN_CAPTION = "a clean single shape"
SIZE_RANGE = (0.2, 0.36)  # circumradius as a fraction of the image side
MARGIN = 0.03  # gap between the shape's circumcircle and the image border (fraction of the side)
BLEND_ALPHA_RANGE = (0.3, 0.7)
SUPERSAMPLE = 4
STAR_INNER = 0.45  # inner / outer radius of the 5-pointed star
HEART_TILT = 30.0  # hearts are tilted at most this many degrees either way
# Rotational symmetry: angles are drawn in [0, 360 / order) so each image has one spec (circle: 0).
SYMMETRY = {"circle": 0, "square": 4, "triangle": 3, "star": 5, "heart": 1}
STREAM_TRAIN, STREAM_BLEND, STREAM_HELD_OUT, STREAM_FLAWED, STREAM_CHAINS = 0, 1, 2, 3, 4
FADED_ALPHA_RANGE = (0.1, 0.45)  # opacity of a faded single shape


@dataclass(frozen=True)
class ShapeSpec:
    """One image: shape, colour and background names; centre and circumradius as fractions; angle in degrees."""

    shape: str
    colour: str
    background: str
    cx: float
    cy: float
    size: float
    angle: float

    def __post_init__(self) -> None:
        for field_name, value, allowed in (("shape", self.shape, SHAPES), ("colour", self.colour, COLOURS),
                                           ("background", self.background, BACKGROUNDS)):
            if value not in allowed:
                raise ValueError(f"{field_name}={value!r} is not one of {list(allowed)}")
        for field_name in ("cx", "cy", "size", "angle"):
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{field_name} must be a finite number; got {value!r}")
        if not 0.0 < self.size <= 0.5:
            raise ValueError(f"size must be in (0, 0.5] (a fraction of the image side); got {self.size!r}")

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready data."""
        return asdict(self)


def _rng(seed: int, stream: int) -> np.random.Generator:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), stream]))


def _check_count(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer; got {n!r}")
    return int(n)


def sample_spec(rng: np.random.Generator, background: str | None = None) -> ShapeSpec:
    """A random spec: uniform shape, colour and background (unless given), size, position and angle."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator; got {type(rng).__name__}")
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
    bg_draw = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
    size = float(rng.uniform(*SIZE_RANGE))
    lo, hi = size + MARGIN, 1.0 - size - MARGIN
    cx, cy = float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))
    order = SYMMETRY[shape]
    if order == 0:
        angle = 0.0
    elif shape == "heart":
        angle = float(rng.uniform(-HEART_TILT, HEART_TILT))
    else:
        angle = float(rng.uniform(0.0, 360.0 / order))
    return ShapeSpec(shape, colour, background or bg_draw, cx, cy, size, angle)


def _rotate(points: Sequence[tuple[float, float]], angle: float) -> list[tuple[float, float]]:
    """Rotate unit-frame points (y down) clockwise on screen by `angle` degrees."""
    a = math.radians(angle)
    ca, sa = math.cos(a), math.sin(a)
    return [(x * ca - y * sa, x * sa + y * ca) for x, y in points]


def _regular(n: int, start_deg: float = -90.0) -> list[tuple[float, float]]:
    angles = [math.radians(start_deg + 360.0 * k / n) for k in range(n)]
    return [(math.cos(a), math.sin(a)) for a in angles]


def _heart_raw(n: int) -> list[tuple[float, float]]:
    pts = []
    for k in range(n):
        t = 2.0 * math.pi * k / n
        x = 16.0 * math.sin(t) ** 3
        y = -(13.0 * math.cos(t) - 5.0 * math.cos(2 * t) - 2.0 * math.cos(3 * t) - math.cos(4 * t))
        pts.append((x, y))
    return pts


def _heart(n: int = 64) -> list[tuple[float, float]]:
    """The classic parametric heart (point down), centred on its bounding box and scaled into the unit circle."""
    raw = _heart_raw(n)
    y_mid = (min(y for _, y in raw) + max(y for _, y in raw)) / 2.0
    scale = max(math.hypot(x, y - y_mid) for x, y in raw)
    return [(x / scale, (y - y_mid) / scale) for x, y in raw]


def outline(spec: ShapeSpec) -> list[tuple[float, float]]:
    """The shape's polygon in image fractions (a circle as a 64-gon), rotated and placed."""
    if spec.shape == "circle":
        unit = _regular(64)
    elif spec.shape == "square":
        unit = _regular(4, -135.0)
    elif spec.shape == "triangle":
        unit = _regular(3)
    elif spec.shape == "star":
        outer, inner = _regular(5), _regular(5, -90.0 + 36.0)
        inner = [(x * STAR_INNER, y * STAR_INNER) for x, y in inner]
        unit = [p for pair in zip(outer, inner) for p in pair]
    else:
        unit = _heart()
    return [(spec.cx + x * spec.size, spec.cy + y * spec.size) for x, y in _rotate(unit, spec.angle)]


def draw(spec: ShapeSpec, size: int = 64) -> Image.Image:
    """The spec as an RGB image of size x size, anti-aliased by drawing at 4x and box-downsampling."""
    if not isinstance(spec, ShapeSpec):
        raise TypeError(f"spec must be a ShapeSpec; got {type(spec).__name__}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an integer >= 8; got {size!r}")
    big = size * SUPERSAMPLE
    image = Image.new("RGB", (big, big), BACKGROUNDS[spec.background])
    pen = ImageDraw.Draw(image)
    if spec.shape == "circle":
        r = spec.size * big
        box = (spec.cx * big - r, spec.cy * big - r, spec.cx * big + r, spec.cy * big + r)
        pen.ellipse(box, fill=COLOURS[spec.colour])
    else:
        pen.polygon([(x * big, y * big) for x, y in outline(spec)], fill=COLOURS[spec.colour])
    return image.resize((size, size), Image.BOX)


def caption(spec: ShapeSpec) -> str:
    """The caption of a spec, e.g. "a red circle on a white background" ("an orange ...")."""
    article = "an" if spec.colour[0] in "aeiou" else "a"
    return f"{article} {spec.colour} {spec.shape} on a {spec.background} background"


def sample(n: int, seed: int = 0, size: int = 64) -> list[tuple[Image.Image, str, ShapeSpec]]:
    """n training examples (image, caption, spec), the same for the same (n, seed) and a prefix for smaller n."""
    rng = _rng(seed, STREAM_TRAIN)
    specs = [sample_spec(rng) for _ in range(_check_count(n))]
    return [(draw(s, size), caption(s), s) for s in specs]


def blend(img1: Image.Image, img2: Image.Image, alpha: float) -> Image.Image:
    """Pixel-space alpha blend (1 - alpha) * img1 + alpha * img2 (the ghosting the method avoids)."""
    if not isinstance(img1, Image.Image) or not isinstance(img2, Image.Image):
        raise TypeError("img1 and img2 must be PIL images")
    if img1.size != img2.size:
        raise ValueError(f"img1 and img2 must have equal sizes; got {img1.size} and {img2.size}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be a number in [0, 1]; got {alpha!r}")
    return Image.blend(img1.convert("RGB"), img2.convert("RGB"), float(alpha))


def sample_blends(n: int, seed: int = 0, size: int = 64
                  ) -> list[tuple[Image.Image, str, tuple[ShapeSpec, ShapeSpec, float]]]:
    """n alpha blends of two different random shapes, captioned "a faded blend of two shapes".

    Half of the pairs share a background (only the shapes ghost), half do not.
    """
    rng = _rng(seed, STREAM_BLEND)
    out = []
    for _ in range(_check_count(n)):
        a = sample_spec(rng)
        same_bg = bool(rng.integers(2))
        b = sample_spec(rng, background=a.background if same_bg else None)
        alpha = float(rng.uniform(*BLEND_ALPHA_RANGE))
        out.append((blend(draw(a, size), draw(b, size), alpha), BLEND_CAPTION, (a, b, alpha)))
    return out


def sample_flawed(n: int, seed: int = 0, size: int = 64) -> list[tuple[Image.Image, str]]:
    """n images that are not one clean shape, in turn: a single shape faded into its background, an
    empty background, two full-strength shapes side by side. Captioned like blends: what CLIP
    ranking should push down besides ghosting."""
    rng = _rng(seed, STREAM_FLAWED)
    out = []
    for i in range(_check_count(n)):
        a = sample_spec(rng)
        empty = Image.new("RGB", (size, size), BACKGROUNDS[a.background])
        kind = i % 3
        if kind == 0:
            image = blend(empty, draw(a, size), float(rng.uniform(*FADED_ALPHA_RANGE)))
        elif kind == 1:
            image = empty
        else:   # two small shapes side by side
            b = sample_spec(rng, background=a.background)
            r, y1, y2 = (float(v) for v in rng.uniform((0.12, 0.3, 0.3), (0.2, 0.7, 0.7)))
            image = two_shapes(replace(a, cx=0.27, cy=y1, size=r), replace(b, cx=0.73, cy=y2, size=r), size)
        out.append((image, BLEND_CAPTION))
    return out


def two_shapes(a: ShapeSpec, b: ShapeSpec, size: int = 64) -> Image.Image:
    """Both shapes at full strength on a's background (b drawn over a)."""
    if a.background != b.background:
        raise ValueError(f"two_shapes needs one background; got {a.background!r} and {b.background!r}")
    first, second = np.asarray(draw(a, size), np.float64), np.asarray(draw(b, size), np.float64)
    bg = np.array(BACKGROUNDS[a.background], np.float64)
    # b's coverage per pixel from its distance to the background (anti-aliased edges blend)
    cover = np.clip(np.linalg.norm(second - bg, axis=-1) / max(np.linalg.norm(np.array(COLOURS[b.colour]) - bg),
                                                              1.0), 0.0, 1.0)[..., None]
    return Image.fromarray((first * (1 - cover) + second * cover).round().astype(np.uint8))


def example_pairs() -> list[tuple[ShapeSpec, ShapeSpec]]:
    """The app's example pairs on the toy model (assets/examples/toy holds them drawn at 64 px)."""
    return [(ShapeSpec("circle", "red", "white", 0.5, 0.5, 0.3, 0.0),
             ShapeSpec("square", "blue", "white", 0.5, 0.5, 0.3, 0.0)),
            (ShapeSpec("star", "yellow", "black", 0.45, 0.5, 0.32, 0.0),
             ShapeSpec("heart", "pink", "black", 0.55, 0.5, 0.3, 0.0)),
            (ShapeSpec("triangle", "green", "beige", 0.5, 0.55, 0.32, 0.0),
             ShapeSpec("circle", "green", "beige", 0.5, 0.5, 0.26, 0.0))]


def held_out_pairs(n: int, seed: int = 0, same_background: bool = True,
                   same_colour: bool = False) -> list[tuple[ShapeSpec, ShapeSpec]]:
    """n evaluation pairs (spec_a, spec_b) from a stream disjoint from training; b differs from a in shape.

    With same_background (the default) both ends share a background, so in-between frames are judged on
    the shape alone. With same_colour, b takes a's colour too (a pure shape morph, whose in-betweens
    can stay in the palette; a colour change passes through off-palette hues by nature).
    """
    rng = _rng(seed, STREAM_HELD_OUT)
    pairs = []
    for _ in range(_check_count(n)):
        a = sample_spec(rng)
        b = sample_spec(rng, background=a.background if same_background else None)
        while b.shape == a.shape:
            b = sample_spec(rng, background=a.background if same_background else None)
        if same_colour:
            b = replace(b, colour=a.colour)
        pairs.append((a, b))
    return pairs


def held_out_chains(n: int, length: int, seed: int = 0) -> list[list[ShapeSpec]]:
    """n keyframe sequences of `length` specs from a stream disjoint from training: one background
    per sequence, each keyframe another shape than the one before it (colours may change)."""
    rng = _rng(seed, STREAM_CHAINS)
    chains = []
    for _ in range(_check_count(n)):
        chain = [sample_spec(rng)]
        while len(chain) < length:
            spec = sample_spec(rng, background=chain[0].background)
            if spec.shape != chain[-1].shape:
                chain.append(spec)
        chains.append(chain)
    return chains


def to_tensor(images: Sequence[Image.Image]) -> "Any":
    """Images as a float32 torch tensor [B, 3, H, W] in [-1, 1] (the VAE's input range)."""
    import torch

    if isinstance(images, Image.Image) or not isinstance(images, Sequence) or not images:
        raise TypeError("images must be a non-empty sequence of PIL images")
    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()


def to_uint8(images: Sequence[Image.Image]) -> np.ndarray:
    """Images as a uint8 array [B, H, W, 3] (compact storage for training sets)."""
    return np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in images])


# OpenPose slots (interp.pose.KEYPOINT_NAMES): the neck is the shape's centre; the neck's five limbs
# (to nose, shoulders, hips) are spokes to the shape's extremes; each spoke's next joint (eye, elbows,
# knees) marks a second point on the rim where the shape has one (circle: the rim between spokes).
CENTRE_SLOT = 1
SPOKE_SLOTS = (0, 2, 5, 8, 11)
RIM_SLOTS = (14, 3, 6, 9, 12)


def _unit_keypoints(shape: str) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(spoke tips, rim points) of a shape in its unit frame before rotation."""
    if shape == "circle":
        return _regular(4), _regular(4, -45.0)
    if shape == "square":
        return _regular(4, -135.0), []
    if shape == "triangle":
        return _regular(3), []
    if shape == "star":
        return _regular(5), []
    pts = _heart(64)
    tip = max(pts, key=lambda p: p[1])
    left_lobe = min(pts[33:], key=lambda p: p[1])
    right_lobe = min(pts[1:32], key=lambda p: p[1])
    cleft = pts[0]
    left, right = min(pts, key=lambda p: p[0]), max(pts, key=lambda p: p[0])
    return [tip, left_lobe, right_lobe, cleft], [left, right]


def keypoints(spec: ShapeSpec, size: int = 64) -> list[tuple[float, float] | None]:
    """The shape's skeleton in OpenPose's 18 slots, in pixels: centre (neck), extremes, rim; None = unused."""
    if not isinstance(spec, ShapeSpec):
        raise TypeError(f"spec must be a ShapeSpec; got {type(spec).__name__}")
    spokes, rim = _unit_keypoints(spec.shape)
    slots: list[tuple[float, float] | None] = [None] * 18

    def place(p: tuple[float, float]) -> tuple[float, float]:
        (x, y), = _rotate([p], spec.angle)
        px = min(max((spec.cx + x * spec.size) * size, 0.0), float(size))
        py = min(max((spec.cy + y * spec.size) * size, 0.0), float(size))
        return (px, py)

    slots[CENTRE_SLOT] = place((0.0, 0.0))
    for slot, p in zip(SPOKE_SLOTS, spokes):
        slots[slot] = place(p)
    for slot, p in zip(RIM_SLOTS if spec.shape == "circle" else RIM_SLOTS[1:3], rim):
        slots[slot] = place(p)
    return slots


def pose(spec: ShapeSpec, size: int = 64) -> "Any":
    """The skeleton as an interp.pose.Pose (one person, confidence 1) on a size x size canvas."""
    from interp.pose.keypoints import MISSING, Pose

    person = tuple(MISSING if kp is None else (kp[0], kp[1], 1.0) for kp in keypoints(spec, size))
    return Pose(size, size, (person,))


def pose_image(spec: ShapeSpec, size: int = 64) -> Image.Image:
    """The skeleton drawn with controlnet_aux's OpenPose drawer (interp.pose.render_pose), RGB on black."""
    from interp.pose.draw import render_pose

    return render_pose(pose(spec, size), size, size)
