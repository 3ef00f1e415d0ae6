"""The toy detector (interp/toy/detect.py): clean shapes pass with their kind and colour; alpha
blends of two shapes, empty, noisy and two-shape images fail."""
import numpy as np
import pytest
from PIL import Image

def test_detector_accepts_clean_shapes_with_kind_and_colour():
    from interp.toy import data, detect
    clean = data.sample(80, seed=11)
    found = [detect.classify(im) for im, _, _ in clean]
    assert sum(f is not None for f in found) / len(clean) >= 0.97
    right = [f is not None and (f.shape, f.colour, f.background) == (s.shape, s.colour, s.background)
             for f, (_, _, s) in zip(found, clean)]
    assert sum(right) / len(clean) >= 0.95


def test_detector_rejects_alpha_blends_of_two_shapes():
    from interp.toy import data, detect
    blends = data.sample_blends(80, seed=11)
    assert sum(detect.on_manifold(im) for im, _, _ in blends) / len(blends) <= 0.05
    pairs = data.held_out_pairs(40, seed=3)   # includes same-colour pairs (faded fringes)
    mid = [data.blend(data.draw(a), data.draw(b), 0.5) for a, b in pairs]
    assert not any(detect.on_manifold(im) for im in mid)
    # colour-agnostic: a 50/50 blend of two same-coloured shapes can look like one odd shape
    assert sum(map(detect.single_shape, mid)) <= 0.15 * len(mid)


def test_detector_rejects_empty_noisy_and_two_shape_images():
    from interp.toy import data, detect
    assert detect.classify(Image.new("RGB", (64, 64), data.BACKGROUNDS["white"])) is None
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert detect.classify(Image.fromarray(noise)) is None
    one = data.ShapeSpec("circle", "red", "white", 0.25, 0.25, 0.18, 0.0)
    two = data.ShapeSpec("square", "blue", "white", 0.72, 0.72, 0.18, 10.0)
    both = np.minimum(np.asarray(data.draw(one)), np.asarray(data.draw(two)))  # both drawn, opaque
    assert detect.classify(data.draw(one)).shape == "circle"
    assert detect.classify(Image.fromarray(both)) is None
    with pytest.raises(TypeError, match="PIL image"):
        detect.classify(np.zeros((64, 64, 3)))


def test_detector_tolerates_decoder_like_blur_and_noise_but_not_blends():
    from PIL import ImageFilter
    from interp.toy import data, detect
    rng = np.random.default_rng(0)

    def degrade(im):
        a = np.asarray(im.filter(ImageFilter.GaussianBlur(1.0)), float) + rng.normal(0, 12, (64, 64, 3))
        return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    clean = [degrade(im) for im, _, _ in data.sample(40, seed=12)]
    blends = [degrade(im) for im, _, _ in data.sample_blends(40, seed=12)]
    assert sum(map(detect.on_manifold, clean)) >= 36
    assert sum(map(detect.on_manifold, blends)) <= 2


def test_single_shape_accepts_off_palette_colours_that_on_manifold_rejects():
    from interp.toy import data, detect
    brown, white = np.array([140.0, 80.0, 30.0]), np.array([255.0, 255.0, 255.0])  # brown: off-palette
    shapes = []
    for _, _, spec in data.sample(20, seed=13):
        mask_spec = data.ShapeSpec(spec.shape, "blue", "black", spec.cx, spec.cy, spec.size, spec.angle)
        cover = np.asarray(data.draw(mask_spec), float)[..., 2:3] / data.COLOURS["blue"][2]
        shapes.append(Image.fromarray((white * (1 - cover) + brown * cover).round().astype(np.uint8)))
    assert all(map(detect.single_shape, shapes))
    assert not any(map(detect.on_manifold, shapes))
