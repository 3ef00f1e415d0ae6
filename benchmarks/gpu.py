"""GPU benchmark: the full-size random-weight models at their native sizes, and every speed option.

    python benchmarks/gpu.py                      # CUDA, float16: random-sd15 at 512 px, random-sdxl at 1024 px
    python benchmarks/gpu.py --device cpu --size 64 --frames 3 --steps 2    # proves it runs (tiny models)

One short script to run once on a CUDA machine (about 8 minutes on an H100-class GPU; no run starts
after --budget-s, and the table says what was skipped). Per model: one full run (the balanced preset:
17 frames, 50 DDIM steps, 3 candidates, 100 textual-inversion steps, pose ControlNet), then a shorter
run (3 frames, 25 steps, 5 inversion steps) per speed option, with its own baseline: SDPA attention
(diffusers' default) vs the classic AttnProcessor, channels-last, VAE slicing, VAE tiling, attention
slicing, CPU offload, and torch.compile of the UNet last. Each run gets a fresh model; the full runs
and torch.compile first render once with the same shapes (so first-call costs and compiling show
apart, as warmup_s). Per run: seconds per generated frame, seconds inside model forwards (CUDA events
around the bundle's model calls) against wall time, UNet rows against the analytic minimum, and peak
GPU memory. Random weights take the same time as real ones. Prints a table and writes JSON (--out).
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.fullsize import POSE_A, POSE_B, images  # noqa: E402
from interp.errors import ModelUnavailable  # noqa: E402
from interp.models.load import load_bundle, weights_available  # noqa: E402
from interp.models.speed import set_attention  # noqa: E402
from interp.pose.keypoints import Pose  # noqa: E402
from interp.render import Interpolator  # noqa: E402
from interp.settings import preset  # noqa: E402
from interp.store import FrameStore  # noqa: E402

MODELS = {"cuda": (("random-sd15", 512), ("random-sdxl", 1024)),
          "cpu": (("tiny-sd15", 64), ("tiny-sd21-v", 64))}
OPTIONS = (  # (label, load_bundle options, attention processor)
    ("sdpa (default)", {}, "sdpa"),
    ("classic attention", {}, "classic"),
    ("channels-last", {"channels_last": True}, "sdpa"),
    ("vae slicing", {"vae_slicing": True}, "sdpa"),
    ("vae tiling", {"vae_tiling": True}, "sdpa"),
    ("attention slicing", {"attention_slicing": True}, "sdpa"),
    ("cpu offload", {"cpu_offload": True}, "sdpa"),
    ("compile unet", {"compile_unet": True}, "sdpa"),
)
METHODS = ("unet_forward", "controlnet_forward", "encode_images", "decode_latents", "encode_prompt")


class ForwardTimer:
    """Seconds inside the bundle's model calls: CUDA events around each call (no synchronising in
    between), or perf_counter on the CPU. Wraps the bundle instance's methods for this benchmark only."""

    def __init__(self, bundle):
        self.cuda = bundle.device.type == "cuda"
        self.bundle, self.events, self.seconds = bundle, [], 0.0
        for name in METHODS:
            setattr(bundle, name, self._timed(getattr(bundle, name)))

    def close(self) -> None:
        """Give the bundle its own methods back (and break the reference cycle through them)."""
        for name in METHODS:
            delattr(self.bundle, name)

    def _timed(self, method):
        def call(*args, **kwargs):
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                out = method(*args, **kwargs)
                end.record()
                self.events.append((start, end))
                return out
            start = time.perf_counter()
            out = method(*args, **kwargs)
            self.seconds += time.perf_counter() - start
            return out
        return call

    def total(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
            self.seconds += sum(s.elapsed_time(e) for s, e in self.events) / 1000
            self.events.clear()
        seconds, self.seconds = self.seconds, 0.0
        return seconds


def render_once(bundle, settings) -> tuple:
    """(result, wall seconds) of one render from scratch (a fresh frame store)."""
    poses = {"pose_a": Pose.from_json(POSE_A), "pose_b": Pose.from_json(POSE_B)} if settings.pose else {}
    if bundle.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = Interpolator(bundle, FrameStore()).render(*images(), settings, **poses)
    if bundle.device.type == "cuda":
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


def measure(model: str, args, options: dict, attention: str, settings, warm_up: bool) -> dict:
    """Load a fresh model with `options`, optionally warm up with the same shapes, then time one render."""
    gc.collect()  # the previous run's model is gone before this one loads
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
    bundle = load_bundle(model, device=args.device, dtype=args.dtype, **options)
    if attention != "sdpa":  # sdpa is already the default; setting it would undo attention slicing
        set_attention({"unet": bundle.unet, "controlnet": bundle.controlnet}, attention)
    start = time.perf_counter()
    if warm_up:  # the same shapes (candidates, size, inversion batch), a fraction of the work
        render_once(bundle, settings.replace(frames=3, invert_steps=min(settings.invert_steps, 2),
                                             seed=settings.seed + 1))
    warmup = time.perf_counter() - start
    timer = ForwardTimer(bundle)
    if bundle.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result, wall = render_once(bundle, settings)
    forwards = timer.total()
    timer.close()
    generated = len(result.generated)
    row = {"warmup_s": warmup, "wall_s": wall, "s_per_frame": wall / max(generated, 1),
           "forward_s": forwards, "forward_share": forwards / wall, "generated": generated,
           "unet_rows": result.counts["rows"]["unet"], "minimum": result.expected_counts.get("unet_rows"),
           "unet_calls": result.counts["calls"]["unet"],
           "peak_gb": torch.cuda.max_memory_allocated() / 2**30 if bundle.device.type == "cuda" else None}
    return row


def skip_reason(options: dict, args, started: float) -> str | None:
    if options.get("cpu_offload") and not args.device.startswith("cuda"):
        return "needs CUDA"
    if options.get("compile_unet") and args.device == "cpu" and not args.compile_on_cpu:
        return "inductor compiling takes minutes on a CPU (--compile-on-cpu runs it)"
    if time.perf_counter() - started > args.budget_s:
        return f"not started: past the time budget ({args.budget_s:.0f} s)"
    return None


def runs(models: list, args) -> list:
    """(model, size, label, options, attention, settings) in priority order: every model's full run, then
    the options over shorter settings, torch.compile last (its compiling is the slowest part)."""
    invert = args.invert_steps if args.invert_steps is not None else (None if args.device != "cpu" else 2)
    given = {k: v for k, v in (("frames", args.frames), ("num_inference_steps", args.steps),
                               ("invert_steps", invert)) if v is not None}
    fulls, shorts, compiled = [], [], []
    for model, size in models:
        full = preset("balanced", prompt="a photo of a person", size=size, pose=True, **given)
        short = full.replace(frames=args.frames or 3, num_inference_steps=args.steps or 25,
                             invert_steps=5 if invert is None else invert)
        fulls.append((model, size, "full: sdpa (default)", {}, "sdpa", full))
        for label, options, attention in OPTIONS:
            (compiled if options.get("compile_unet") else shorts).append((model, size, label, options, attention, short))
    return fulls + shorts + compiled


def run_all(models: list, args) -> list:
    """Every run in order; one row each (skips and errors are rows too)."""
    rows, started, plan = [], time.perf_counter(), runs(models, args)
    for kind, (_, _, _, _, _, s) in {p[2].startswith("full"): p for p in plan}.items():
        print(f"{'full runs' if kind else 'option runs'}: {s.frames} frames, {s.num_inference_steps} DDIM steps, "
              f"{s.candidates} candidates, {s.invert_steps} inversion steps, pose {'on' if s.pose else 'off'}, "
              f"guidance {s.guidance_scale}, eta {s.eta}")
    print(" | ".join(f"{c:>12}" if i != 2 else f"{c:<22}" for i, c in enumerate(COLUMNS)))
    for model, size, label, options, attention, settings in plan:
        row = {"model": model, "size": size, "run": label, "frames": settings.frames,
               "steps": settings.num_inference_steps, "candidates": settings.candidates,
               "invert_steps": settings.invert_steps}
        reason = skip_reason(options, args, started)
        warm_up = bool(options.get("compile_unet")) or (label.startswith("full") and args.device != "cpu")
        try:
            row.update({"skipped": reason} if reason else measure(model, args, options, attention, settings, warm_up))
        except (RuntimeError, ValueError, ModelUnavailable) as exc:  # a row, not the end of the benchmark
            row["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        print(format_row(row), flush=True)
        rows.append(row)
    return rows


COLUMNS = ("model", "size", "run", "frames", "steps", "warmup_s", "wall_s", "s_per_frame", "forward_s",
           "forward_share", "unet_rows", "minimum", "peak_gb")


def format_row(row: dict) -> str:
    """One table line: the columns, or what was skipped / went wrong."""
    names = COLUMNS if not ("skipped" in row or "error" in row) else COLUMNS[:3]
    cells = [f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in names]
    line = " | ".join(f"{c:>12}" if i != 2 else f"{c:<22}" for i, c in enumerate(cells))
    return line if names is COLUMNS else f"{line} | {row.get('skipped') or row.get('error')}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default=None, help="default: float16 on CUDA, float32 elsewhere")
    p.add_argument("--models", default=None, help="MODEL:SIZE,... (default: the full-size models on CUDA, "
                                                  "tiny ones on the CPU)")
    p.add_argument("--size", type=int, default=None, help="one size for every model (default: native)")
    p.add_argument("--frames", type=int, default=None, help="default: 17 for the full run, 3 per option")
    p.add_argument("--steps", type=int, default=None, help="default: 50 for the full run, 25 per option")
    p.add_argument("--invert-steps", type=int, default=None,
                   help="default: 100 for the full run, 5 per option (2 for both on the CPU)")
    p.add_argument("--budget-s", type=float, default=330.0, help="no run starts after this many seconds")
    p.add_argument("--compile-on-cpu", action="store_true")
    p.add_argument("--out", type=Path, default=Path("out/gpu_benchmark.json"))
    args = p.parse_args(argv)
    listed = ([(m.split(":")[0], int(m.split(":")[1])) for m in args.models.split(",")] if args.models
              else MODELS["cuda" if args.device.startswith("cuda") else "cpu"])
    models = [(m, args.size or size) for m, size in listed if weights_available(m)]
    for m in sorted({m for m, _ in listed} - {m for m, _ in models}):
        print(f"skipped {m}: it does not load here")
    print(f"device {args.device}, dtype {args.dtype or 'default'}; models {models}; "
          f"no run starts after {args.budget_s:.0f} s")
    rows = run_all(models, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": torch.cuda.get_device_name() if args.device.startswith("cuda")
                                    else "cpu", "torch": torch.__version__, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if rows and all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
