"""Train the built-in toy model from scratch, reproducibly: `python -m interp.toy.train [--out DIR] [--quick]`.

Stages (each timed): data -> AutoencoderKL -> CLIPTextModel + UNet2DConditionModel (jointly) -> open_clip
scorer -> ControlNet on shape skeletons -> fp16 safetensors in diffusers layout + README.md. --quick runs
a few steps of every stage into a temporary directory (what the tests use).
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from interp.toy import data

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Budget:
    """Sizes and step counts of one training run."""

    n_train: int = 30000
    vae_steps: int = 1500
    vae_batch: int = 16
    unet_steps: int = 2600
    unet_batch: int = 32
    clip_steps: int = 200
    clip_batch: int = 192
    clip_clean: int = 8000
    clip_blend: int = 3000
    clip_flawed: int = 3000
    controlnet_steps: int = 300
    controlnet_batch: int = 32
    n_control: int = 6000
    n_check: int = 64


FULL = Budget()
QUICK = Budget(n_train=64, vae_steps=2, vae_batch=4, unet_steps=2, unet_batch=4, clip_steps=2, clip_batch=8,
               clip_clean=16, clip_blend=8, clip_flawed=6, controlnet_steps=2, controlnet_batch=4, n_control=16, n_check=4)


def training_set(n: int, seed: int) -> tuple[np.ndarray, list[str], list[data.ShapeSpec]]:
    """uint8 images [n, 64, 64, 3], captions and specs of data.sample(n, seed)."""
    samples = data.sample(n, seed)
    return data.to_uint8([im for im, _, _ in samples]), [c for _, c, _ in samples], [s for _, _, s in samples]


def run_stages(budget: Budget, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run every stage; returns (modules, report with per-stage seconds and metrics)."""
    from interp.models.tokenizer import build_tokenizer
    from interp.toy import stage_clip, stage_unet, stages

    report: dict[str, Any] = {"budget": asdict(budget), "seed": seed, "threads": torch.get_num_threads(),
                              "seconds": {}, "metrics": {}}
    t0 = time.perf_counter()
    images, captions, specs = training_set(budget.n_train, seed)
    report["seconds"]["data"] = time.perf_counter() - t0
    vae = _stage(report, "vae", stages.train_vae(images, budget.vae_steps, budget.vae_batch, seed=seed))["vae"]
    t0 = time.perf_counter()
    latents = stages.encode_all(vae, images)
    tokenizer = build_tokenizer()
    ids = stage_unet.token_ids(tokenizer, captions)
    empty = stage_unet.token_ids(tokenizer, [""])[0]
    report["seconds"]["encode"] = time.perf_counter() - t0
    report["metrics"]["latents"] = {"std": float(latents.std()), "mean": float(latents.mean())}
    nets = _stage(report, "unet", stage_unet.train_unet(latents, ids, empty, budget.unet_steps,
                                                        budget.unet_batch, seed=seed))
    clip = _stage(report, "clip", stage_clip.train_clip(budget.clip_steps, budget.clip_clean, budget.clip_blend,
                                                        budget.clip_batch, seed=seed, vae=vae,
                                                        n_flawed=budget.clip_flawed))["clip"]
    t0 = time.perf_counter()
    controls = stage_unet.control_tensor([data.pose_image(s) for s in specs[: budget.n_control]])
    report["seconds"]["skeletons"] = time.perf_counter() - t0
    n = budget.n_control
    controlnet = _stage(report, "controlnet", stage_unet.train_controlnet(
        nets["unet"], nets["text_encoder"], latents[:n], ids[:n], empty, controls, budget.controlnet_steps,
        budget.controlnet_batch, seed=seed))["controlnet"]
    modules = {"vae": vae, **nets, "clip": clip, "controlnet": controlnet, "tokenizer": tokenizer}
    return modules, report


def _stage(report: dict[str, Any], name: str, result: Any) -> dict[str, Any]:
    report["seconds"][name] = result.seconds
    report["metrics"][name] = result.metrics
    log.info("stage %s done in %.0f s: %s", name, result.seconds, result.metrics)
    return result.modules


def check(out: Path, budget: Budget, seed: int, report: dict[str, Any]) -> None:
    """Reload the saved model through interp.models and measure VAE PSNR and sample colour accuracy."""
    from interp.models.load import load_bundle
    from interp.toy import check as checks

    t0 = time.perf_counter()
    bundle = load_bundle(str(out), controlnet=None)
    held = data.sample(budget.n_check, seed + 12345)
    report["metrics"]["vae_psnr_held_out"] = checks.vae_psnr(bundle, [im for im, _, _ in held])
    specs = [s for _, _, s in held]
    acc, images = checks.colour_accuracy(bundle, specs, seed=seed, steps=50, guidance_scale=5.0)
    report["metrics"]["sample_colour_accuracy"] = acc
    report["seconds"]["check"] = time.perf_counter() - t0
    checks.grid(images).save(out / "samples.png")
    checks.grid([im for im, _, _ in held]).save(out / "samples_reference.png")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m interp.toy.train", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="output directory (default assets/toy; --quick: a temp dir)")
    parser.add_argument("--quick", action="store_true", help="a few steps of every stage (for tests)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1: fastest on a busy shared machine; bitwise reproducible)")
    parser.add_argument("--no-check", action="store_true", help="skip the post-training quality check")
    for stage in ("vae", "unet", "clip", "controlnet"):
        parser.add_argument(f"--{stage}-steps", type=int, default=None, help=f"override the {stage} step count")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.threads < 1:
        parser.error(f"--threads must be >= 1; got {args.threads}")
    torch.set_num_threads(args.threads)
    if args.out:
        out = Path(args.out)
    else:
        out = Path(tempfile.mkdtemp(prefix="toy-")) if args.quick else Path("assets/toy")
    budget = QUICK if args.quick else FULL
    overrides = {f"{k}_steps": getattr(args, f"{k}_steps") for k in ("vae", "unet", "clip", "controlnet")}
    for key, value in overrides.items():
        if value is not None and value < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1; got {value}")
    budget = replace(budget, **{k: v for k, v in overrides.items() if v is not None})
    train(out, budget, args.seed, check_quality=not args.no_check)
    return 0


def train(out: Path, budget: Budget, seed: int = 0, check_quality: bool = True) -> dict[str, Any]:
    """Train every stage and write the model to `out` (replaced atomically); returns the report."""
    from interp.toy import save

    start = time.perf_counter()
    modules, report = run_stages(budget, seed)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save.save_model(tmp, modules)
    if check_quality:
        check(tmp, budget, seed, report)
    report["seconds"]["total"] = time.perf_counter() - start
    report["sizes"] = save.sizes(tmp)
    (tmp / "training.json").write_text(json.dumps(report, indent=2, sort_keys=True, default=str))
    save.write_readme(tmp, report, quick=budget.n_train < FULL.n_train)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    log.info("wrote %s in %.0f s", out, report["seconds"]["total"])
    return report


if __name__ == "__main__":
    raise SystemExit(main())
