"""Sequence quality metrics over adjacent-frame distances (peers.md, "Quality metrics").

d_i = D(frame_i, frame_i+1) with a pluggable distance D:
- "lab" (default): mean CIE76 colour difference (Delta E / 100) on the images downsampled to at most
  64 px on the long side; a cheap, offline perceptual proxy (roughly 0..1, 0.01 = a just-visible shift).
- "pixel": mean absolute difference of RGB values in [0, 1].
- "lpips": LPIPS (AlexNet, inputs in [-1, 1]), only when the `lpips` package and torchvision's AlexNet
  weights are already on disk; never downloaded.
From d: PPL = sum(d) (DiffMorpher convention, not the paper's Inception PPL), PDV = variance of d
(population variance, one sequence), smoothness = 1 - Gini(d) (AID), consistency = mean(d), max(d).
FID against the inputs needs Inception-v3 weights on disk and is skipped with a note otherwise.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
from PIL import Image

from interp.errors import ModelUnavailable

log = logging.getLogger(__name__)

ImageLike = Union[Image.Image, np.ndarray]
Distance = Callable[[ImageLike, ImageLike], float]

LAB_SIZE = 64                                   # long side for the "lab" distance
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"       # torchvision's AlexNet weights (LPIPS backbone)
INCEPTION_FILE = "inception_v3_google-0cc3c7bd.pth"  # torchvision's Inception-v3 weights (FID)
_D65 = np.array([0.95047, 1.0, 1.08883])
_RGB_TO_XYZ = np.array([[0.412453, 0.357580, 0.180423],
                        [0.212671, 0.715160, 0.072169],
                        [0.019334, 0.119193, 0.950227]])


# ------------------------------------------------------------------------------ images and distances

def as_array(image: ImageLike) -> np.ndarray:
    """An RGB image as float64 [H, W, 3] in [0, 1] (PIL image, uint8 array or float array in [0, 1])."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image of shape {image.shape} is not allowed: expected [H, W, 3]")
        return image.astype(np.float64) / 255.0 if image.dtype == np.uint8 else image.astype(np.float64)
    raise TypeError(f"image must be a PIL image or a numpy array, got {type(image).__name__}")


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] -> CIE L*a*b* (D65), the standard CIE 1976 formulas."""
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = lin @ _RGB_TO_XYZ.T / _D65
    delta = 6.0 / 29.0
    f = np.where(xyz > delta ** 3, np.cbrt(xyz), xyz / (3 * delta ** 2) + 4.0 / 29.0)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


def _downsample(image: ImageLike, size: int) -> np.ndarray:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.clip(as_array(image) * 255 + 0.5, 0, 255).astype(np.uint8))
    image = image.convert("RGB")
    scale = size / max(image.size)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.BOX)
    return as_array(image)


def _check_pair(x: np.ndarray, y: np.ndarray) -> None:
    if x.shape != y.shape:
        raise ValueError(f"images of shapes {x.shape} and {y.shape} differ: frames must share a size")


def pixel_distance(x: ImageLike, y: ImageLike) -> float:
    """Mean absolute RGB difference in [0, 1]."""
    a, b = as_array(x), as_array(y)
    _check_pair(a, b)
    return float(np.mean(np.abs(a - b)))


def lab_distance(x: ImageLike, y: ImageLike) -> float:
    """Mean CIE76 Delta E / 100 between the images downsampled to LAB_SIZE px (a perceptual proxy)."""
    a, b = _downsample(x, LAB_SIZE), _downsample(y, LAB_SIZE)
    _check_pair(a, b)
    return float(np.mean(np.linalg.norm(srgb_to_lab(a) - srgb_to_lab(b), axis=-1)) / 100.0)


def _hub_file(name: str) -> Optional[Path]:
    """A torchvision weight file already in the torch hub cache, or None (never downloads)."""
    import torch
    path = Path(torch.hub.get_dir()) / "checkpoints" / name
    return path if path.is_file() else None


def lpips_status() -> tuple:
    """(available, note): LPIPS needs the lpips package and AlexNet weights already on disk."""
    import importlib.util
    if importlib.util.find_spec("lpips") is None:
        return False, "LPIPS skipped: the lpips package is not installed"
    if _hub_file(ALEXNET_FILE) is None:
        return False, f"LPIPS skipped: AlexNet weights ({ALEXNET_FILE}) are not in the torch hub cache"
    return True, "LPIPS (AlexNet) from local weights"


def lpips_distance(device: str = "cpu") -> Distance:
    """LPIPS (AlexNet, inputs in [-1, 1]) as a Distance; ModelUnavailable when not on disk."""
    ok, note = lpips_status()
    if not ok:
        raise ModelUnavailable(note)
    import lpips
    import torch
    net = lpips.LPIPS(net="alex", verbose=False).to(device).eval()

    def distance(x: ImageLike, y: ImageLike) -> float:
        a, b = (torch.from_numpy(as_array(i)).permute(2, 0, 1)[None].float() * 2 - 1 for i in (x, y))
        with torch.no_grad():
            return float(net(a.to(device), b.to(device)).item())
    return distance


DISTANCES: dict = {"lab": lab_distance, "pixel": pixel_distance}


def get_distance(name: str) -> Distance:
    """A distance by name: lab (default), pixel, or lpips (only with local weights)."""
    if name == "lpips":
        return lpips_distance()
    if name not in DISTANCES:
        raise ValueError(f"distance={name!r} is unknown; choose one of {sorted(DISTANCES) + ['lpips']}")
    return DISTANCES[name]


# ------------------------------------------------------------------------------ sequence metrics

def adjacent_distances(frames: Sequence[ImageLike], distance: Distance = lab_distance) -> np.ndarray:
    """d_i = D(frame_i, frame_i+1) for i = 0..N-1."""
    if len(frames) < 2:
        raise ValueError(f"frames has {len(frames)} images: need at least 2 for adjacent distances")
    return np.array([distance(frames[i], frames[i + 1]) for i in range(len(frames) - 1)])


def _check_distances(d: Sequence[float]) -> np.ndarray:
    arr = np.asarray(d, dtype=np.float64).reshape(-1)
    if len(arr) == 0 or not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"distances={arr.tolist()!r} is not allowed: expected finite numbers >= 0")
    return arr


def ppl(d: Sequence[float]) -> float:
    """Perceptual path length as DiffMorpher reports it: the sum of adjacent distances."""
    return float(np.sum(_check_distances(d)))


def pdv(d: Sequence[float]) -> float:
    """Perceptual distance variance (DiffMorpher): population variance of the adjacent distances."""
    return float(np.var(_check_distances(d)))


def gini(d: Sequence[float]) -> float:
    """Gini coefficient sum_ij |d_i - d_j| / (2 n^2 mean(d)); 0 for equal (or all-zero) distances."""
    arr = _check_distances(d)
    mean = arr.mean()
    if mean == 0:
        return 0.0
    return float(np.abs(arr[:, None] - arr[None, :]).sum() / (2 * len(arr) ** 2 * mean))


def smoothness(d: Sequence[float]) -> float:
    """AID's smoothness: 1 - Gini(d) (1 = perfectly even steps)."""
    return 1.0 - gini(d)


def spread(d: Sequence[float]) -> dict:
    """How uneven the steps are: PDV and max/min ratio (inf when some step is zero)."""
    arr = _check_distances(d)
    ratio = float(arr.max() / arr.min()) if arr.min() > 0 else float("inf")
    return {"pdv": pdv(arr), "max_min_ratio": ratio, "max": float(arr.max()), "min": float(arr.min())}


def sequence_metrics(d: Sequence[float]) -> dict:
    """All per-sequence numbers: ppl, pdv, smoothness, consistency (mean), max."""
    arr = _check_distances(d)
    return {"ppl": ppl(arr), "pdv": pdv(arr), "smoothness": smoothness(arr),
            "consistency": float(arr.mean()), "max": float(arr.max())}


def mean_std(values: Sequence[float]) -> tuple:
    """(mean, population std) of a list of per-pair numbers; NaN entries are ignored."""
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if len(arr) == 0:
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std())


# ------------------------------------------------------------------------------ FID against inputs

def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Frechet distance of Gaussians fitted to feature sets [n, D] (Heusel et al. 2017, the FID formula)."""
    from scipy import linalg
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or min(len(x), len(y)) < 2:
        raise ValueError(f"features of shapes {x.shape} and {y.shape}: expected [n >= 2, D] each")
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.atleast_2d(np.cov(x, rowvar=False)), np.atleast_2d(np.cov(y, rowvar=False))
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.all(np.isfinite(covmean)):  # near-singular: offset as pytorch-fid does
        off = np.eye(len(s1)) * 1e-6
        covmean = linalg.sqrtm((s1 + off) @ (s2 + off))
    covmean = np.real(covmean)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def fid_against_inputs(inputs: Sequence[ImageLike], sequences: Sequence[Sequence[ImageLike]],
                       features: Callable[[list], np.ndarray], repeats: int = 10,
                       seed: int = 0) -> float:
    """FID between the input images and 2 random in-between frames per sequence, mean of `repeats`
    draws (the Wang & Golland / peers.md protocol). `features`: images -> [n, D] array."""
    if any(len(s) < 4 for s in sequences):
        raise ValueError("every sequence needs at least 2 in-between frames for FID against inputs")
    rng = np.random.default_rng(seed)
    real = features(list(inputs))
    scores = []
    for _ in range(repeats):
        picks = [s[1 + j] for s in sequences for j in rng.choice(len(s) - 2, 2, replace=False)]
        scores.append(frechet_distance(real, features(picks)))
    return float(np.mean(scores))


def inception_status() -> tuple:
    """(available, note): FID needs torchvision's Inception-v3 weights already on disk."""
    if _hub_file(INCEPTION_FILE) is None:
        return False, (f"FID skipped: Inception-v3 weights ({INCEPTION_FILE}) are not in the torch "
                       "hub cache")
    return True, "FID with torchvision's Inception-v3 pool features (not the TF-FID graph)"


def inception_features(device: str = "cpu") -> Callable[[list], np.ndarray]:
    """images -> [n, 2048] Inception-v3 pool features; ModelUnavailable when not on disk."""
    ok, note = inception_status()
    if not ok:
        raise ModelUnavailable(note)
    import torch
    from torchvision.models import inception_v3
    net = inception_v3(weights=None, aux_logits=True, init_weights=False)
    net.load_state_dict(torch.load(_hub_file(INCEPTION_FILE), map_location="cpu"))
    net.fc = torch.nn.Identity()
    net = net.to(device).eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def features(images: list) -> np.ndarray:
        x = torch.stack([torch.from_numpy(as_array(i)).permute(2, 0, 1).float() for i in images])
        x = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        with torch.no_grad():
            return net(((x - mean) / std).to(device)).cpu().numpy().astype(np.float64)
    return features
