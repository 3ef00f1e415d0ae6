"""Textual inversion of the input pair (Wang & Golland 2023, method.md section 4), cached by content.

Starting from the plain prompt embeddings, the WHOLE [1, 77, d] output embedding of each image and
ONE negative embedding shared by the pair are optimised with Adam (weights frozen). One optimiser
over the three tensors takes two steps per iteration, as the paper's code does: one on image A
(cond A + shared uncond), then one on image B (cond B + shared uncond); the uncond thus moves twice.
When B has a negative prompt of its own (settings.negative_prompt_b), each image's step uses its
own negative, and four tensors are learned. For SDXL the tensors hold both text encoders' states and
the pooled embedding (interp.models.family), so inversion covers both encoders.
Loss: MSE between the classifier-free-guided prediction u + s(c - u) (s = guidance_scale) and its
target at a random DDIM index in the middle third of the schedule. The target is the noise for
epsilon models, the velocity sqrt(abar_t) eps - sqrt(1 - abar_t) z0 (scheduler.get_velocity) for
v-prediction models and z0 for sample models. Each iteration augments both images (colour jitter,
then random resized crop) and re-encodes them with the VAE under no_grad. No ControlNet.

Weights stay frozen: gradients flow only into the three embeddings (backward(inputs=...)).
Precision: the UNet runs in the bundle's dtype; the embeddings' master copies and Adam's state are
float32. For float16/bfloat16 bundles the loss is computed under torch.autocast(device, dtype), with
a GradScaler for float16 (the float32 path is what the tests cover).

Randomness: one CPU torch.Generator seeded with settings.seed draws every index, noise and
augmentation parameter (the torchvision transforms' parameters are drawn here, not from the global
RNG), so a run is reproducible on the same device and dtype.
"""
from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from interp.events import CancelToken, EventCallback, StageProgress, ignore_event
from interp.sampling import Guidance, add_noise, predict
from interp.scheduler import by_index
from interp.settings import Settings
from interp.keys import INVERSION_VERSION, engine_identity, inversion_key
from interp.store import FrameStore, Record
from interp.text import TextConditions, plain_conditions

log = logging.getLogger(__name__)

NAMES = ("cond_a", "cond_b", "uncond", "uncond_b")  # uncond_b only when B has its own negative
JITTER = (0.1, 0.2, 0.2, 0.1)      # ColorJitter brightness, contrast, saturation, hue (paper code)
CROP_SCALE = (0.7, 1.0)            # RandomResizedCrop area fraction (paper code)
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)  # torchvision's default aspect-ratio range


@dataclass(frozen=True)
class InversionResult:
    """Learned conditions, the loss of each iteration (mean of its A and B steps), reuse, cache key."""
    conds: TextConditions
    losses: tuple
    reused: bool   # True: loaded from the store, no step run
    key: str


def invert(bundle, images: torch.Tensor, settings: Settings, store: Optional[FrameStore] = None,
           on_event: EventCallback = ignore_event,
           cancel: Optional[CancelToken] = None) -> InversionResult:
    """Textual inversion of images [2, 3, H, W] in [-1, 1] (A, B); a store hit runs no step.

    Emits StageProgress("invert", i, total) after each iteration and checks `cancel` before each;
    a cancelled run raises Cancelled and writes nothing to the store.
    """
    _check_images(images, bundle.vae_scale_factor)
    key = inversion_key(engine_identity(bundle), images, settings)
    record = store.get(key) if store is not None else None
    if record is not None:
        conds = TextConditions(*(record.tensors[n].to(bundle.device, bundle.dtype) if n in
                                 record.tensors else None for n in NAMES))
        return InversionResult(conds, tuple(record.meta["losses"]), True, key)
    params, pairs = _optimise(bundle, images, settings, on_event, cancel)
    losses = tuple((a + b) / 2 for a, b in pairs)
    if store is not None:
        store.put(key, Record(
            tensors={n: p.detach().float().cpu().contiguous() for n, p in zip(NAMES, params)},
            meta={"kind": "textual-inversion", "version": INVERSION_VERSION, "losses": list(losses),
                  "losses_a": [a for a, _ in pairs], "losses_b": [b for _, b in pairs],
                  "invert_steps": settings.invert_steps, "invert_lr": settings.invert_lr}))
    conds = TextConditions(*(p.detach().to(bundle.dtype) for p in params))
    return InversionResult(conds, losses, False, key)


def _check_images(images: torch.Tensor, factor: int) -> None:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor [2, 3, H, W], got {type(images).__name__}")
    shape = tuple(images.shape)
    if len(shape) != 4 or shape[:2] != (2, 3) or shape[2] % factor or shape[3] % factor:
        raise ValueError(f"images must be [2, 3, H, W] (A, B) with H, W multiples of {factor}, "
                         f"got {list(shape)}")
    lo, hi = float(images.min()), float(images.max())
    if lo < -1.001 or hi > 1.001:
        raise ValueError(f"images must be in [-1, 1], got values in [{lo:.3f}, {hi:.3f}]")


def _optimise(bundle, images: torch.Tensor, settings: Settings, on_event: EventCallback,
              cancel: Optional[CancelToken]) -> tuple[list, list]:
    """The optimisation loop; returns the float32 parameters and the (A, B) loss of each iteration."""
    # 1. Plain embeddings as the start; float32 master copies are the only trainable tensors.
    plain = plain_conditions(bundle, settings)
    params = [t.detach().float().clone().requires_grad_(True)
              for t in (plain.cond_a, plain.cond_b, plain.uncond, plain.uncond_b) if t is not None]
    optimizer = torch.optim.Adam(params, lr=settings.invert_lr)
    scaler = torch.amp.GradScaler(bundle.device.type, enabled=bundle.dtype == torch.float16)
    # 2. The DDIM schedule the generation uses, and one generator for every random draw.
    scheduler = bundle.make_scheduler(settings.num_inference_steps)
    generator = torch.Generator().manual_seed(settings.seed)
    total, pairs = settings.invert_steps, []
    # 3. Each iteration: augment + re-encode both images, then one step on A and one on B.
    for i in range(total):
        if cancel is not None:
            cancel.check()
        with torch.no_grad():
            z0 = bundle.encode_images(augment(images, generator).to(bundle.device, bundle.dtype))
        pair = []
        for k, cond in enumerate(params[:2]):
            uncond = params[min(2 + k, len(params) - 1)]   # the shared negative, or each its own
            loss = guided_loss(bundle, scheduler, z0[k:k + 1].float(), cond, uncond,
                               settings.guidance_scale, generator)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward(inputs=[cond, uncond])  # weights get no .grad
            scaler.step(optimizer)
            scaler.update()
            pair.append(float(loss.detach()))
        pairs.append(tuple(pair))
        on_event(StageProgress("invert", i + 1, total))
    if pairs:
        log.info("textual inversion: %d iterations, loss %.4f -> %.4f", total,
                 sum(pairs[0]) / 2, sum(pairs[-1]) / 2)
    return params, pairs


def guided_loss(bundle, scheduler, z0: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
                guidance_scale: float, generator: torch.Generator) -> torch.Tensor:
    """MSE of the guided prediction u + s(c - u) against its target at a middle-third DDIM index.

    `scheduler` has its timesteps set (S = their count); u ~ U{S//3 .. 2S//3 - 1}, counted from
    the least noisy end; z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps (method.md section 4).
    """
    timesteps = by_index(scheduler)
    count = len(timesteps)
    index = int(torch.randint(count // 3, 2 * count // 3, (1,), generator=generator))
    t = int(timesteps[index])
    eps = torch.randn(z0.shape, generator=generator).to(z0.device)
    noisy = add_noise(scheduler, z0, eps, t)
    target = prediction_target(scheduler, z0, eps, t)
    with _autocast(bundle):
        pred = predict(bundle, noisy, t, Guidance(cond, uncond, guidance_scale))
    return F.mse_loss(pred.float(), target.float())


def prediction_target(scheduler, z0: torch.Tensor, eps: torch.Tensor, t: int) -> torch.Tensor:
    """What the model predicts at t: eps (epsilon), sqrt(abar) eps - sqrt(1 - abar) z0 (v), or z0."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return eps
    if kind == "v_prediction":
        steps = torch.full((z0.shape[0],), int(t), dtype=torch.long, device=z0.device)
        return scheduler.get_velocity(z0.float(), eps.float(), steps)
    if kind == "sample":
        return z0
    raise ValueError(f"prediction_type={kind!r} is not supported (epsilon, v_prediction, sample)")


def _autocast(bundle):
    """Mixed precision for half-precision bundles; a no-op context for float32."""
    if bundle.dtype in (torch.float16, torch.bfloat16) and bundle.device.type in ("cuda", "cpu"):
        return torch.autocast(bundle.device.type, dtype=bundle.dtype)
    return contextlib.nullcontext()


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """ColorJitter(0.1, 0.2, 0.2, 0.1) then RandomResizedCrop(H x W, scale 0.7-1), per image.

    images: [B, 3, H, W] in [-1, 1]; returns float32 in [-1, 1]. Parameters come from `generator`.
    """
    height, width = images.shape[-2:]
    out = []
    for image in (images.float() + 1) / 2:
        image = _jitter(image, generator)
        top, left, h, w = _crop_params(height, width, generator)
        out.append(TF.resized_crop(image, top, left, h, w, [height, width], antialias=True))
    return torch.stack(out).clamp(0, 1) * 2 - 1


def _uniform(generator: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=generator))


def _jitter(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Adapted from torchvision.transforms.v2.ColorJitter: the four adjustments in random order."""
    order = torch.randperm(4, generator=generator).tolist()
    b, c, s, h = JITTER
    factors = [_uniform(generator, 1 - b, 1 + b), _uniform(generator, 1 - c, 1 + c),
               _uniform(generator, 1 - s, 1 + s), _uniform(generator, -h, h)]
    adjust = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    for k in order:
        image = adjust[k](image, factors[k])
    return image


def _crop_params(height: int, width: int, generator: torch.Generator) -> tuple[int, int, int, int]:
    """Adapted from torchvision.transforms.v2.RandomResizedCrop.make_params: (top, left, h, w)."""
    area = height * width
    log_lo, log_hi = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
    for _ in range(10):
        target = area * _uniform(generator, *CROP_SCALE)
        ratio = math.exp(_uniform(generator, log_lo, log_hi))
        w, h = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    ratio = width / height  # fallback: the centred crop of the nearest allowed aspect ratio
    w, h = width, height
    if ratio < CROP_RATIO[0]:
        h = int(round(w / CROP_RATIO[0]))
    elif ratio > CROP_RATIO[1]:
        w = int(round(h * CROP_RATIO[1]))
    return (height - h) // 2, (width - w) // 2, h, w
