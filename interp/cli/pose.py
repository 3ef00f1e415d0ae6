"""`python -m interp pose`: detect a pose as OpenPose JSON, or draw a pose file as a skeleton."""
from __future__ import annotations

import argparse
import errno
import json
import sys
from pathlib import Path


def add_pose_parser(sub) -> None:
    p = sub.add_parser("pose", help="detect a pose (OpenPose JSON) or draw one (--render)")
    p.add_argument("image", nargs="?", help="image to detect a pose in")
    p.add_argument("--json", action="store_true", help="print the detected pose as JSON")
    p.add_argument("--render", type=Path, metavar="FILE.json", help="draw this pose file")
    p.add_argument("--out", type=Path, help="output PNG for --render (or JSON for detection)")
    p.add_argument("--size", type=int, default=512, help="long side the image is resized to")
    p.add_argument("--all-people", action="store_true", help="keep everyone, left to right")
    p.set_defaults(func=run_pose)


def run_pose(args: argparse.Namespace) -> int:
    from interp.cli.inputs import read_json
    from interp.pose.keypoints import Pose
    from interp.pose.draw import render_pose
    if args.render is not None:
        if args.out is None:
            raise ValueError("--render needs --out skeleton.png")
        _check_out(args.out, (".png", ".jpg", ".jpeg", ".webp", ".bmp"))
        pose = Pose.from_json(read_json(args.render, "pose file"))
        render_pose(pose, pose.canvas_width, pose.canvas_height).save(args.out)
        return 0
    if not args.image:
        raise ValueError("give an IMAGE to detect a pose in, or --render FILE.json --out X.png")
    if args.out is not None:
        _check_out(args.out, (".json",))
    _check_size(args.size)
    from interp.images import fit_image, load_image, target_size
    from interp.pose.detect import detect_pose
    image = load_image(args.image)
    image = fit_image(image, target_size(*image.size, args.size))
    text = json.dumps(detect_pose(image, args.all_people).to_json(), indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n")
    if args.json or args.out is None:
        sys.stdout.write(text + "\n")
    return 0


def _check_out(out: Path, suffixes: tuple) -> None:
    """--out names a file with one of `suffixes` in a writable folder (checked before any work)."""
    from interp.video import output_dir
    if out.suffix.lower() not in suffixes:
        raise ValueError(f"--out {out}: give a file name ending in {' or '.join(suffixes)}")
    if out.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder: give a file name", str(out))
    output_dir(out.parent)


def _check_size(size: int) -> None:
    from interp import limits
    bound = limits.current().size
    if not 64 <= size <= bound:
        raise ValueError(f"--size {size} is not allowed: expected 64 to {bound} (this server's "
                         f"limit, set by {limits.env_name('size')})")
