"""Writing the toy model: diffusers layout, fp16 safetensors, the open_clip scorer and a README.md."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from interp.toy import CLIP_FILE, nets
PIPELINE_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "vae": ["diffusers", "AutoencoderKL"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "scheduler": ["diffusers", "DDIMScheduler"],
    "safety_checker": [None, None],
    "feature_extractor": [None, None],
    "image_encoder": [None, None],
    "requires_safety_checker": False,
}


def save_model(out: Path, modules: dict[str, Any]) -> None:
    """Write vae/, unet/, text_encoder/, tokenizer/, scheduler/, controlnet/, clip/ and model_index.json."""
    import diffusers
    from diffusers import DDIMScheduler
    from safetensors.torch import save_file

    from interp.scheduler import SD_DDIM

    out.mkdir(parents=True, exist_ok=True)
    for name in ("vae", "unet", "controlnet"):
        modules[name].to(torch.float16).save_pretrained(out / name, safe_serialization=True)
        modules[name].to(torch.float32)
    modules["text_encoder"].to(torch.float16).save_pretrained(out / "text_encoder")
    modules["text_encoder"].to(torch.float32)
    save_tokenizer(modules["tokenizer"], out / "tokenizer")
    DDIMScheduler(**SD_DDIM).save_pretrained(out / "scheduler")
    (out / "clip").mkdir(exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in modules["clip"].state_dict().items()}
    save_file(state, str(out / "clip" / CLIP_FILE))
    shutil.copy(nets.CLIP_CONFIG_DIR / f"{nets.TOY_CLIP_NAME}.json", out / "clip" / f"{nets.TOY_CLIP_NAME}.json")
    index = {**PIPELINE_INDEX, "_diffusers_version": diffusers.__version__}
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")


def save_tokenizer(tokenizer: Any, folder: Path) -> None:
    """The CLIP tokenizer as vocab.json + merges.txt + tokenizer_config.json (1.5 MB; tokenizer.json is 3.6 MB)."""
    from interp.models.tokenizer import bpe_path, clip_vocab_and_merges

    tokenizer.save_pretrained(folder)
    (folder / "tokenizer.json").unlink(missing_ok=True)
    vocab, merges = clip_vocab_and_merges(bpe_path())
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = "\n".join(" ".join(pair) for pair in merges)
    (folder / "merges.txt").write_text(f"#version: 0.2\n{lines}\n", encoding="utf-8")


def sizes(out: Path) -> dict[str, int]:
    """Bytes per top-level entry of the model directory, and the total."""
    result = {}
    for entry in sorted(out.iterdir()):
        files = [entry] if entry.is_file() else [f for f in entry.rglob("*") if f.is_file()]
        result[entry.name] = sum(f.stat().st_size for f in files)
    result["total"] = sum(v for v in result.values())
    return result


STAGE_ORDER = ("data", "vae", "encode", "unet", "clip", "skeletons", "controlnet", "check")


def _total_last(table: dict[str, float], order: tuple[str, ...] = ()) -> list[tuple[str, float]]:
    rank = {k: i for i, k in enumerate(order)}
    keys = sorted((k for k in table if k != "total"), key=lambda k: (rank.get(k, len(rank)), k))
    return [(k, table[k]) for k in keys] + ([("total", table["total"])] if "total" in table else [])


def _fmt_seconds(report: dict[str, Any]) -> str:
    rows = _total_last(report["seconds"], STAGE_ORDER)
    return "\n".join(f"| {k} | {v:.0f} s ({v / 60:.1f} min) |" for k, v in rows)


def _fmt_sizes(report: dict[str, Any]) -> str:
    return "\n".join(f"| {k} | {v / 1e6:.2f} MB |" for k, v in _total_last(report["sizes"]))


def write_readme(out: Path, report: dict[str, Any], quick: bool = False) -> None:
    """README.md: how the model was trained, measured times, sizes and quality, and the data licence."""
    m = report["metrics"]
    quality = [f"- VAE reconstruction PSNR on {report['budget']['n_check']} held-out images: "
               f"{m.get('vae_psnr_held_out', float('nan')):.2f} dB",
               f"- samples from held-out captions (DDIM 50 steps, CFG 5) whose dominant foreground colour is "
               f"the caption's: {100 * m.get('sample_colour_accuracy', float('nan')):.0f}% (samples.png; "
               "the drawn references are samples_reference.png)",
               f"- open_clip scorer: clean image scores above a two-shape blend in "
               f"{100 * m['clip']['ranking_accuracy']:.0f}% of held-out pairs"]
    text = TEMPLATE.format(
        warning="**QUICK RUN: a few steps only; not a usable model.**\n\n" if quick else "",
        seconds=_fmt_seconds(report), sizes=_fmt_sizes(report), quality="\n".join(quality),
        threads=report["threads"], seed=report["seed"],
        budget="\n".join(f"| {k} | {v} |" for k, v in report["budget"].items()),
        scaling=m["vae"]["scaling_factor"], vae_channels=tuple(nets.VAE_CONFIG["block_out_channels"]),
        text_hidden=nets.TEXT_CONFIG["hidden_size"], text_layers=nets.TEXT_CONFIG["num_hidden_layers"],
        unet_channels=tuple(nets.UNET_CONFIG["block_out_channels"]),
    )
    (out / "README.md").write_text(text)


TEMPLATE = """# interp's built-in toy model

{warning}A small latent diffusion model that uses Stable Diffusion's classes (AutoencoderKL, CLIPTextModel with
the real CLIP tokenizer, UNet2DConditionModel, ControlNetModel) and an open_clip scorer, trained here on
a CPU from scratch. It draws one clean shape (circle, square, triangle, star, heart) in one of 8 colours
on one of 4 backgrounds at 64x64, from captions such as "a red circle on a white background".
Load it with `interp.models.load.load_bundle("toy")`; the CLIP scorer with `interp.toy.nets.load_toy_clip()`.

## Data and licence

Procedural, generated by `interp/toy/data.py` at training time (seeded; nothing downloaded):
CC0 1.0 (public domain dedication). The weights here are derived only from that data and are
likewise released under CC0 1.0.

## How it was trained

`python -m interp.toy.train --out assets/toy` (seed {seed}, {threads} torch thread(s)); every stage runs a
fixed number of steps with seeded generators, so the run is reproducible.

1. AutoencoderKL (channels {vae_channels}, 4 blocks, scale factor 8: 64x64x3 -> 8x8x4), L1 + MSE + 1e-6 KL
   + a small pull of latent channels 0-2 toward the 8x8 average-pooled image, bf16 autocast. It starts as
   a thumbnail encoder / nearest-neighbour decoder (interp/toy/vae_init.py: zero residual branches, colour
   carried as (c, -c) beside constant (K, -K) channel pairs through the GroupNorms), so CPU training only
   has to learn the edges. scaling_factor = 1 / std of the latents = {scaling:.4f}.
2. CLIPTextModel (hidden {text_hidden}, {text_layers} layers, CLIP's 49,408-token vocabulary) trained jointly
   with the UNet2DConditionModel (channels {unet_channels}, cross-attention in every block) on epsilon
   prediction with SD's scaled-linear 1000-step schedule (beta 0.00085..0.012), 10% caption dropout to ""
   (classifier-free guidance), Min-SNR-5 loss weighting, EMA of the weights.
3. open_clip `interp-toy-clip` (config clip/interp-toy-clip.json) trained contrastively (multi-positive
   InfoNCE) on full/short captions, "a clean single shape", and images that are not one clean shape
   (alpha blends of two shapes, faded single shapes, empty backgrounds, two shapes side by side)
   captioned "a faded blend of two shapes"; every other image goes through the trained VAE and back,
   so it judges shapes under the decoder's blur as in generated frames.
4. ControlNetModel copied from the UNet, trained (UNet and text encoder frozen) on the shapes' skeletons
   (centre + extremes in OpenPose's 18 slots, drawn by controlnet_aux's OpenPose drawer).

| setting | value |
|---|---|
{budget}

## Measured wall time (2-core shared CPU)

| stage | time |
|---|---|
{seconds}

## Sizes (fp16 safetensors)

| part | size |
|---|---|
{sizes}

## Quality

{quality}

Colours and backgrounds come out right; outlines are softer than the drawn shapes (the 8x8x4 latent
holds sub-cell detail such as star points only approximately, and the CPU budget is small), so the
model is a stand-in for measuring interpolation on a CPU, not a renderer. Circles and squares come out
best, triangles and stars least; guidance scale ~3 gives cleaner outlines than 7.5. With the ControlNet,
a shape lands on its skeleton's centre within a few pixels. More steps (--unet-steps) sharpen shapes.
"""
