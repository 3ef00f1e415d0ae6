"""Command-line interface: `python -m interp render|plan|pose|eval|respace ...` (the dispatcher).

Each subcommand lives in its own module and registers its parser here; shared flags are in
interp.cli.flags.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from interp.cli.eval import add_eval_parser
from interp.cli.plan import add_plan_parser
from interp.cli.pose import add_pose_parser
from interp.cli.render import add_render_parser
from interp import limits
from interp.errors import InterpError, one_line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m interp",
                                     description="Interpolate between two images with diffusion.")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    add_render_parser(sub)
    add_plan_parser(sub)
    add_pose_parser(sub)
    add_eval_parser(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        limits.current()               # an invalid INTERP_MAX_* variable stops every command
        return int(args.func(args) or 0)
    except (InterpError, ValueError, TypeError, OSError) as exc:
        if args.verbose:
            raise
        sys.stderr.write(f"error: {one_line(exc)}\n")
        return 2
