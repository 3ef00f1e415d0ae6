"""Full-size random-weight models on this machine's CPU: build, render, single-file round trip, SDXL forward.

    python benchmarks/fullsize.py render random-sd15       # real render at 128 px (pose, inversion, 2 candidates)
    python benchmarks/fullsize.py render random-sd21
    python benchmarks/fullsize.py render random-sdxl --dtype bfloat16   # 24 GB machines: bfloat16
    python benchmarks/fullsize.py single-file              # random SD 1.5 -> original single file -> load -> render

Each job runs in its own process (so the peak RSS is that model's) and prints one JSON object as its last
line: what it checked (tests/test_fullsize.py asserts on those fields) and its wall times and peak RSS
(reported in the README, never asserted).
"""
from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

import accelerate  # noqa: F401 (imported here so that build_s times the build, not the first import)
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from interp.images import load_image  # noqa: E402
from interp.models.load import load_bundle  # noqa: E402
from interp.models.fullsize import build_random, parameter_count  # noqa: E402
from interp.pose.keypoints import Pose  # noqa: E402
from interp.render import Interpolator  # noqa: E402
from interp.settings import Settings  # noqa: E402
from interp.store import FrameStore  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "assets" / "examples"
# The README's example pose (512 px canvas), and the same person stepping right with the arms raised.
POSE_A = {"canvas_width": 512, "canvas_height": 512, "people": [{"pose_keypoints_2d": [
    256, 80, 1, 256, 140, 1, 200, 140, 1, 180, 220, 1, 170, 300, 1, 312, 140, 1, 332, 220, 1, 342, 300, 1,
    225, 300, 1, 220, 400, 1, 215, 490, 1, 287, 300, 1, 292, 400, 1, 297, 490, 1, 245, 70, 1, 267, 70, 1,
    0, 0, 0, 280, 80, 1]}]}
POSE_B = {"canvas_width": 512, "canvas_height": 512, "people": [{"pose_keypoints_2d": [
    296, 80, 1, 296, 140, 1, 240, 140, 1, 220, 80, 1, 210, 20, 1, 352, 140, 1, 372, 80, 1, 382, 20, 1,
    265, 300, 1, 260, 400, 1, 255, 490, 1, 327, 300, 1, 332, 400, 1, 337, 490, 1, 285, 70, 1, 307, 70, 1,
    0, 0, 0, 320, 80, 1]}]}
RENDER = Settings(frames=3, num_inference_steps=3, size=128, candidates=2, invert_steps=2, invert_lr=1e-4,
                  pose=True, prompt="a photo of a person", negative_prompt="blurry", seed=0)


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, GB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def images() -> tuple:
    return load_image(EXAMPLES / "astronaut.jpg"), load_image(EXAMPLES / "chelsea.jpg")


def render_report(bundle, settings: Settings, poses: bool) -> dict:
    """Render once; the result's counts, expected counts and output checks, and the wall time."""
    start = time.perf_counter()
    kwargs = {"pose_a": Pose.from_json(POSE_A), "pose_b": Pose.from_json(POSE_B)} if poses else {}
    result = Interpolator(bundle, FrameStore()).render(*images(), settings, **kwargs)
    seconds = time.perf_counter() - start
    pixels = [np.asarray(f.image, dtype=np.int16) for f in result.frames]
    middle = result.frames[1]
    return {
        "render_s": round(seconds, 1), "counts": result.counts, "expected_counts": result.expected_counts,
        "inversion_steps": result.inversion_steps, "generated": result.generated,
        "middle_ddim_index": middle.ddim_index, "middle_candidates": len(middle.images),
        "sizes": [list(f.image.size) for f in result.frames],
        "latents_finite": all(bool(torch.isfinite(f.latents).all()) for f in result.frames),
        "frames_differ": [bool(np.abs(pixels[i] - pixels[j]).mean() > 1) for i, j in ((0, 1), (1, 2), (0, 2))],
        "candidates_differ": bool(np.abs(np.asarray(middle.images[0], dtype=np.int16)
                                         - np.asarray(middle.images[1], dtype=np.int16)).mean() > 1),
        "middle_std": float(pixels[1].std()),
    }


def job_render(name: str, dtype: str = "float32") -> dict:
    start = time.perf_counter()
    bundle = load_bundle(name, dtype=dtype)
    built = time.perf_counter() - start
    nets = ("unet", "controlnet", "vae", "text_encoder", "text_encoder_2")
    counts = {k: parameter_count(getattr(bundle, k)) for k in nets if getattr(bundle, k) is not None}
    report = render_report(bundle, RENDER, poses=True)
    pads = [t.pad_token_id for t in (bundle.tokenizer, bundle.tokenizer_2) if t is not None]
    return {"job": "render", "model": name, "dtype": dtype, "identity": bundle.identity,
            "family": bundle.family, "prediction_type": bundle.prediction_type, "pad_token_ids": pads,
            "parameters": counts, "build_s": round(built, 1), **report,
            "peak_rss_gb": round(peak_rss_gb(), 2)}


def _same_weights(name: str, loaded) -> dict:
    """Per network: does the loaded one hold exactly the source's tensors? (the source is rebuilt one
    network at a time: builds are deterministic, and two full copies need not fit in memory at once)"""
    out = {}
    for net in ("unet", "vae", "text_encoder"):
        source = build_random(name, components=(net,))[net].state_dict()
        mine = getattr(loaded, net).state_dict()
        out[net] = sorted(source) == sorted(mine) and all(torch.equal(source[k], mine[k]) for k in source)
        del source
    return out


def job_single_file(name: str) -> dict:
    from interp.models.single_file import save_single_file

    start = time.perf_counter()
    parts = build_random(name, components=("unet", "vae", "text_encoder"))
    with tempfile.TemporaryDirectory() as tmp:
        path = save_single_file(parts, Path(tmp) / f"{name}.safetensors")
        del parts
        saved = time.perf_counter() - start
        size_gb = path.stat().st_size / 1e9
        start = time.perf_counter()
        bundle = load_bundle(str(path), config=name.removeprefix("random-"), controlnet=None)
        loaded = time.perf_counter() - start
    same = _same_weights(name, bundle)
    report = render_report(bundle, RENDER.replace(invert_steps=0, pose=False), poses=False)
    return {"job": "single-file", "model": name, "file_gb": round(size_gb, 2), "build_and_save_s": round(saved, 1),
            "load_s": round(loaded, 1), "identity": bundle.identity, "same_weights": same,
            "tokenizer": [len(bundle.tokenizer), bundle.tokenizer.model_max_length, bundle.tokenizer.pad_token_id],
            "prediction_type": bundle.prediction_type, **report, "peak_rss_gb": round(peak_rss_gb(), 2)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("job", choices=["render", "single-file"])
    p.add_argument("model", nargs="?", default="random-sd15",
                   help="render: random-sd15, random-sd21 or random-sdxl")
    p.add_argument("--dtype", default="float32", help="float32 or bfloat16 (SDXL on 24 GB)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.job == "render":
        report = job_render(args.model, args.dtype)
    else:
        report = job_single_file(args.model)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
