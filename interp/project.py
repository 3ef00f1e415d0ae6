"""A whole project as one JSON file: the keyframes (PNG, base64, with content hashes) with their
prompts and poses, the segments, Settings, frame edits, seeds and export knobs. Loading validates
everything and names the bad field. Version 1 files (two images) load as two-keyframe timelines.

The images are embedded losslessly, so a loaded project hashes to the same frame keys and reuses
every cached frame (architecture: "Load project ... reuses cached frames").
"""
from __future__ import annotations

import base64
import binascii
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from PIL import Image

from interp import limits
from interp.errors import InputError
from interp.hashing import content_hash
from interp.images import load_image
from interp.pose.keypoints import Pose
from interp.settings import Export, FrameEdit, Settings
from interp.timeline import Keyframe, Segment, Timeline, layout, two_image

FORMAT = "interp-project"
VERSION = 2                      # 2: timelines of keyframes; 1: two images (still read)
MAX_MODEL_CHARS = 500            # the model identity is a few ids and hashes

ProjectSource = Union[str, Path, bytes, Mapping]


@dataclass(frozen=True)
class Project:
    """Everything needed to re-render a sequence; `model` and `seeds` are informational."""
    timeline: Timeline
    settings: Settings = field(default_factory=Settings)
    edits: dict = field(default_factory=dict)          # {global frame: FrameEdit}
    export: Export = field(default_factory=Export)
    model: Optional[str] = None                        # bundle identity it was made with
    seeds: dict = field(default_factory=dict)          # {frame: [candidate seeds]} of the last render

    def __post_init__(self) -> None:
        if not isinstance(self.timeline, Timeline):
            raise TypeError(f"timeline must be a Timeline, got {type(self.timeline).__name__}")
        _check_edits(self.edits, layout(self.timeline, self.settings, self.export.fps))

    def to_json(self) -> dict:
        """The JSON document (images as base64 PNG with their content hashes)."""
        return {
            "format": FORMAT, "version": VERSION, "model": self.model,
            "keyframes": [_keyframe_entry(k) for k in self.timeline.keyframes],
            "segments": [s.to_dict() for s in self.timeline.segments],
            "loop": self.timeline.loop,
            "settings": self.settings.to_dict(),
            "edits": {str(i): e.to_dict() for i, e in sorted(self.edits.items())},
            "seeds": {str(i): list(s) for i, s in sorted(self.seeds.items())},
            "export": self.export.to_dict(),
        }


def save_project(project: Project, path: Union[str, Path]) -> Path:
    """Write the project JSON to path (parents created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(project.to_json(), indent=1) + "\n", encoding="utf-8")
    return path


def load_project(source: ProjectSource) -> Project:
    """A Project from a file path, JSON bytes/text or a parsed dict; InputError names the problem."""
    try:
        return _load(_read(source))
    except RecursionError:
        raise InputError("the project file is nested too deeply to be an interp project: "
                         "export it again from the studio") from None


def _load(data: dict) -> Project:
    if data.get("format") != FORMAT:
        raise InputError(f"this is not an interp project file (format={data.get('format')!r}; "
                         f"expected {FORMAT!r})")
    if data.get("version") not in (1, VERSION):
        raise InputError(f"project version {data.get('version')!r} is not supported "
                         f"(this interp reads versions 1 and {VERSION})")
    settings = _parse("settings", lambda: Settings.from_dict(_section(data, "settings", dict)))
    export = _parse("export", lambda: Export.from_dict(_old_export(_section(data, "export", dict, {}))))
    timeline = _timeline_v1(data, settings) if data["version"] == 1 else _timeline(data)
    edits = _parse("edits", lambda: _edits(_section(data, "edits", dict, {})))
    _parse("edits", lambda: _check_edits(edits, layout(timeline, settings, export.fps)))
    model = data.get("model")
    if model is not None and not (isinstance(model, str) and len(model) <= MAX_MODEL_CHARS):
        raise InputError(f"project field 'model' must be a string of at most {MAX_MODEL_CHARS} "
                         f"characters or null, got {type(model).__name__}")
    seeds = _parse("seeds", lambda: _seeds(_section(data, "seeds", dict, {})))
    return Project(timeline, settings, edits, export, model, seeds)


def _old_export(raw: dict) -> dict:
    """Version 1 called the GIF loop count "loop" (now gif_loop; loop closes a timeline)."""
    return {("gif_loop" if k == "loop" else k): v for k, v in raw.items()}


def _timeline_v1(data: dict, settings: Settings) -> Timeline:
    """A version 1 project's two images and poses as a two-keyframe timeline."""
    inputs, poses = _section(data, "inputs", dict), _section(data, "poses", dict, {})
    return two_image(_image(inputs.get("a"), "inputs.a"), _image(inputs.get("b"), "inputs.b"),
                     settings, _pose(poses.get("a"), "poses.a"), _pose(poses.get("b"), "poses.b"))


def _timeline(data: dict) -> Timeline:
    raw = _section(data, "keyframes", list)
    bound = limits.current().keyframes
    if not 2 <= len(raw) <= bound:
        raise InputError(f"project field 'keyframes' has {len(raw)} entries: expected 2 to {bound} "
                         f"(this server's limit, set by {limits.env_name('keyframes')})")
    keyframes = [_keyframe(entry, f"keyframes[{k}]") for k, entry in enumerate(raw)]
    segments = _parse("segments", lambda: [Segment.from_dict(s) for s in
                                           _section(data, "segments", list, [])])
    loop = data.get("loop", False)
    if not isinstance(loop, bool):
        raise InputError(f"project field 'loop' must be true or false, got {loop!r}")
    return _parse("segments", lambda: Timeline(tuple(keyframes), tuple(segments), loop))


def _keyframe_entry(keyframe: Keyframe) -> dict:
    return {"image": _image_entry(keyframe.image), "prompt": keyframe.prompt,
            "negative_prompt": keyframe.negative_prompt,
            "pose": keyframe.pose.to_json() if keyframe.pose else None}


def _keyframe(entry: Any, where: str) -> Keyframe:
    if not isinstance(entry, dict):
        raise InputError(f"{where} must be an object with an image, prompt, negative_prompt, pose")
    unknown = sorted(set(entry) - {"image", "prompt", "negative_prompt", "pose"})
    if unknown:
        raise InputError(f"{where}: unknown field(s) {unknown}")
    texts = {name: entry.get(name) for name in ("prompt", "negative_prompt")}
    for name, value in texts.items():
        if value is not None and not (isinstance(value, str)
                                      and len(value) <= limits.current().prompt_chars):
            raise InputError(f"{where}.{name} must be text (at most "
                             f"{limits.current().prompt_chars} characters) or null")
    return Keyframe(_image(entry.get("image"), f"{where}.image"), **texts,
                    pose=_pose(entry.get("pose"), f"{where}.pose"))


# -- pieces ------------------------------------------------------------------------------------

def _read(source: ProjectSource) -> dict:
    if isinstance(source, Mapping):
        return dict(source)
    lim = limits.current()
    too_big = (f"is over this server's limit of {lim.upload_mb} MB (set by "
               f"{limits.env_name('upload_mb')}): not a project")
    if isinstance(source, Path) or (isinstance(source, str)
                                    and not source.lstrip().startswith(("{", "["))):
        path = Path(source)
        if not path.is_file():
            raise InputError(f"project file '{path}' does not exist")
        if path.stat().st_size > lim.upload_bytes:
            raise InputError(f"project file '{path}' {too_big}")
        source = path.read_bytes()
    if len(source) > lim.upload_bytes:
        raise InputError(f"the project data {too_big}")
    if isinstance(source, (bytes, bytearray)) and not source.strip():
        raise InputError("the project file is empty")
    try:
        data = json.loads(source)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"the project file is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"a project file holds a JSON object, got {type(data).__name__}")
    return data


def _section(data: dict, name: str, kind: type, default: Any = None) -> Any:
    value = data.get(name, default)
    if value is None and default is None:
        raise InputError(f"the project has no {name!r} section")
    if not isinstance(value, kind):
        raise InputError(f"project field {name!r} must be a JSON {kind.__name__}, "
                         f"got {type(value).__name__}")
    return value


def _parse(name: str, build):
    try:
        return build()
    except InputError:
        raise
    except (ValueError, TypeError) as exc:
        raise InputError(f"project field {name!r}: {exc}") from None


def _image_entry(image: Image.Image) -> dict:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return {"png": base64.b64encode(buffer.getvalue()).decode("ascii"),
            "hash": content_hash(image), "size": list(image.size)}


def _image(entry: Any, where: str) -> Image.Image:
    """Decode an image entry and check it against its recorded content hash."""
    if not isinstance(entry, dict) or not isinstance(entry.get("png"), str):
        raise InputError(f"{where} must hold the image as base64 PNG ('png') and its 'hash'")
    try:
        data = base64.b64decode(entry["png"], validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{where}.png is not valid base64") from None
    try:
        image = load_image(data)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    if entry.get("hash") != content_hash(image):
        raise InputError(f"{where}.hash does not match the embedded image: the project file was "
                         "edited or damaged")
    return image


def _edits(raw: dict) -> dict:
    bound = limits.current().edits
    if len(raw) > bound:
        raise ValueError(f"{len(raw)} frame edits are over this server's limit of {bound} (set by "
                         f"{limits.env_name('edits')})")
    out = {}
    for key, value in raw.items():
        if not (isinstance(key, str) and key.isdigit()):
            raise ValueError(f"frame {key!r} is not a frame number")
        if not isinstance(value, dict):
            raise ValueError(f"frame {key}: expected an object of FrameEdit fields")
        out[int(key)] = FrameEdit.from_dict(value)
    return out


def _check_edits(edits: Mapping, where) -> None:
    """Every edit is a FrameEdit of an in-between frame of the timeline's Layout `where`."""
    for i, edit in edits.items():
        if not isinstance(edit, FrameEdit):
            raise TypeError(f"edits[{i}] must be a FrameEdit, got {type(edit).__name__}")
        where.locate(i)


def _pose(value: Any, where: str) -> Optional[Pose]:
    if value is None:
        return None
    try:
        return Pose.from_json(value)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None


def _seeds(raw: dict) -> dict:
    lim, out = limits.current(), {}
    if len(raw) > lim.frames * lim.keyframes:
        raise ValueError(f"seeds has {len(raw)} frames, more than this server's "
                         f"{lim.frames * lim.keyframes}")
    for key, value in raw.items():
        if not (isinstance(key, str) and key.isdigit()) or not isinstance(value, list) or len(
                value) > max(lim.candidates, limits.PAPER_CANDIDATES) or not all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value):
            raise ValueError(f"seeds[{key[:20]!r}] must map a frame number to a list of seeds "
                             ">= 0, one per candidate")
        out[int(key)] = tuple(value)
    return out
