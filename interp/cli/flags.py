"""Flags shared by the subcommands: one per Settings field (field `noise_min` is `--noise-min`) and
small helpers (the model and store flags are interp.models.startup's, shared with the app).
Subcommands import this module, never the dispatcher.

A few short aliases exist (`--steps`, `--negative`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from enum import Enum
from pathlib import Path
from typing import Any, Optional

from interp.forms import OPTIONAL_SIZE, OPTIONAL_TEXT
from interp.settings import PRESETS, Settings

log = logging.getLogger("interp")

ALIASES = {"num_inference_steps": ["--steps"], "negative_prompt": ["--negative"]}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected on/off, got {text!r}")


def _points(text: str) -> tuple:
    """'0.25:0.1,0.75:0.9' -> ((0.25, 0.1), (0.75, 0.9))."""
    try:
        return tuple(tuple(float(v) for v in p.split(":")) for p in text.split(",") if p)
    except ValueError:
        raise argparse.ArgumentTypeError(f"curve points must look like 0.25:0.1,0.75:0.9, "
                                         f"got {text!r}") from None


def _frame_list(text: str) -> list:
    """'9' or '9,17' (frames per segment) -> [9] or [9, 17]."""
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"frames must look like 17 or 9,17 (one count per "
                                         f"segment), got {text!r}") from None


def add_settings_flags(parser: argparse.ArgumentParser, frame_list: bool = False) -> None:
    """One flag per Settings field; default None means "take the preset's value". frame_list:
    --frames takes one count per segment (9,17)."""
    group = parser.add_argument_group("settings (defaults from --preset)")
    for f in dataclasses.fields(Settings):
        default = f.default
        kwargs: dict[str, Any] = {"default": None, "dest": f.name}
        if isinstance(default, Enum):
            kwargs.update(type=type(default), choices=list(type(default)),
                          metavar="{" + ",".join(e.value for e in type(default)) + "}")
        elif isinstance(default, bool):
            kwargs.update(type=_bool, metavar="on|off")
        elif f.name == "curve_points":
            kwargs.update(type=_points, metavar="X:Y,X:Y")
        elif f.name == "frames" and frame_list:
            kwargs.update(type=_frame_list, metavar="N[,N...]")
        elif f.name in OPTIONAL_TEXT:
            kwargs.update(type=str)
        elif f.name in OPTIONAL_SIZE:
            kwargs.update(type=int, metavar="PIXELS")
        else:
            kwargs.update(type=type(default))
        group.add_argument(_flag(f.name), *ALIASES.get(f.name, []), **kwargs)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="balanced",
                        help="speed/quality preset that fills every unset flag")


def given_settings(args: argparse.Namespace) -> dict:
    """The Settings fields given as flags."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)
            if getattr(args, f.name, None) is not None}


def settings_from_args(args: argparse.Namespace, model: Optional[str] = None,
                       scorer=True) -> Settings:
    """The preset, then what `model` needs, then every given flag (startup.settings_for); with no
    CLIP scorer (scorer=None) one candidate per frame unless --candidates is given."""
    from interp.models.startup import settings_for
    settings, note = settings_for(args.preset, model, given_settings(args), scorer)
    if note:
        log.warning(note)
    return settings


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
