"""A whole project as one JSON file: both inputs (PNG, base64, with content hashes), Settings, frame
edits, seeds, poses and export knobs. Loading validates everything and names the bad field.

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
from interp.images import load_image
from interp.pose.keypoints import Pose
from interp.settings import Export, FrameEdit, Settings
from interp.hashing import content_hash

FORMAT = "interp-project"
VERSION = 1
MAX_MODEL_CHARS = 500            # the model identity is a few ids and hashes
_EXPORT_FIELDS = ("fps", "pingpong", "loop", "hold_first", "hold_last")

ProjectSource = Union[str, Path, bytes, Mapping]


@dataclass(frozen=True)
class Project:
    """Everything needed to re-render a sequence; `model` and `seeds` are informational."""
    image_a: Image.Image
    image_b: Image.Image
    settings: Settings = field(default_factory=Settings)
    edits: dict = field(default_factory=dict)          # {frame: FrameEdit}
    export: Export = field(default_factory=Export)
    pose_a: Optional[Pose] = None                      # None: detected when pose guidance is on
    pose_b: Optional[Pose] = None
    model: Optional[str] = None                        # bundle identity it was made with
    seeds: dict = field(default_factory=dict)          # {frame: [candidate seeds]} of the last render

    def __post_init__(self) -> None:
        for name in ("image_a", "image_b"):
            if not isinstance(getattr(self, name), Image.Image):
                raise TypeError(f"{name} must be a PIL image, got {type(getattr(self, name)).__name__}")
        _check_edits(self.edits, self.settings.frames)

    def to_json(self) -> dict:
        """The JSON document (images as base64 PNG with their content hashes)."""
        return {
            "format": FORMAT, "version": VERSION, "model": self.model,
            "inputs": {"a": _image_entry(self.image_a), "b": _image_entry(self.image_b)},
            "settings": self.settings.to_dict(),
            "edits": {str(i): e.to_dict() for i, e in sorted(self.edits.items())},
            "seeds": {str(i): list(s) for i, s in sorted(self.seeds.items())},
            "poses": {"a": self.pose_a.to_json() if self.pose_a else None,
                      "b": self.pose_b.to_json() if self.pose_b else None},
            "export": {name: getattr(self.export, name) for name in _EXPORT_FIELDS},
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
    if data.get("version") != VERSION:
        raise InputError(f"project version {data.get('version')!r} is not supported "
                         f"(this interp reads version {VERSION})")
    inputs = _section(data, "inputs", dict)
    settings = _parse("settings", lambda: Settings.from_dict(_section(data, "settings", dict)))
    edits = _parse("edits", lambda: _edits(_section(data, "edits", dict, {})))
    _parse("edits", lambda: _check_edits(edits, settings.frames))
    export = _parse("export", lambda: _export(_section(data, "export", dict, {})))
    poses = _section(data, "poses", dict, {})
    model = data.get("model")
    if model is not None and not (isinstance(model, str) and len(model) <= MAX_MODEL_CHARS):
        raise InputError(f"project field 'model' must be a string of at most {MAX_MODEL_CHARS} "
                         f"characters or null, got {type(model).__name__}")
    return Project(image_a=_image(inputs, "a"), image_b=_image(inputs, "b"), settings=settings,
                   edits=edits, export=export, pose_a=_pose(poses, "a"), pose_b=_pose(poses, "b"),
                   model=model, seeds=_parse("seeds", lambda: _seeds(_section(data, "seeds", dict,
                                                                                  {}))))


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


def _image(inputs: dict, which: str) -> Image.Image:
    """Decode inputs[which] and check it against its recorded content hash."""
    entry = inputs.get(which)
    where = f"inputs.{which}"
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


def _check_edits(edits: Mapping, frames: int) -> None:
    for i, edit in edits.items():
        if not isinstance(edit, FrameEdit):
            raise TypeError(f"edits[{i}] must be a FrameEdit, got {type(edit).__name__}")
        if not (isinstance(i, int) and 0 < i < frames - 1):
            raise ValueError(f"edit for frame {i} is out of range: in-between frames are "
                             f"1..{frames - 2}")
        if edit.pose is not None:
            Pose.from_json(edit.pose)


def _export(raw: dict) -> Export:
    unknown = sorted(set(raw) - set(_EXPORT_FIELDS))
    if unknown:
        raise ValueError(f"unknown export field(s) {unknown}; known: {list(_EXPORT_FIELDS)}")
    return Export(**raw)


def _pose(poses: dict, which: str) -> Optional[Pose]:
    value = poses.get(which)
    if value is None:
        return None
    try:
        return Pose.from_json(value)
    except InputError as exc:
        raise InputError(f"poses.{which}: {exc}") from None


def _seeds(raw: dict) -> dict:
    lim, out = limits.current(), {}
    if len(raw) > lim.frames:
        raise ValueError(f"seeds has {len(raw)} frames, more than this server's {lim.frames}")
    for key, value in raw.items():
        if not (isinstance(key, str) and key.isdigit()) or not isinstance(value, list) or len(
                value) > max(lim.candidates, limits.PAPER_CANDIDATES) or not all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value):
            raise ValueError(f"seeds[{key[:20]!r}] must map a frame number to a list of seeds "
                             ">= 0, one per candidate")
        out[int(key)] = tuple(value)
    return out
