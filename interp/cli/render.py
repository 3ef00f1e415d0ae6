"""`python -m interp render A B [C ...]`: render a sequence through two or more images (a keyframe
timeline), export MP4/GIF/frames and summary.json."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from interp.cli.flags import add_settings_flags, settings_from_args, write_json
from interp.cli.inputs import collect_edits, read_timeline, with_poses
from interp.models.startup import (add_model_flags, add_store_flags, check_outputs,
                                   engine_from_args)
from interp.settings import Export

log = logging.getLogger(__name__)


def add_render_parser(sub) -> None:
    p = sub.add_parser("render", help="interpolate through two or more images")
    p.add_argument("images", nargs="*", metavar="IMAGE",
                   help="two or more images (any format PIL reads), the keyframes in order")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--timeline", type=Path, metavar="FILE",
                   help="JSON timeline: keyframes (image, prompt, negative_prompt, pose), segments, "
                        "loop (see the README)")
    p.add_argument("--loop", action="store_true", help="close the timeline: last image -> first")
    add_model_flags(p)
    add_settings_flags(p, frame_list=True)
    g = p.add_argument_group("frames, cache and ranking")
    g.add_argument("--edit", action="append", default=[], metavar="FRAME:key=value,...",
                   help="per-frame override, e.g. '8:prompt=a cat,strength=0.5,keyframe=on'")
    g.add_argument("--edits", type=Path, help="JSON file {frame: {field: value}} of frame edits")
    g.add_argument("--regenerate", action="append", default=[], metavar="FRAME[:SEED]")
    g.add_argument("--select", action="append", default=[], metavar="FRAME:CANDIDATE")
    add_store_flags(g)
    g.add_argument("--max-batch", type=int, default=None,
                   help="most candidates denoised at once (default: all of a frame)")
    g.add_argument("--respace", action="store_true",
                   help="render, then re-render with frames moved so adjacent steps look equally "
                        "large across the whole timeline (unchanged frames are reused)")
    g.add_argument("--keep-counts", action="store_true",
                   help="with --respace: every segment keeps its frame count (timed keyframes)")
    g.add_argument("--pose-a", type=Path, help="OpenPose JSON of the first image (two images)")
    g.add_argument("--pose-b", type=Path, help="OpenPose JSON of the second image (two images)")
    add_export_flags(p)
    p.set_defaults(func=run_render)


def add_export_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per Export field (gif_loop is --gif-loop), defaults from Export."""
    group = parser.add_argument_group("export")
    for f in dataclasses.fields(Export):
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            group.add_argument(flag, action="store_true")
        else:
            group.add_argument(flag, type=type(f.default), default=f.default)


def run_render(args: argparse.Namespace) -> int:
    from interp.models.startup import resolve_model
    from interp.video import export_all, write_frames_dir

    frames = args.frames or [None]
    args.frames = frames[0]
    settings = settings_from_args(args, resolve_model(args.model)[0])
    export = Export(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Export)})
    check_outputs(args.out, args)      # before any model work: a bad --out fails now
    edits = collect_edits(args)
    timeline = read_timeline(args.timeline, args.images, args.loop,
                             [n or settings.frames for n in frames])
    timeline = with_poses(timeline, args.pose_a, args.pose_b)
    engine, notes = engine_from_args(args, settings.pose, args.max_batch)
    if engine.scorer is None:
        settings = settings_from_args(args, engine.bundle.name, scorer=None)
    result, report = _render(engine, timeline, settings, edits, export, args)
    paths = export_all(result.images, args.out, export, formats=("mp4", "gif", "zip"))
    paths["frames"] = write_frames_dir(result.images, args.out / "frames")[0].parent
    summary = result.summary()
    bundle = engine.bundle
    summary.update(model={"name": bundle.name, "identity": bundle.identity,
                          "device": str(bundle.device), "dtype": str(bundle.dtype)},
                   export={k: str(v) for k, v in paths.items()}, notes=notes)
    if report is not None:
        from interp.eval.report import json_safe
        from interp.pacing import format_report
        summary["respace"] = json_safe(report)
        sys.stdout.write(format_report(report) + "\n")
    write_json(args.out / "summary.json", summary)
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return 0


def _render(engine, timeline, settings, edits, export, args) -> tuple:
    """(TimelineResult, respace report or None), with a progress bar."""
    from interp.sequence import render_timeline
    with _Progress() as progress:
        if args.respace:
            from interp.pacing import respace_render
            return respace_render(engine, timeline, settings, edits, keep_counts=args.keep_counts,
                                  fps=export.fps, on_event=progress)
        return render_timeline(engine, timeline, settings, edits, fps=export.fps,
                               on_event=progress), None


class _Progress:
    """A tqdm bar over denoising steps and inversion iterations, driven by render events."""

    def __enter__(self):
        from tqdm import tqdm
        self.bar = tqdm(desc="render", unit="step", leave=False)
        return self

    def __exit__(self, *exc):
        self.bar.close()

    def __call__(self, event) -> None:
        from interp.events import DenoiseStep, FrameReady, StageProgress
        if isinstance(event, (DenoiseStep, StageProgress)):
            self.bar.update(1)
        elif isinstance(event, FrameReady):
            state = "generated" if event.generated else "reused"
            self.bar.set_postfix_str(f"frame {event.index} {state}")
