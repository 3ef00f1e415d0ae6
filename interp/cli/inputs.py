"""What `render` reads besides its flags: frame edits (--edit, --edits, --regenerate, --select), pose
files, and timeline files (--timeline): keyframes with prompts and poses, segments, loop."""
from __future__ import annotations

import argparse
import errno
import json
import re
from pathlib import Path

from interp.settings import FrameEdit

_EDIT_KEYS = [f for f in FrameEdit.__dataclass_fields__]
_EDIT_SPLIT = re.compile(r",(?=\s*(?:%s)=)" % "|".join(_EDIT_KEYS))
TIMELINE_FIELDS = {"keyframes", "segments", "loop"}
KEYFRAME_FIELDS = {"image", "prompt", "negative_prompt", "pose"}


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
    try:
        if key in ("strength", "noise"):
            return float(value)
        if key in ("seed", "candidate"):
            return int(value)
    except ValueError:
        raise ValueError(f"{key}={value!r} is not a number") from None
    if key == "keyframe":
        return value.strip().lower() in ("1", "true", "yes", "on")
    if key == "pose":
        return read_json(Path(value.strip()), "pose file")
    return value


def read_json(path: Path, what: str):
    """A JSON file's content; FileNotFoundError or ValueError naming the file and the problem."""
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, f"{what} not found" if not path.exists()
                                else f"{what} is not a file", str(path))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{path}: {what} is not valid JSON ({str(exc)[:100]})") from None


def collect_edits(args: argparse.Namespace) -> dict:
    """Edits from --edits FILE, then --edit, --regenerate and --select, in that order."""
    from interp.edits import regenerate, select
    edits = _edits_file(args.edits) if args.edits else {}
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


def _edits_file(path: Path) -> dict:
    from interp import limits
    from interp.edits import edits_from_dict
    data = read_json(path, "edits file")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: an edits file holds a JSON object such as "
                         f'{{"8": {{"prompt": "a tiger"}}}}, not a {type(data).__name__}')
    bound = limits.current().edits
    if len(data) > bound:
        raise ValueError(f"{path}: {len(data)} frame edits are over this server's limit of "
                         f"{bound} (set by {limits.env_name('edits')})")
    bad = [k for k, v in data.items() if not (k.isdigit() and isinstance(v, dict))]
    if bad:
        raise ValueError(f"{path}: entry {bad[0][:20]!r} must map a frame number to an object "
                         "of FrameEdit fields")
    return edits_from_dict(data)


def read_timeline(path: Path, images: list, loop: bool, frames: list):
    """A Timeline from --timeline FILE (image paths relative to it) or from the images given,
    with one Segment per frame count in --frames (one number: every segment)."""
    from interp.images import load_image
    from interp.timeline import Keyframe, Segment, Timeline
    if path is not None:
        if images:
            raise ValueError("give the images in the timeline file or on the command line, not both")
        return _timeline_file(path)
    if len(images) < 2:
        raise ValueError("render needs at least two images (or --timeline FILE)")
    count = len(images) - 1 + bool(loop)
    if len(frames) not in (1, count):
        raise ValueError(f"--frames {','.join(map(str, frames))}: give one count for every segment "
                         f"or {count} (one per segment)")
    segments = tuple(Segment(frames=n) for n in (frames * count if len(frames) == 1 else frames))
    return Timeline(tuple(Keyframe(load_image(p)) for p in images), segments, loop)


def _timeline_file(path: Path):
    from interp.images import load_image
    from interp.timeline import Keyframe, Segment, Timeline
    data = read_json(path, "timeline file")
    if not isinstance(data, dict) or not isinstance(data.get("keyframes"), list):
        raise ValueError(f"{path}: a timeline file holds an object with a list of \"keyframes\"")
    unknown = sorted(set(data) - TIMELINE_FIELDS)
    if unknown:
        raise ValueError(f"{path}: unknown field(s) {unknown}; known: {sorted(TIMELINE_FIELDS)}")
    keys = []
    for k, entry in enumerate(data["keyframes"]):
        if not isinstance(entry, dict) or "image" not in entry or set(entry) - KEYFRAME_FIELDS:
            raise ValueError(f"{path}: keyframes[{k}] must be an object with an \"image\" path and "
                             f"optional {sorted(KEYFRAME_FIELDS - {'image'})}")
        keys.append(Keyframe(load_image(path.parent / str(entry["image"])), entry.get("prompt"),
                             entry.get("negative_prompt"), _pose(entry.get("pose"), path.parent)))
    segments = [Segment.from_dict(s) for s in data.get("segments", [])]
    return Timeline(tuple(keys), tuple(segments), bool(data.get("loop", False)))


def _pose(value, folder: Path):
    """A keyframe's pose: an OpenPose JSON object, a file name (relative to the timeline), or None."""
    from interp.pose.keypoints import Pose
    if value is None:
        return None
    return Pose.from_json(value if isinstance(value, dict) else read_json(folder / value, "pose file"))


def with_poses(timeline, pose_a: Path, pose_b: Path):
    """--pose-a / --pose-b as the poses of a two-image timeline's keyframes."""
    import dataclasses
    from interp.pose.keypoints import Pose
    if not (pose_a or pose_b):
        return timeline
    if len(timeline.keyframes) != 2:
        raise ValueError("--pose-a/--pose-b are for two images; give each keyframe's pose in a "
                         "timeline file (--timeline)")
    keys = [dataclasses.replace(k, pose=Pose.from_json(read_json(path, "pose file")))
            if path else k for k, path in zip(timeline.keyframes, (pose_a, pose_b))]
    return timeline.replace(keyframes=tuple(keys))
