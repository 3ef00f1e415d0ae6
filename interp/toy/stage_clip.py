"""The toy open_clip scorer: contrastive training on captions, clean shapes vs faded two-shape blends.

Clean images are captioned with their full caption, a short one ("a red circle") or "a clean single
shape"; alpha blends of two shapes with "a faded blend of two shapes", and so are other images that are
not one clean shape (a faded single shape, an empty background, two shapes: data.sample_flawed). Half of
all images go through the trained VAE and back, so the scorer judges shapes under the decoder's blur, as
in generated frames, rather than telling sharp from blurry. Several images share a caption
in a batch, so the loss is a multi-positive InfoNCE (every image with the same caption is a positive),
symmetric over images and texts. CLIP ranking (positive "a clean single shape", negative "a faded blend
of two shapes", paper section 3.4) then prefers clean frames.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from interp.toy import data, nets
from interp.toy.stages import StageResult, run_loop

CAPTION_MIX = (0.5, 0.2, 0.3)  # full caption, short caption, CLEAN_CAPTION for clean images


def clean_caption(spec: data.ShapeSpec, rng: np.random.Generator) -> str:
    """One of the clean image's captions, drawn by CAPTION_MIX."""
    kind = rng.choice(3, p=CAPTION_MIX)
    if kind == 0:
        return data.caption(spec)
    if kind == 1:
        article = "an" if spec.colour[0] in "aeiou" else "a"
        return f"{article} {spec.colour} {spec.shape}"
    return data.CLEAN_CAPTION


def clip_dataset(n_clean: int, n_blend: int, seed: int, preprocess: Any, tokenizer: Any, vae: Any = None,
                 n_flawed: int = 0) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(preprocessed images [N, 3, 64, 64], token ids [N, 77], caption class [N]) of clean, blended and
    flawed images; with a VAE, every other image is its decoded reconstruction."""
    rng = np.random.default_rng(seed)
    clean = data.sample(n_clean, seed + 1000)
    negatives = [im for im, _, _ in data.sample_blends(n_blend, seed)]
    if n_flawed:
        negatives += [im for im, _ in data.sample_flawed(n_flawed, seed)]
    images = [im for im, _, _ in clean] + negatives
    if vae is not None:
        images = decoded_every_other(vae, images)
    captions = [clean_caption(spec, rng) for _, _, spec in clean] + [data.BLEND_CAPTION] * len(negatives)
    distinct = sorted(set(captions))
    index = {c: i for i, c in enumerate(distinct)}
    ids = tokenizer(distinct)
    classes = np.array([index[c] for c in captions])
    pixels = torch.stack([preprocess(im) for im in images])
    return pixels, ids, classes


@torch.no_grad()
def decoded_every_other(vae: Any, images: list, batch: int = 256) -> list:
    """images with every other one replaced by decode(encode(image)) through the VAE's posterior mean."""
    from PIL import Image

    from interp.toy.stages import images_to_tensor
    out = list(images)
    picked = list(range(0, len(images), 2))
    for i in range(0, len(picked), batch):
        idx = picked[i:i + batch]
        x = images_to_tensor(data.to_uint8([images[j] for j in idx]))
        rec = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
        arr = ((rec + 1.0) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
        for j, a in zip(idx, arr):
            out[j] = Image.fromarray(a)
    return out


def multi_positive_loss(img: torch.Tensor, txt: torch.Tensor, classes: torch.Tensor,
                        scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE where every pair with the same caption class counts as a positive."""
    logits = scale * img @ txt.T
    positive = (classes[:, None] == classes[None, :]).float()
    log_i2t = torch.logsumexp(logits.masked_fill(positive == 0, -1e4), 1) - torch.logsumexp(logits, 1)
    log_t2i = torch.logsumexp(logits.T.masked_fill(positive == 0, -1e4), 1) - torch.logsumexp(logits.T, 1)
    return -(log_i2t.mean() + log_t2i.mean()) / 2.0


def train_clip(steps: int, n_clean: int = 8000, n_blend: int = 3000, batch: int = 192, lr: float = 1e-3,
               seed: int = 0, log_every: int = 50, vae: Any = None, n_flawed: int = 0) -> StageResult:
    """Train interp-toy-clip contrastively; returns the model and the blend/clean ranking accuracy."""
    start = time.perf_counter()
    model, preprocess, tokenizer = nets.build_clip(seed)
    pixels, ids, classes = clip_dataset(n_clean, n_blend, seed, preprocess, tokenizer, vae, n_flawed)
    model.train()
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    rng = np.random.default_rng(seed + 3)
    class_t = torch.from_numpy(classes)

    def step_fn(step: int) -> torch.Tensor:
        idx = torch.from_numpy(rng.integers(len(pixels), size=batch))
        img = model.encode_image(pixels[idx], normalize=True)
        txt = model.encode_text(ids[class_t[idx]], normalize=True)
        return multi_positive_loss(img, txt, class_t[idx], model.logit_scale.exp().clamp(max=100.0))

    last = run_loop(steps, lr, opt, params, step_fn, lambda s: None, "clip", log_every)
    model.eval().requires_grad_(False)
    accuracy = ranking_accuracy(model, preprocess, tokenizer, seed)
    metrics = {"steps": steps, "batch": batch, "lr": lr, "final_loss": last,
               "params_clip": nets.param_count(model), "ranking_accuracy": accuracy}
    return StageResult({"clip": model}, metrics, time.perf_counter() - start)


@torch.no_grad()
def ranking_accuracy(model: Any, preprocess: Any, tokenizer: Any, seed: int, n: int = 200) -> float:
    """Share of held-out (clean, blend) pairs where the clean image scores higher (clean vs blend prompts)."""
    clean = [im for im, _, _ in data.sample(n, seed + 5000)]
    blends = [im for im, _, _ in data.sample_blends(n, seed + 5000)]
    txt = model.encode_text(tokenizer([data.CLEAN_CAPTION, data.BLEND_CAPTION]), normalize=True)
    direction = txt[0] - txt[1]
    s_clean = model.encode_image(torch.stack([preprocess(im) for im in clean]), normalize=True) @ direction
    s_blend = model.encode_image(torch.stack([preprocess(im) for im in blends]), normalize=True) @ direction
    return float((s_clean > s_blend).float().mean())
