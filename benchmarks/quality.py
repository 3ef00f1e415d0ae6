"""Quality benchmark on the toy model: the method vs its baselines, then perceptual respacing.

    python benchmarks/quality.py [--pairs 16] [--frames 9] [--steps 50] [--out benchmarks/out/quality]

Runs the harness twice, on held-out pairs that change shape and colour (out/mixed) and on pairs that
change shape only (out/same_colour: there the strict palette rate is meaningful), writing each set's
results.md / results.json / PNGs; then respace.md (PDV and max/min ratio of the adjacent distances
before and after respacing, per pair and on average). Prints every table.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from interp.eval.report import markdown_table, write_report  # noqa: E402
from interp.eval.harness import SCHEMES, evaluate, make_variants, pair_settings, toy_pairs  # noqa: E402
from interp.pacing import respace_render  # noqa: E402
from interp.timeline import two_image  # noqa: E402
from interp.metrics import get_distance  # noqa: E402
from interp.models.load import load_bundle  # noqa: E402
from interp.render import Interpolator  # noqa: E402
from interp.settings import Settings  # noqa: E402
from interp.store import FrameStore  # noqa: E402
from interp.toy import RECOMMENDED, data  # noqa: E402
from interp.toy.nets import load_toy_clip  # noqa: E402
from interp.toy.detect import CHECKS  # noqa: E402


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="toy", help="toy, or a directory written by interp.toy.train")
    p.add_argument("--pairs", type=int, default=16)
    p.add_argument("--pair-seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=9)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--guidance", type=float, default=RECOMMENDED["guidance_scale"])
    p.add_argument("--candidates", default="1,4")
    p.add_argument("--distance", default="lab")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/quality"))
    return p.parse_args(argv)


def respace_table(engine, pairs, settings: Settings, distance) -> tuple:
    """(markdown, raw) of respacing the method's sequence of every pair."""
    rows, raw = [], []
    for pair in pairs:
        s = pair_settings(settings, pair, make_variants(["method"], [1])[0])
        _, report = respace_render(engine, two_image(pair.image_a, pair.image_b, s), s, {}, distance)
        b, a = report["before"], report["after"]
        raw.append(report)
        rows.append(f"| {pair.name} | {b['pdv']:.3g} | {a['pdv']:.3g} | {b['max_min_ratio']:.3g} | "
                    f"{a['max_min_ratio']:.3g} | {len(report['reused'])} |")
    pdv = np.array([[r["before"]["pdv"], r["after"]["pdv"]] for r in raw])
    ratio = np.array([[r["before"]["max_min_ratio"], r["after"]["max_min_ratio"]] for r in raw])
    rows.append(f"| **median** | {np.median(pdv[:, 0]):.3g} | {np.median(pdv[:, 1]):.3g} | "
                f"{np.median(ratio[:, 0]):.3g} | {np.median(ratio[:, 1]):.3g} | |")
    rows.append(f"| pairs whose PDV shrank | {int((pdv[:, 1] < pdv[:, 0]).sum())} / {len(raw)} | "
                "| | | |")
    head = ["| pair | PDV before | PDV after | max/min before | max/min after | reused frames |",
            "|---|---|---|---|---|---|"]
    return "\n".join(head + rows), raw


def main(argv=None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.WARNING)
    bundle = load_bundle(args.model, device=args.device)
    ks = [int(k) for k in args.candidates.split(",")]
    model_dir = args.model if Path(args.model).is_dir() else None   # a toy model trained elsewhere
    scorer = (load_toy_clip(device=bundle.device, counter=bundle.counter, model_dir=model_dir)
              if max(ks) > 1 else None)
    engine = Interpolator(bundle, FrameStore(None), scorer)
    settings = Settings(frames=args.frames, num_inference_steps=args.steps, size=64,
                        guidance_scale=args.guidance, eta=0.0, candidates=1,
                        rank_positive=data.CLEAN_CAPTION, rank_negative=data.BLEND_CAPTION)
    distance = get_distance(args.distance)
    report = []
    for name, same in (("mixed", False), ("same_colour", True)):
        pairs = toy_pairs(args.pairs, args.pair_seed, same_colour=same)
        start = time.perf_counter()
        ev = evaluate(engine, pairs, settings, make_variants(list(SCHEMES), ks), distance=distance,
                      distance_name=args.distance, checks=CHECKS)
        seconds = time.perf_counter() - start
        write_report(ev, args.out / name)
        report.append(f"## {name} pairs\n\n{markdown_table(ev)}\n\nharness: {seconds:.0f} s for "
                      f"{len(pairs)} pairs\n")
    pairs = toy_pairs(args.pairs, args.pair_seed)
    table, raw = respace_table(engine, pairs, settings, distance)
    (args.out / "respace.md").write_text(table + "\n")
    (args.out / "respace.json").write_text(json.dumps(raw, indent=1) + "\n")
    sys.stdout.write("\n".join(report) + f"\nrespacing (method, K=1, mixed pairs):\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
