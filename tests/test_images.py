"""interp.images: loading every mode, input errors, sizing, fitting and tensor conversion."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from interp.errors import InputError
from interp.images import (
    MAX_PIXELS,
    fit_image,
    load_image,
    prepare_pair,
    target_size,
    to_pil,
    to_tensor,
)
from interp.settings import Fit, Settings

SIZE = (32, 24)


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A 68-byte PNG whose header claims width x height (its pixel data is not there)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 10)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)
            + chunk(b"IEND", b""))


def gray16() -> Image.Image:
    values = np.zeros(SIZE[::-1], np.uint16)
    values[:, 8:] = 32896   # 128 * 257
    values[:, 16:] = 65535
    return Image.fromarray(values)


def palette_with_transparency() -> Image.Image:
    image = Image.new("P", SIZE, 1)
    image.putpalette([0, 0, 0, 200, 10, 20] + [0] * 762)
    image.paste(0, (0, 0, 8, SIZE[1]))
    image.info["transparency"] = 0
    return image


# (builder, file format, {(x, y): expected RGB}) -- x 0..7, 8..15, 16.. are the three test columns
CASES = {
    "RGB": (lambda: Image.new("RGB", SIZE, (10, 200, 30)), "PNG", {(0, 0): (10, 200, 30)}),
    "RGBA": (lambda: _columns("RGBA", [(255, 0, 0, 0), (255, 0, 0, 255), (0, 0, 0, 128)]), "PNG",
             {(0, 0): (255, 255, 255), (8, 0): (255, 0, 0), (16, 0): (127, 127, 127)}),
    "LA": (lambda: _columns("LA", [(0, 0), (50, 255), (0, 255)]), "PNG",
           {(0, 0): (255, 255, 255), (8, 0): (50, 50, 50)}),
    "L": (lambda: Image.new("L", SIZE, 77), "PNG", {(0, 0): (77, 77, 77)}),
    "1": (lambda: _columns("1", [0, 1, 1]), "PNG", {(0, 0): (0, 0, 0), (8, 0): (255, 255, 255)}),
    "P": (lambda: Image.new("RGB", SIZE, (0, 0, 255)).convert("P"), "GIF", {(0, 0): (0, 0, 255)}),
    "P+transparency": (palette_with_transparency, "PNG",
                       {(0, 0): (255, 255, 255), (8, 0): (200, 10, 20)}),
    "CMYK": (lambda: Image.new("CMYK", SIZE, (0, 255, 255, 0)), "TIFF", {(0, 0): (255, 0, 0)}),
    "I;16": (gray16, "PNG", {(0, 0): (0, 0, 0), (8, 0): (128, 128, 128), (16, 0): (255,) * 3}),
    "I": (lambda: Image.fromarray((np.asarray(gray16()).astype(np.int32))), "TIFF",
          {(8, 0): (128, 128, 128), (16, 0): (255, 255, 255)}),
    "I 8-bit range": (lambda: Image.new("I", SIZE, 200), "TIFF", {(0, 0): (200, 200, 200)}),
    "F 0..1": (lambda: Image.new("F", SIZE, 0.5), "TIFF", {(0, 0): (128, 128, 128)}),
    "F 0..255": (lambda: Image.new("F", SIZE, 300.0), "TIFF", {(0, 0): (255, 255, 255)}),
}


def _columns(mode: str, colours: list) -> Image.Image:
    image = Image.new(mode, SIZE, colours[-1])
    for i, colour in enumerate(colours[:-1]):
        image.paste(colour, (8 * i, 0, 8 * i + 8, SIZE[1]))
    return image


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("via", ["file", "bytes", "pil"])
def test_every_mode_loads_as_rgb(case, via, tmp_path):
    build, fmt, expected = CASES[case]
    image = build()
    data = encode(image, fmt)
    if via == "file":
        (tmp_path / "in").write_bytes(data)
        source = tmp_path / "in"
    else:
        source = data if via == "bytes" else image
    loaded = load_image(source)
    assert loaded.mode == "RGB" and loaded.size == SIZE
    for xy, rgb in expected.items():
        assert loaded.getpixel(xy) == pytest.approx(rgb, abs=1), (xy, loaded.getpixel(xy))


def test_sixteen_bit_file_really_opens_as_sixteen_bit():
    assert Image.open(io.BytesIO(encode(gray16(), "PNG"))).mode == "I;16"


def test_exif_orientation_6_is_applied():
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (20, 0, 40, 20))  # left red, right blue
    exif = image.getexif()
    exif[0x0112] = 6  # stored rotated: display after turning 90 degrees clockwise
    loaded = load_image(encode(image, "JPEG", exif=exif, quality=95))
    assert loaded.size == (20, 40)
    top, bottom = loaded.getpixel((10, 5)), loaded.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60       # the left (red) half turned to the top
    assert bottom[2] > 200 and bottom[0] < 60


def test_animated_input_uses_first_frame():
    frames = [Image.new("RGB", SIZE, c) for c in [(255, 0, 0), (0, 255, 0)]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert load_image(data).getpixel((0, 0)) == (255, 0, 0)


def test_loaded_file_is_detached_from_disk(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(encode(Image.new("RGB", SIZE, (1, 2, 3)), "PNG"))
    loaded = load_image(str(path))
    path.unlink()
    assert loaded.getpixel((0, 0)) == (1, 2, 3)


@pytest.mark.parametrize("data, words", [
    (b"this is plain text, not a picture", "not an image"),
    (b"", "empty"),
    (encode(Image.new("RGB", (8, 64)), "PNG"), "too small"),
    (png_header(8000, 6000), "48.0 megapixels"),            # over our limit, under PIL's
    (png_header(20000, 20000), "more pixels than is safe"),  # over PIL's bomb limit
])
def test_bad_bytes_raise_input_error(data, words):
    with pytest.raises(InputError, match=words):
        load_image(data)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_huge_header_is_refused_before_decoding():
    # a real decode of this file would fail as "truncated": the size check must come first
    with pytest.raises(InputError, match="10000x10000.*downscale"):
        load_image(png_header(10000, 10000))


def test_oversized_pil_image_is_refused():
    with pytest.raises(InputError, match="megapixels"):
        load_image(Image.new("1", (8000, MAX_PIXELS // 8000 + 1)))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file_raises_input_error(fmt, tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="damaged or truncated"):
        load_image(path)


def test_file_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(InputError, match="folder"):
        load_image(tmp_path)
    with pytest.raises(TypeError, match="source"):
        load_image(12)


def test_input_error_is_a_value_error():
    assert issubclass(InputError, ValueError)


@pytest.mark.parametrize("width, height, long_side, expected", [
    (1024, 768, 512, (512, 384)),
    (768, 1024, 512, (384, 512)),
    (1000, 1000, 512, (512, 512)),
    (1920, 1080, 512, (512, 320)),   # 288 = 4.5 x 64 rounds up
    (1280, 720, 768, (768, 448)),    # 432 -> 448
    (5000, 100, 512, (512, 64)),     # never below 64
])
def test_target_size_by_hand(width, height, long_side, expected):
    assert target_size(width, height, long_side) == expected


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 20000), st.integers(1, 20000), st.integers(1, 32).map(lambda k: 64 * k))
def test_target_size_properties(width, height, long_side):
    w, h = target_size(width, height, long_side)
    assert w % 64 == 0 and h % 64 == 0 and min(w, h) >= 64
    assert max(w, h) == long_side
    assert (w - h) * (width - height) >= 0 and (w == h or width != height)  # orientation kept
    exact_short = long_side * min(width, height) / max(width, height)
    assert abs(min(w, h) - exact_short) <= 32 or min(w, h) == 64


@pytest.mark.parametrize("args", [(0, 10, 512), (10, 10, 500), (10, 10, 0), (10.5, 10, 512)])
def test_target_size_rejects(args):
    with pytest.raises(ValueError):
        target_size(*args)


def three_bands(width: int = 200, height: int = 100) -> Image.Image:
    """Red left quarter, green middle half, blue right quarter."""
    values = np.zeros((height, width, 3), np.uint8)
    values[:, : width // 4] = (255, 0, 0)
    values[:, width // 4: 3 * width // 4] = (0, 255, 0)
    values[:, 3 * width // 4:] = (0, 0, 255)
    return Image.fromarray(values)


def test_crop_keeps_the_centre():
    out = np.asarray(fit_image(three_bands(), (64, 64), Fit.CROP)).astype(int)
    assert out.shape == (64, 64, 3)
    assert out[..., 1].min() > 230            # only the green middle survives
    assert out[..., 0].max() < 30 and out[..., 2].max() < 30   # (LANCZOS ringing only)


def test_pad_letterboxes_on_black():
    out = np.asarray(fit_image(Image.new("RGB", (200, 100), (255, 0, 0)), (128, 128), Fit.PAD))
    assert (out[:32] == 0).all() and (out[96:] == 0).all()
    assert (out[32:96] == (255, 0, 0)).all()
    side = np.asarray(fit_image(Image.new("RGB", (100, 200), (0, 0, 255)), (128, 128), "pad"))
    assert (side[:, :32] == 0).all() and (side[:, 96:] == 0).all()
    assert (side[:, 32:96] == (0, 0, 255)).all()


def test_fit_image_rejects():
    image = Image.new("RGB", (10, 10))
    with pytest.raises(ValueError, match="size"):
        fit_image(image, (0, 64), Fit.CROP)
    with pytest.raises(ValueError):
        fit_image(image, (64, 64), "stretch")
    with pytest.raises(TypeError, match="image"):
        fit_image(np.zeros((4, 4, 3)), (64, 64))


def test_prepare_pair_uses_a_aspect(tmp_path):
    path_b = tmp_path / "b.png"
    path_b.write_bytes(encode(Image.new("RGB", (100, 300), (0, 0, 255)), "PNG"))
    a, b = prepare_pair(three_bands(300, 200), path_b, Settings(size=128, fit=Fit.PAD), 512)
    assert a.size == b.size == (128, 64)  # 300x200 -> 128 x 85.3 -> 64
    assert b.getpixel((0, 32)) == (0, 0, 0) and b.getpixel((64, 32)) == (0, 0, 255)


def test_to_tensor_values_and_round_trip():
    image = Image.new("RGB", (4, 2), (0, 255, 51))
    tensor = to_tensor([image])
    assert tensor.shape == (1, 3, 2, 4) and tensor.dtype == torch.float32
    assert tensor[0, :, 0, 0].tolist() == pytest.approx([-1.0, 1.0, 51 / 127.5 - 1])
    noise = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    images = [Image.fromarray(noise), Image.fromarray(noise[::-1].copy())]
    back = to_pil(to_tensor(images))
    for original, restored in zip(images, back):
        assert np.array_equal(np.asarray(restored), np.asarray(original))


def test_to_pil_clamps_and_rounds():
    tensor = torch.tensor([3.0, -5.0, 0.0]).view(3, 1, 1)   # [3, H, W] is accepted too
    (image,) = to_pil(tensor)
    assert image.getpixel((0, 0)) == (255, 0, 128)           # 127.5 rounds to even: 128


def test_tensor_conversion_rejects():
    with pytest.raises(ValueError, match="images"):
        to_tensor([])
    with pytest.raises(ValueError, match="sizes"):
        to_tensor([Image.new("RGB", (4, 4)), Image.new("RGB", (4, 5))])
    with pytest.raises(ValueError, match="shape"):
        to_pil(torch.zeros(1, 4, 2, 2))


@pytest.mark.parametrize("width, height, native, expected", [
    (3000, 2000, 512, (576, 384)),      # 3:2 at about 512^2 (the SD 1.x bucket)
    (900, 1600, 512, (384, 704)),       # 9:16
    (3000, 2000, 768, (960, 640)),      # SD 2.x-768
    (900, 1600, 768, (576, 1024)),      # 9:16 at 768^2: exactly 589824 px and the aspect
    (3000, 2000, 1024, (1280, 832)),    # 3:2 at 1024^2 (1216 x 832 is off by 2.6% in aspect)
    (900, 1600, 1024, (768, 1344)),     # SDXL's 9:16 bucket
    (2000, 2000, 1024, (1024, 1024)),
])
def test_native_size_keeps_the_aspect_at_the_family_scale(width, height, native, expected):
    from interp.images import native_size
    w, h = native_size(width, height, native)
    assert (w, h) == expected and w % 64 == 0 and h % 64 == 0
    assert 1 / 1.25 <= w * h / native ** 2 <= 1.25                  # about native^2 pixels
    assert abs(w / h - width / height) / (width / height) < 0.05    # the aspect ratio, within 5%


def test_working_size_order_exact_then_long_side_then_native():
    from interp.images import working_size
    assert working_size(300, 200, Settings(width=128, height=192), 512) == (128, 192)
    assert working_size(300, 200, Settings(size=128), 512) == (128, 64)
    assert working_size(300, 200, Settings(), 512) == (576, 384)
    with pytest.raises(ValueError, match="both or neither"):
        Settings(width=128)


@pytest.mark.parametrize("model", ["tiny-sd15", "tiny-sd21", "tiny-sdxl"])
def test_non_square_inputs_render_at_their_aspect(model, photo_pair):
    """3:2 and 9:16 inputs through a whole render: every frame at the working size of the first
    input's aspect (long side 128: 128 x 85.3 -> 128 x 64 and 72 x 128 -> 64 x 128, multiples of 64)."""
    from interp.models.load import load_bundle
    from interp.render import Interpolator
    engine = Interpolator(load_bundle(model))
    settings = Settings(frames=3, num_inference_steps=4, candidates=1, size=128, prompt="a photo")
    a, b = photo_pair
    wide = a.resize((300, 200))
    tall = a.resize((90, 160))
    for first, size in ((wide, (128, 64)), (tall, (64, 128))):
        result = engine.render(first, b, settings)
        assert all(im.size == size for im in result.images)
