"""Shared test helpers: independent reference computations (a second method, not the code under test),
small fixtures-by-function (random images, a read-only mount)."""
from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Iterator

import numpy as np
import torch


def evenly_paced(positions, distances) -> np.ndarray:
    """Where frames go so adjacent distances are equal: the inverse of the cumulative distance as a
    function of position, by numpy's linear interpolation (distances must be > 0)."""
    positions = np.asarray(positions, dtype=float)
    cumulative = np.concatenate([[0.0], np.cumsum(distances)])
    targets = np.linspace(0.0, cumulative[-1], len(positions))
    return np.interp(targets, cumulative, positions)


def denoising_error(bundle, latents, cond, uncond, settings, generator, draws: int) -> float:
    """Mean guided-prediction MSE over `draws` noise draws at middle-third indices (a held-out test).

    latents: clean [B, 4, h, w]; generator: a CPU torch.Generator (use another seed than training).
    """
    if draws < 1:
        raise ValueError(f"draws={draws} must be >= 1")
    if generator.device.type != "cpu":
        raise ValueError(f"generator must be a CPU torch.Generator, got one on {generator.device}")
    from interp.inversion import guided_loss
    scheduler = bundle.make_scheduler(settings.num_inference_steps)
    with torch.no_grad():
        errors = [float(guided_loss(bundle, scheduler, latents.float().to(bundle.device), cond,
                                    uncond, settings.guidance_scale, generator))
                  for _ in range(draws)]
    return sum(errors) / draws


def random_image(seed: int, size: tuple[int, int] = (8, 6), mode: str = "RGB"):
    """A small PIL image of seeded random pixels (size = (width, height); mode RGB, RGBA or L)."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    bands = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = rng.integers(0, 256, size=(size[1], size[0], bands), dtype=np.uint8)
    return Image.fromarray(pixels.squeeze(-1) if bands == 1 else pixels)


@contextlib.contextmanager
def read_only_mount(folder: Path) -> Iterator[bool]:
    """A read-only (empty) tmpfs mounted on the existing folder `folder` for the with-block, unmounted
    after it. Yields True when mounted; False, leaving `folder` as it is, when this process cannot mount
    (not root, or root without mount rights, as in some containers)."""
    if os.geteuid() != 0:
        yield False
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                             capture_output=True)
    if mounted.returncode:
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def slerp_reference(a, b, weight: float) -> np.ndarray:
    """Spherical interpolation written out in numpy float64, one angle over the flattened arrays (the
    paper's formula): sin((1 - w) theta) / sin(theta) a + sin(w theta) / sin(theta) b, theta the angle
    between a and b; linear when they are parallel. a, b: arrays or tensors of one shape."""
    a, b = (np.asarray(x.detach().double().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
            for x in (a, b))
    cos = float(a.ravel() @ b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b))
    theta = np.arccos(np.clip(cos, -1.0, 1.0))
    if np.sin(theta) < 1e-12:
        return (1 - weight) * a + weight * b
    return (np.sin((1 - weight) * theta) * a + np.sin(weight * theta) * b) / np.sin(theta)
