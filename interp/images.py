"""Input images: loading any PIL-readable file as RGB, sizing to multiples of 64, tensors.

Images are RGB PIL images outside the models and float32 tensors in [-1, 1] ([B, 3, H, W]) inside,
the range Stable Diffusion's VAE expects.
"""
from __future__ import annotations

import io
import logging
import math
import struct
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from interp.errors import InputError
from interp.settings import Fit, Settings

logger = logging.getLogger(__name__)

ImageSource = Union[str, Path, bytes, Image.Image]

MAX_PIXELS = 40_000_000   # larger inputs are refused before decoding (decompression bombs)
MIN_SIDE = 16             # pixels; smaller inputs carry too little to interpolate
SIZE_MULTIPLE = 64        # both sides of the working size (VAE factor 8 x UNet downsampling 8)
_TRANSPARENT_MODES = ("RGBA", "LA", "PA", "RGBa")
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error)


def load_image(source: ImageSource, keep: Optional[int] = None) -> Image.Image:
    """An RGB image from a path, encoded bytes or a PIL image; InputError says what is wrong.
    keep: shrink_to(image, keep) (a JPEG is decoded at a reduced scale when that suffices)."""
    if isinstance(source, Image.Image):
        _check_dimensions(source.size, "the given image")
        return shrink_to(_finish(source, "the given image"), keep)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = f"the uploaded data ({len(data)} bytes)"
        if not data:
            raise InputError(f"{name} is empty: upload an image file (PNG, JPEG, WebP, ...)")
        return shrink_to(_decode(io.BytesIO(data), name, keep), keep)
    if isinstance(source, (str, Path)):
        path = Path(source)
        _check_file(path)
        with path.open("rb") as handle:
            return shrink_to(_decode(handle, f"'{path}'", keep), keep)
    raise TypeError(f"source={type(source).__name__} is not supported: expected a path, "
                    "bytes or a PIL.Image.Image")


def _check_file(path: Path) -> None:
    """InputError for a missing path, a directory or an empty file."""
    if not path.exists():
        raise InputError(f"image file '{path}' does not exist: check the path")
    if path.is_dir():
        raise InputError(f"'{path}' is a folder, not an image file: choose a file inside it")
    if path.stat().st_size == 0:
        raise InputError(f"image file '{path}' is empty (0 bytes): choose another file "
                         "or save the image again")


def _decode(handle: io.IOBase, name: str, keep: Optional[int] = None) -> Image.Image:
    """Open lazily, check the header's size, then decode; PIL's errors become InputError."""
    try:
        with Image.open(handle) as image:
            _check_dimensions(image.size, name)
            if keep and image.format == "JPEG":
                image.draft("RGB", (keep, keep))   # DCT scaling: both sides stay >= keep
            if getattr(image, "n_frames", 1) > 1:
                logger.info("%s has %d frames; using the first", name, image.n_frames)
            image.load()
            return _finish(image, name)
    except InputError:
        raise
    except Image.DecompressionBombError as err:
        raise InputError(f"{name} claims more pixels than is safe to decode ({err}): "
                         f"use an image of at most {MAX_PIXELS / 1e6:.0f} megapixels") from err
    except UnidentifiedImageError as err:
        raise InputError(f"{name} is not an image or is in a format that cannot be read: "
                         "use PNG, JPEG, WebP, BMP, GIF or TIFF") from err
    except _DECODE_ERRORS as err:
        raise InputError(f"{name} could not be decoded; the file is damaged or truncated "
                         f"({err}): save or download it again") from err


def shrink_to(image: Image.Image, keep: Optional[int]) -> Image.Image:
    """The image scaled down (never up) so that its short side is `keep` and its long side at most
    4 x keep: every working size up to `keep` is then still a downscale (for aspect ratios up to
    4:1). None keeps the image as it is."""
    if not keep:
        return image
    width, height = image.size
    scale = min(1.0, keep / min(width, height), 4 * keep / max(width, height))
    if scale >= 1.0:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _check_dimensions(size: tuple[int, int], name: str) -> None:
    """InputError for images over MAX_PIXELS or under MIN_SIDE on a side."""
    width, height = size
    if width * height > MAX_PIXELS:
        raise InputError(f"{name} is {width}x{height} ({width * height / 1e6:.1f} megapixels), "
                         f"over the limit of {MAX_PIXELS / 1e6:.0f} megapixels: downscale it first")
    if min(width, height) < MIN_SIDE:
        raise InputError(f"{name} is {width}x{height}, too small: each side needs at least "
                         f"{MIN_SIDE} pixels")


def _finish(image: Image.Image, name: str) -> Image.Image:
    """EXIF orientation applied, then any mode converted to 8-bit RGB."""
    image = ImageOps.exif_transpose(image)
    return to_rgb(image, name)


def to_rgb(image: Image.Image, name: str = "image") -> Image.Image:
    """8-bit RGB: alpha composited on white, 16-bit and float data rescaled, the rest converted."""
    try:
        return _convert_rgb(image)
    except ValueError as err:
        raise InputError(f"{name} uses the colour mode {image.mode!r}, which cannot be converted "
                         "to RGB: save it as an RGB PNG or JPEG") from err


def _convert_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image.copy()
    if mode == "La":  # premultiplied LA only converts to LA
        image, mode = image.convert("LA"), "LA"
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in _TRANSPARENT_MODES:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode.startswith("I") or mode.startswith("F"):
        return Image.fromarray(_scale_to_uint8(np.asarray(image), mode)).convert("RGB")
    return image.convert("RGB")


def _scale_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Gray levels to 0..255: I;16 / 257; I as 16-bit if a value > 255; F as 0..1 if max <= 1."""
    data = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if mode.startswith("I;16") or (mode.startswith("I") and data.max(initial=0) > 255):
        data = data / 257.0
    elif mode.startswith("F") and data.max(initial=0) <= 1.0:
        data = data * 255.0
    return np.clip(np.rint(data), 0, 255).astype(np.uint8)


def target_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """(w, h) with A's aspect ratio, the long side = long_side, both multiples of 64 (>= 64)."""
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name}={value!r} is not allowed: expected a positive integer")
    if not isinstance(long_side, int) or long_side < SIZE_MULTIPLE or long_side % SIZE_MULTIPLE:
        raise ValueError(f"long_side={long_side!r} is not allowed: expected a multiple of "
                         f"{SIZE_MULTIPLE} >= {SIZE_MULTIPLE}")
    short = long_side * min(width, height) / max(width, height)
    short = max(SIZE_MULTIPLE, SIZE_MULTIPLE * math.floor(short / SIZE_MULTIPLE + 0.5))
    return (long_side, short) if width >= height else (short, long_side)


def fit_image(image: Image.Image, size: tuple[int, int], fit: Fit = Fit.CROP) -> Image.Image:
    """The image at exactly `size`: CROP centre-crops to the aspect, PAD letterboxes on black."""
    if not isinstance(image, Image.Image):
        raise TypeError(f"image={type(image).__name__} is not a PIL.Image.Image")
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(v, int) and v > 0 for v in size)):
        raise ValueError(f"size={size!r} is not allowed: expected (width, height) positive ints")
    fit = Fit(fit)
    size = (size[0], size[1])
    image = image if image.mode == "RGB" else to_rgb(image)
    if fit == Fit.CROP:
        return ImageOps.fit(image, size, method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))
    return ImageOps.pad(image, size, method=Image.Resampling.LANCZOS, color=(0, 0, 0),
                        centering=(0.5, 0.5))


NATIVE_AREA_SLACK = 1.25   # a working size may have up to 25% more or fewer pixels than native^2


def native_size(width: int, height: int, native: int) -> tuple[int, int]:
    """(w, h), multiples of 64, with about native^2 pixels and the aspect ratio of width:height (as
    the SD / SDXL aspect buckets: 3:2 at 512^2 -> 576 x 384, 9:16 at 1024^2 -> 768 x 1344): the
    least aspect error plus half the area error (in logs); the long side = native if none fits."""
    area, aspect = native * native, width / height
    best = None
    for h in range(SIZE_MULTIPLE, 4 * native + 1, SIZE_MULTIPLE):
        w = max(SIZE_MULTIPLE, SIZE_MULTIPLE * round(h * aspect / SIZE_MULTIPLE))
        if area / NATIVE_AREA_SLACK <= w * h <= area * NATIVE_AREA_SLACK:
            score = abs(math.log(w / h / aspect)) + abs(math.log(w * h / area)) / 2
            best = min(best or (score, (w, h)), (score, (w, h)))
    return best[1] if best else target_size(width, height, native)


def working_size(width: int, height: int, settings: Settings, native: int) -> tuple[int, int]:
    """The working size of inputs whose first is width x height: settings.width/height exactly,
    else settings.size as the long side, else the model's native area at the input's aspect."""
    if settings.width is not None:
        return settings.width, settings.height
    if settings.size is not None:
        return target_size(width, height, settings.size)
    return native_size(width, height, native)


def prepare_images(sources: Sequence[ImageSource], settings: Settings,
                   native: int) -> list[Image.Image]:
    """Every input loaded and brought to one working size (from the first one's aspect ratio)."""
    images = [load_image(s) for s in sources]
    size = working_size(images[0].width, images[0].height, settings, native)
    return [fit_image(im, size, settings.fit) for im in images]


def prepare_pair(a: ImageSource, b: ImageSource, settings: Settings,
                 native: int) -> tuple[Image.Image, Image.Image]:
    """Both inputs at the working size (prepare_images of two)."""
    image_a, image_b = prepare_images([a, b], settings, native)
    return image_a, image_b


def to_tensor(images: Sequence[Image.Image]) -> torch.Tensor:
    """[B, 3, H, W] float32 in [-1, 1] from same-sized images (x / 127.5 - 1)."""
    if isinstance(images, Image.Image):
        images = [images]
    if len(images) == 0:
        raise ValueError("images is empty: expected at least one PIL image")
    sizes = {im.size for im in images}
    if len(sizes) != 1:
        raise ValueError(f"images have different sizes {sorted(sizes)}: expected one size")
    arrays = [np.asarray(im if im.mode == "RGB" else to_rgb(im)) for im in images]
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return batch.to(torch.float32) / 127.5 - 1.0


def to_pil(tensor: torch.Tensor) -> list[Image.Image]:
    """RGB images from [B, 3, H, W] (or [3, H, W]) in [-1, 1], clamped and rounded."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"tensor={type(tensor).__name__} is not a torch.Tensor")
    batch = tensor.unsqueeze(0) if tensor.dim() == 3 else tensor
    if batch.dim() != 4 or batch.shape[1] != 3:
        raise ValueError(f"tensor has shape {tuple(tensor.shape)}: expected [B, 3, H, W]")
    values = ((batch.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(v.permute(1, 2, 0).numpy()) for v in values]
