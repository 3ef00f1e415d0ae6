"""`python -m interp pose`: detect a pose as OpenPose JSON, or draw a pose file as a skeleton."""
from __future__ import annotations

import argparse
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
    from interp.pose.keypoints import Pose
    from interp.pose.draw import render_pose
    if args.render is not None:
        if args.out is None:
            raise ValueError("--render needs --out skeleton.png")
        pose = Pose.from_json(args.render.read_text())
        render_pose(pose, pose.canvas_width, pose.canvas_height).save(args.out)
        return 0
    if not args.image:
        raise ValueError("give an IMAGE to detect a pose in, or --render FILE.json --out X.png")
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
