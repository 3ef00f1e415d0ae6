"""Performance benchmark: model calls against the analytic minimum, time in model forwards, per frame.

    python benchmarks/perf.py [--model tiny] [--frames 17] [--steps 50] [--size 64] [--device cpu]

Runs three renders over one loaded model and one store: a cold render, the identical render again
(everything cached), and a re-roll of the middle frame (the frame and its descendants). Prints one
table row per run: UNet rows made vs the analytic minimum (sum over generated frames of
candidates x DDIM steps x CFG factor), wall time, time inside model forwards, their ratio, and the
time per generated frame.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from interp.models.load import load_bundle  # noqa: E402
from interp.edits import regenerate  # noqa: E402
from interp.render import Interpolator  # noqa: E402
from interp.settings import Settings  # noqa: E402
from interp.store import FrameStore  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "assets" / "examples"


class ForwardTimer:
    """Wall time spent inside the networks' forward calls, via torch forward hooks."""

    def __init__(self, bundle):
        self.total = 0.0
        self._start: dict = {}
        modules = [bundle.unet, bundle.text_encoder, bundle.vae.encoder, bundle.vae.decoder]
        if bundle.controlnet is not None:
            modules.append(bundle.controlnet)
        self.handles = []
        for m in modules:
            self.handles.append(m.register_forward_pre_hook(self._pre))
            self.handles.append(m.register_forward_hook(self._post))

    def _pre(self, module, args):
        self._start[id(module)] = time.perf_counter()

    def _post(self, module, args, output):
        self.total += time.perf_counter() - self._start.pop(id(module))

    def close(self):
        for h in self.handles:
            h.remove()


def run(engine, timer, label, images, settings, edits=None) -> dict:
    timer.total = 0.0
    start = time.perf_counter()
    result = engine.render(*images, settings, edits or {})
    wall = time.perf_counter() - start
    made, minimum = result.counts["rows"]["unet"], result.expected_counts["unet_rows"]
    generated = len(result.generated)
    return {"run": label, "generated": generated, "reused": len(result.reused),
            "unet_rows": made, "minimum": minimum, "extra": made - minimum,
            "unet_calls": result.counts["calls"]["unet"], "wall_s": wall,
            "model_s": timer.total, "ratio": wall / timer.total if timer.total else float("nan"),
            "s_per_frame": wall / generated if generated else 0.0}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--frames", type=int, default=17)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--candidates", type=int, default=0, help="0 = paper rule 8, 7, 6, 5")
    args = p.parse_args(argv)
    from PIL import Image
    images = [Image.open(EXAMPLES / n).convert("RGB") for n in ("astronaut.jpg", "chelsea.jpg")]
    bundle = load_bundle(args.model, device=args.device)
    settings = Settings(frames=args.frames, num_inference_steps=args.steps, size=args.size,
                        candidates=args.candidates, prompt="a photo")
    engine, timer = Interpolator(bundle, FrameStore()), ForwardTimer(bundle)
    middle = (args.frames - 1) // 2
    rows = [run(engine, timer, "cold", images, settings),
            run(engine, timer, "cached", images, settings),
            run(engine, timer, f"reroll {middle}", images, settings, regenerate({}, middle, 1))]
    timer.close()
    print(f"model {bundle.identity} on {bundle.device} ({bundle.dtype}); {args.frames} frames, "
          f"S={args.steps}, {args.size}px")
    head = ("run", "generated", "reused", "unet_rows", "minimum", "extra", "unet_calls", "wall_s",
            "model_s", "ratio", "s_per_frame")
    print(" | ".join(f"{h:>11}" for h in head))
    for r in rows:
        print(" | ".join(f"{r[h]:>11.3f}" if isinstance(r[h], float) else f"{r[h]:>11}"
                         for h in head))
    return 0


if __name__ == "__main__":
    sys.exit(main())
