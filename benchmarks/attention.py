"""Endpoint attention on the toy model: the method with each attention mode against off.

    python benchmarks/attention.py [--pairs 16] [--frames 9] [--steps 50]
        [--strength 0.5] [--share 0.5] [--blocks up] [--out benchmarks/out/attention]

Runs the harness (interp.eval) on held-out pairs that change shape and colour ("mixed") and on pairs
that change shape only ("same_colour"), with the variants "method attn=off", "attn=interpolate" and
"attn=extend" (K = 1), and writes each set's results.md / results.json / comparison.png. Several
values of --strength / --share / --blocks (comma lists) make a sweep: one table per setting, "off"
rendered once (the frame cache reuses it). Prints every table with the seconds per pair.
"""
from __future__ import annotations

import argparse
import itertools
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from interp.eval.harness import evaluate, make_variants, toy_pairs  # noqa: E402
from interp.eval.report import markdown_table, write_report  # noqa: E402
from interp.metrics import get_distance  # noqa: E402
from interp.models.load import load_bundle  # noqa: E402
from interp.render import Interpolator  # noqa: E402
from interp.settings import AttentionBlocks, Settings  # noqa: E402
from interp.store import FrameStore  # noqa: E402
from interp.toy import RECOMMENDED  # noqa: E402
from interp.toy.detect import CHECKS  # noqa: E402

MODES = ("off", "interpolate", "extend")


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=16)
    p.add_argument("--pair-seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=9)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--strength", default="0.5", help="comma list (a sweep)")
    p.add_argument("--share", default="0.5", help="comma list (a sweep)")
    p.add_argument("--blocks", default="up", help="comma list of up, mid_up, all (a sweep)")
    p.add_argument("--sets", default="mixed,same_colour")
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/attention"))
    return p.parse_args(argv)


def configs(args) -> list:
    """Every (strength, share, blocks) of the sweep."""
    return list(itertools.product([float(s) for s in args.strength.split(",")],
                                  [float(s) for s in args.share.split(",")],
                                  [AttentionBlocks(b) for b in args.blocks.split(",")]))


def main(argv=None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.WARNING)
    engine = Interpolator(load_bundle("toy"), FrameStore(None))
    base = Settings(frames=args.frames, num_inference_steps=args.steps, size=64, eta=0.0,
                    guidance_scale=RECOMMENDED["guidance_scale"], candidates=1)
    out = []
    for name in args.sets.split(","):
        pairs = toy_pairs(args.pairs, args.pair_seed, same_colour=name == "same_colour")
        for strength, share, blocks in configs(args):
            settings = base.replace(attention_strength=strength, attention_share=share,
                                    attention_blocks=blocks)
            start = time.perf_counter()
            ev = evaluate(engine, pairs, settings, make_variants(["method"], [1], MODES),
                          distance=get_distance("lab"), checks=CHECKS, fid=False)
            tag = f"{name}_s{strength:g}_sh{share:g}_{blocks.value}"
            write_report(ev, args.out / tag)
            out.append(f"## {name}: strength {strength:g}, share {share:g}, blocks {blocks.value}\n\n"
                       f"{markdown_table(ev)}\n\n{time.perf_counter() - start:.0f} s\n")
            sys.stdout.write(out[-1] + "\n")
            sys.stdout.flush()
    (args.out / "summary.md").write_text("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
