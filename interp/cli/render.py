"""`python -m interp render A B ...`: render a sequence, export MP4/GIF/frames and summary.json."""
from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

from interp.cli.flags import (add_model_flags, add_settings_flags, engine_from_args, settings_from_args,
                  write_json)
from interp.models.startup import add_store_flags
from interp.settings import Export, FrameEdit

log = logging.getLogger(__name__)

_EDIT_KEYS = [f for f in FrameEdit.__dataclass_fields__]
_EDIT_SPLIT = re.compile(r",(?=\s*(?:%s)=)" % "|".join(_EDIT_KEYS))


def add_render_parser(sub) -> None:
    p = sub.add_parser("render", help="interpolate between two images")
    p.add_argument("image_a", help="first image (any format PIL reads)")
    p.add_argument("image_b", help="last image")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    add_model_flags(p)
    add_settings_flags(p)
    g = p.add_argument_group("frames, cache and ranking")
    g.add_argument("--edit", action="append", default=[], metavar="FRAME:key=value,...",
                   help="per-frame override, e.g. '8:prompt=a cat,strength=0.5,keyframe=on'")
    g.add_argument("--edits", type=Path, help="JSON file {frame: {field: value}} of frame edits")
    g.add_argument("--regenerate", action="append", default=[], metavar="FRAME[:SEED]")
    g.add_argument("--select", action="append", default=[], metavar="FRAME:CANDIDATE")
    add_store_flags(g)
    g.add_argument("--max-batch", type=int, default=None,
                   help="most candidates denoised at once (default: all of a frame)")
    g.add_argument("--clip-model", default=None,
                   help="open_clip NAME:PRETRAINED or NAME:FILE, 'tiny' or 'toy' for ranking "
                        "(default: the toy model's own CLIP on toy, else ViT-B-32)")
    g.add_argument("--respace", action="store_true",
                   help="render, then re-render with frames moved so adjacent steps look equally "
                        "large (perceptually even pacing; unchanged frames are reused)")
    g.add_argument("--pose-a", type=Path, help="OpenPose JSON of image A (skips detection)")
    g.add_argument("--pose-b", type=Path, help="OpenPose JSON of image B (skips detection)")
    e = p.add_argument_group("export")
    e.add_argument("--fps", type=float, default=Export.fps)
    e.add_argument("--pingpong", action="store_true")
    e.add_argument("--loop", type=int, default=0)
    e.add_argument("--hold-first", type=int, default=0)
    e.add_argument("--hold-last", type=int, default=0)
    p.set_defaults(func=run_render)


def parse_edit(text: str) -> tuple:
    """'8:prompt=a cat, sitting,strength=0.5' -> (8, FrameEdit(prompt='a cat, sitting', strength=0.5))."""
    head, sep, body = text.partition(":")
    if not sep or not head.strip().isdigit():
        raise ValueError(f"--edit {text!r}: expected FRAME:key=value,... e.g. 8:prompt=a cat")
    fields: dict = {}
    for part in _EDIT_SPLIT.split(body):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or key not in _EDIT_KEYS:
            raise ValueError(f"--edit {text!r}: unknown field {key!r}; known: {_EDIT_KEYS}")
        fields[key] = _edit_value(key, value)
    return int(head), FrameEdit(**fields)


def _edit_value(key: str, value: str):
    if key in ("strength", "noise"):
        return float(value)
    if key in ("seed", "candidate"):
        return int(value)
    if key == "keyframe":
        return value.strip().lower() in ("1", "true", "yes", "on")
    if key == "pose":
        return json.loads(Path(value).read_text())
    return value


def collect_edits(args: argparse.Namespace) -> dict:
    """Edits from --edits FILE, then --edit, --regenerate and --select, in that order."""
    from interp.edits import regenerate, select
    from interp.edits import edits_from_dict
    edits = edits_from_dict(json.loads(args.edits.read_text())) if args.edits else {}
    for text in args.edit:
        frame, edit = parse_edit(text)
        edits[frame] = edit
    for text in args.regenerate:
        frame, _, seed = text.partition(":")
        edits = regenerate(edits, int(frame), int(seed) if seed else None)
    for text in args.select:
        frame, _, cand = text.partition(":")
        if not cand:
            raise ValueError(f"--select {text!r}: expected FRAME:CANDIDATE")
        edits = select(edits, int(frame), int(cand))
    return edits


def run_render(args: argparse.Namespace) -> int:
    from interp.images import load_image
    from interp.models.startup import resolve_model
    from interp.video import export_all, write_frames_dir

    settings = settings_from_args(args, resolve_model(args.model)[0])
    export = Export(fps=args.fps, pingpong=args.pingpong, loop=args.loop,
                    hold_first=args.hold_first, hold_last=args.hold_last)
    edits = collect_edits(args)
    image_a, image_b = load_image(args.image_a), load_image(args.image_b)
    poses = _load_poses(args)
    engine, note = engine_from_args(args, settings, args.max_batch)
    bundle = engine.bundle
    report = None
    with _Progress() as progress:
        if args.respace:
            from interp.pacing import respace_render
            result, report = respace_render(engine, image_a, image_b, settings, edits,
                                            on_event=progress, **poses)
        else:
            result = engine.render(image_a, image_b, settings, edits, on_event=progress, **poses)
    out: Path = args.out
    paths = export_all(result.images, out, export, formats=("mp4", "gif", "zip"))
    paths["frames"] = write_frames_dir(result.images, out / "frames")[0].parent
    summary = result.summary()
    summary.update(model={"name": bundle.name, "identity": bundle.identity,
                          "device": str(bundle.device), "dtype": str(bundle.dtype)},
                   export={k: str(v) for k, v in paths.items()}, note=note)
    if report is not None:
        from interp.eval.report import json_safe
        from interp.pacing import format_report
        summary["respace"] = json_safe(report)
        sys.stdout.write(format_report(report) + "\n")
    write_json(out / "summary.json", summary)
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return 0


def _load_poses(args: argparse.Namespace) -> dict:
    if not (args.pose_a or args.pose_b):
        return {}
    from interp.pose.keypoints import Pose
    return {name: Pose.from_json(path.read_text()) if path else None
            for name, path in (("pose_a", args.pose_a), ("pose_b", args.pose_b))}


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
