"""Sanity checks of the toy model: text-to-image samples through interp's own DDIM loop, the dominant
foreground colour of an image, VAE reconstruction PSNR, and image grids for looking at the results.

This is a plain colour check for training; the on-manifold shape detector is interp.toy.detect.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from interp.toy import data

FOREGROUND_DISTANCE = 60.0  # RGB distance from the background above which a pixel is foreground
MIN_FOREGROUND = 0.01  # below this share of foreground pixels an image has no shape


def generate(bundle: Any, prompts: Sequence[str], seeds: Sequence[int], steps: int = 50,
             guidance_scale: float = 5.0, control: Any = None) -> list[Image.Image]:
    """One 64x64 image per (prompt, seed): DDIM from pure noise with classifier-free guidance (interp.sampling)."""
    from interp.sampling import Guidance, denoise, make_generator, randn
    from interp.text import encode_prompt

    if len(prompts) != len(seeds) or not prompts:
        raise ValueError(f"prompts and seeds must be non-empty and equally long; got {len(prompts)}, {len(seeds)}")
    scheduler = bundle.make_scheduler(steps)
    side = 64 // bundle.vae_scale_factor
    gens = [make_generator(s) for s in seeds]
    latents = torch.cat([randn((1, 4, side, side), g, bundle.device) for g in gens])
    cond = torch.cat([encode_prompt(bundle, p)[0] for p in prompts])
    uncond = encode_prompt(bundle, "")[0]
    with torch.no_grad():
        z = denoise(bundle, scheduler, latents * scheduler.init_noise_sigma, steps - 1,
                    Guidance(cond, uncond, guidance_scale), gens, control=control)
        return to_images(bundle.decode_latents(z))


def to_images(x: torch.Tensor) -> list[Image.Image]:
    """Images [B, 3, H, W] in [-1, 1] -> RGB PIL images."""
    arr = ((x.float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a, "RGB") for a in arr]


def _nearest(table: dict[str, tuple[int, int, int]], rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest table colour per pixel [N, 3], and its distance."""
    ref = np.array(list(table.values()), dtype=np.float64)
    dist = np.linalg.norm(rgb[:, None, :] - ref[None, :, :], axis=2)
    return dist.argmin(1), dist.min(1)


def background_of(image: Image.Image) -> str:
    """The named background nearest to the median of the image's border pixels."""
    a = np.asarray(image.convert("RGB"), dtype=np.float64)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    idx, _ = _nearest(data.BACKGROUNDS, np.median(border, axis=0)[None])
    return list(data.BACKGROUNDS)[int(idx[0])]


def dominant_colour(image: Image.Image) -> str | None:
    """The palette colour most foreground pixels are nearest to; None when there is hardly any foreground."""
    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL image; got {type(image).__name__}")
    a = np.asarray(image.convert("RGB"), dtype=np.float64).reshape(-1, 3)
    bg = np.array(data.BACKGROUNDS[background_of(image)], dtype=np.float64)
    fg = a[np.linalg.norm(a - bg, axis=1) > FOREGROUND_DISTANCE]
    if len(fg) < MIN_FOREGROUND * len(a):
        return None
    idx, _ = _nearest(data.COLOURS, fg)
    votes = np.bincount(idx, minlength=len(data.COLOURS))
    return list(data.COLOURS)[int(votes.argmax())]


@torch.no_grad()
def vae_psnr(bundle: Any, images: Sequence[Image.Image]) -> float:
    """PSNR (dB) of the bundle's VAE round trip encode -> decode on images, pixels in [0, 255]."""
    x = data.to_tensor(list(images)).to(bundle.device)
    rec = bundle.decode_latents(bundle.encode_images(x)).float().clamp(-1, 1)
    mse = ((rec.cpu() - x.cpu()) / 2.0).pow(2).mean().item()
    return 10.0 * float(np.log10(1.0 / max(mse, 1e-12)))


def grid(images: Sequence[Image.Image], cols: int = 8) -> Image.Image:
    """Images pasted row by row into one sheet."""
    if not images:
        raise ValueError("images must not be empty")
    w, h = images[0].size
    rows = (len(images) + cols - 1) // cols
    sheet = Image.new("RGB", (w * cols, h * rows), (255, 255, 255))
    for i, im in enumerate(images):
        sheet.paste(im, ((i % cols) * w, (i // cols) * h))
    return sheet


def colour_accuracy(bundle: Any, specs: Sequence[data.ShapeSpec], seed: int = 0, steps: int = 50,
                    guidance_scale: float = 5.0) -> tuple[float, list[Image.Image]]:
    """Share of samples from the specs' captions whose dominant colour is the caption's, and the samples."""
    prompts = [data.caption(s) for s in specs]
    images = generate(bundle, prompts, [seed + i for i in range(len(specs))], steps, guidance_scale)
    hits = [dominant_colour(im) == s.colour for im, s in zip(images, specs)]
    return float(np.mean(hits)), images


def foreground_centre(image: Image.Image) -> tuple[float, float] | None:
    """Centroid (x, y) in pixels of the pixels far from the background; None without a foreground."""
    a = np.asarray(image.convert("RGB"), dtype=np.float64)
    bg = np.array(data.BACKGROUNDS[background_of(image)], dtype=np.float64)
    mask = np.linalg.norm(a - bg, axis=2) > FOREGROUND_DISTANCE
    if mask.mean() < MIN_FOREGROUND:
        return None
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


def pose_control(specs: Sequence[data.ShapeSpec], scale: float = 1.0) -> Any:
    """interp.sampling.Control of the specs' skeletons (64x64, in [0, 1]) at one ControlNet scale."""
    from interp.pose.draw import control_image
    from interp.sampling import Control

    images = torch.stack([control_image(data.pose(s), 64, 64) for s in specs])
    return Control(images, torch.full((len(specs),), float(scale)))
