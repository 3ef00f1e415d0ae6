"""`python -m interp eval ...` (quality harness) and `python -m interp respace A B ...` (even pacing)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from interp.cli.flags import add_settings_flags, settings_from_args, write_json
from interp.models.startup import (add_model_flags, add_store_flags, check_outputs,
                                   engine_from_args)


EVAL_DEFAULTS = {"frames": 9}          # the harness's defaults where the flag is not given


def _int_list(text: str) -> list:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 1,4, got {text!r}") from None


def _str_list(text: str) -> list:
    return [v.strip() for v in text.split(",") if v.strip()]


def add_eval_parser(sub) -> None:
    """Register the `eval` and `respace` subcommands."""
    from interp.eval.harness import SCHEMES
    p = sub.add_parser("eval", help="measure the method against its baselines on image pairs",
                       conflict_handler="resolve",
                       description="Quality harness. Pairs: --toy-pairs N (held-out toy shapes, with "
                                   "the on-manifold rate) or --pairs DIR holding <name>_a.<ext> and "
                                   "<name>_b.<ext> (optional <name>.txt: one prompt line, or two "
                                   "lines for A and B).")
    add_model_flags(p)
    add_settings_flags(p)
    p.set_defaults(preset="draft", func=run_eval)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--pairs", type=Path, help="directory of <name>_a.* / <name>_b.* image pairs")
    src.add_argument("--toy-pairs", type=int, metavar="N", help="N held-out toy pairs (default 8)")
    p.add_argument("--pair-seed", type=int, default=0, help="seed of the held-out toy pairs")
    p.add_argument("--same-colour", action="store_true",
                   help="toy pairs that change shape only (both ends share their colour)")
    p.add_argument("--schemes", type=_str_list, default=list(SCHEMES),
                   help=f"comma list from {','.join(SCHEMES)} (default: all)")
    p.add_argument("--attention", type=_str_list, default=[], metavar="MODE[,MODE...]",
                   help="endpoint-attention modes of the method, one column each "
                        "(off,interpolate,extend; default: the settings' --attention)")
    p.add_argument("--candidates", type=_int_list, default=None, metavar="K[,K...]",
                   help="candidates per frame for the method; several values = one column each "
                        "(e.g. 1,4 to measure CLIP ranking); default: the preset's")
    _add_common(p)
    p.add_argument("--out", type=Path, required=True, help="output directory for results and plots")

    r = sub.add_parser("respace", help="render, then re-render with perceptually even frame spacing")
    r.add_argument("images", nargs="+", metavar="IMAGE", help="two or more images, in order")
    r.add_argument("--loop", action="store_true", help="close the timeline: last image -> first")
    r.add_argument("--keep-counts", action="store_true",
                   help="every segment keeps its frame count (its frames only move)")
    add_model_flags(r)
    add_settings_flags(r)
    r.add_argument("--rounds", type=int, default=1, help="respacing rounds (each re-renders)")
    _add_common(r)
    r.add_argument("--out", type=Path, default=None, help="write frames, video and report here")
    r.set_defaults(func=run_respace)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--distance", default="lab", choices=["lab", "pixel", "lpips"],
                   help="adjacent-frame distance (lab: CIE76 on 64 px; lpips only with local weights)")
    add_store_flags(p)


def _settings(args: argparse.Namespace, toy: bool):
    """The preset, the model's needs (the toy's for toy pairs: 64 px, its guidance and ranking
    prompts), the harness's defaults (9 frames), then the given flags."""
    from interp.models.startup import resolve_model
    for name, value in EVAL_DEFAULTS.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    return settings_from_args(args, "toy" if toy else resolve_model(args.model)[0])


def _is_toy(args: argparse.Namespace) -> bool:
    from interp.models.startup import resolve_model
    return resolve_model(args.model)[0] == "toy"


def run_eval(args: argparse.Namespace) -> int:
    from interp.eval.report import markdown_table, write_report
    from interp.eval.harness import evaluate, folder_pairs, make_variants, toy_pairs
    from interp.metrics import get_distance
    from interp.toy.detect import CHECKS
    check_outputs(args.out, args)
    ks, modes = args.candidates, args.attention
    args.candidates = args.attention = None   # the per-column lists are not Settings values
    toy = _is_toy(args) or args.pairs is None
    settings = _settings(args, toy)
    ks = ks or [settings.candidates]
    distance = get_distance(args.distance)
    pairs = (folder_pairs(args.pairs) if args.pairs is not None
             else toy_pairs(args.toy_pairs or 8, args.pair_seed, settings.size or 64, args.same_colour))
    engine, note = engine_from_args(args, settings.pose)
    ev = evaluate(engine, pairs, settings, make_variants(args.schemes, ks, modes),
                  distance=distance, distance_name=args.distance,
                  checks=CHECKS if args.pairs is None else None)
    ev.notes.extend(note)
    paths = write_report(ev, args.out)
    sys.stdout.write(markdown_table(ev) + "\n\n" + "\n".join(f"{k}: {v}" for k, v in paths.items())
                     + "\n")
    return 0


def run_respace(args: argparse.Namespace) -> int:
    from interp.cli.inputs import read_timeline
    from interp.metrics import get_distance
    from interp.pacing import format_report, respace_render
    settings = _settings(args, _is_toy(args))
    check_outputs(args.out, args)
    timeline = read_timeline(None, args.images, args.loop, [settings.frames])
    engine, _ = engine_from_args(args, settings.pose)
    result, report = respace_render(engine, timeline, settings, {}, get_distance(args.distance),
                                    rounds=args.rounds, keep_counts=args.keep_counts)
    sys.stdout.write(format_report(report) + "\n")
    if args.out is not None:
        from interp.video import export_all
        from interp.settings import Export
        args.out.mkdir(parents=True, exist_ok=True)
        export_all(result.images, args.out, Export(), formats=("gif", "frames"))
        from interp.eval.report import json_safe
        write_json(args.out / "respace.json", json_safe({"report": report, "summary": result.summary()}))
    return 0
