"""Even pacing across whole timelines on the toy model: do the adjacent frames look equally far apart?

    python benchmarks/timeline_pacing.py [--timelines 8] [--frames 9] [--steps 50] [--out ...]

Held-out toy timelines of 3 and 4 shapes (one background each, the method, K = 1, guidance 3) are
rendered with --frames per segment, measured (Lab distance between adjacent frames), then re-paced
twice: across the whole timeline (frame budget moves to the segments that change most) and with every
segment keeping its frame count (frames only move inside their segment). Prints, per timeline and as
medians, the spread of the adjacent distances (PDV = their variance, max / min) before and after, and
the frames per segment; writes pacing.md and pacing.json.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from interp.metrics import get_distance  # noqa: E402
from interp.models.load import load_bundle  # noqa: E402
from interp.pacing import respace_render  # noqa: E402
from interp.render import Interpolator  # noqa: E402
from interp.settings import Settings  # noqa: E402
from interp.store import FrameStore  # noqa: E402
from interp.timeline import Keyframe, Timeline  # noqa: E402
from interp.toy import RECOMMENDED, data  # noqa: E402


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--timelines", type=int, default=8, help="of each length (3 and 4 keyframes)")
    p.add_argument("--frames", type=int, default=9, help="frames per segment before re-pacing")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/timeline_pacing"))
    return p.parse_args(argv)


def toy_timeline(chain: list) -> Timeline:
    """Keyframes of the chain's shapes, each with its caption as prompt."""
    return Timeline(tuple(Keyframe(data.draw(s), prompt=data.caption(s)) for s in chain))


def measure(engine, timeline: Timeline, settings: Settings, keep_counts: bool) -> dict:
    """Before/after spread of one re-pacing, and the frames per segment after."""
    result, report = respace_render(engine, timeline, settings, {}, get_distance("lab"),
                                    keep_counts=keep_counts)
    b, a = report["before"], report["after"]
    return {"pdv": [b["pdv"], a["pdv"]], "max_min": [b["max_min_ratio"], a["max_min_ratio"]],
            "smoothness": [b["smoothness"], a["smoothness"]],
            "frames": [len(s.frames) for s in result.segments]}


def table(rows: list) -> str:
    head = ["| timeline | keyframes | pacing | PDV before | PDV after | max/min before | max/min after "
            "| frames per segment after |", "|---|---|---|---|---|---|---|---|"]
    body = [f"| {r['name']} | {r['keyframes']} | {r['mode']} | {r['pdv'][0]:.3g} | {r['pdv'][1]:.3g} | "
            f"{r['max_min'][0]:.3g} | {r['max_min'][1]:.3g} | {', '.join(map(str, r['frames']))} |"
            for r in rows]
    for mode in ("whole timeline", "counts kept"):
        mine = [r for r in rows if r["mode"] == mode]
        pdv, ratio = np.array([r["pdv"] for r in mine]), np.array([r["max_min"] for r in mine])
        body.append(f"| **median** | | {mode} | {np.median(pdv[:, 0]):.3g} | {np.median(pdv[:, 1]):.3g} "
                    f"| {np.median(ratio[:, 0]):.3g} | {np.median(ratio[:, 1]):.3g} | "
                    f"PDV lower on {int((pdv[:, 1] < pdv[:, 0]).sum())} / {len(mine)} |")
    return "\n".join(head + body)


def main(argv=None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.WARNING)
    engine = Interpolator(load_bundle("toy"), FrameStore(None))
    settings = Settings(frames=args.frames, num_inference_steps=args.steps, size=64, eta=0.0,
                        guidance_scale=RECOMMENDED["guidance_scale"], candidates=1)
    rows = []
    for length in (3, 4):
        for i, chain in enumerate(data.held_out_chains(args.timelines, length, args.seed)):
            timeline = toy_timeline(chain)
            for mode, keep in (("whole timeline", False), ("counts kept", True)):
                rows.append({"name": f"t{length}-{i:02d}", "keyframes": length, "mode": mode,
                             **measure(engine, timeline, settings, keep)})
                sys.stdout.write(json.dumps(rows[-1]) + "\n")
                sys.stdout.flush()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pacing.md").write_text(table(rows) + "\n")
    (args.out / "pacing.json").write_text(json.dumps(rows, indent=1) + "\n")
    sys.stdout.write(table(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
