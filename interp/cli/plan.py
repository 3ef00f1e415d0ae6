"""`python -m interp plan`: print the frame plan (tree, positions, noise levels) without a model."""
from __future__ import annotations

import argparse
import json
import sys

from interp.cli.flags import add_settings_flags, settings_from_args


def add_plan_parser(sub) -> None:
    p = sub.add_parser("plan", help="print the frame plan: positions, tree, DDIM indices")
    add_settings_flags(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run_plan)


def run_plan(args: argparse.Namespace) -> int:
    from interp.plan import make_plan
    from interp.scheduler import ddim_timesteps
    settings = settings_from_args(args)
    plan = make_plan(settings, ddim_timesteps(settings.num_inference_steps).tolist())
    rows = plan.to_json()
    if args.json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return 0
    sys.stdout.write(f"{'frame':>5} {'position':>9} {'level':>5} {'parents':>9} {'weight':>7} "
                     f"{'ddim':>5} {'t':>5}\n")
    for r in rows:
        parents = "-" if r["parents"] is None else f"{r['parents'][0]},{r['parents'][1]}"
        weight = "-" if r["weight"] is None else f"{r['weight']:.3f}"
        ddim = "-" if r["ddim_index"] is None else str(r["ddim_index"])
        t = "-" if r["timestep"] is None else str(r["timestep"])
        sys.stdout.write(f"{r['index']:>5} {r['position']:>9.4f} {r['level']:>5} {parents:>9} "
                         f"{weight:>7} {ddim:>5} {t:>5}\n")
    return 0
