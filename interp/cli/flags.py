"""Flags shared by the subcommands: one per Settings field (field `noise_min` is `--noise-min`), the
model flags, and small helpers. Subcommands import this module, never the dispatcher.

A few short aliases exist (`--steps`, `--negative`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
from enum import Enum
from pathlib import Path
from typing import Any, Optional

from interp.forms import OPTIONAL_SIZE, OPTIONAL_TEXT
from interp.models.startup import add_loader_flags
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


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", default=None,
                       help="sd15 | sd21 | toy | tiny | random-sd15 | random-sd21 (real architectures, random "
                            "weights) | a diffusers repo id | a local directory or single-file checkpoint "
                            "(default: the best available)")
    group.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best)")
    group.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"])
    add_loader_flags(group)


def engine_from_args(args: argparse.Namespace, settings: Settings,
                     max_batch: Optional[int] = None) -> tuple:
    """(Interpolator, notes) from the model, store and CLIP flags (startup.build_engine)."""
    from interp.models.startup import build_engine, loader_options
    engine, notes = build_engine(args.model, device=args.device, dtype=args.dtype,
                                 clip=args.clip_model, store=args.store,
                                 store_max_gb=args.store_max_gb, need_controlnet=settings.pose,
                                 max_batch=max_batch, **loader_options(args))
    for note in notes:
        log.warning(note)
    return engine, notes


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def check_outputs(out: Optional[Path], args: argparse.Namespace) -> None:
    """Before any model work: --out is (or can become) a writable folder, --store likewise unless
    'none', and --store-max-gb is a size >= 0. OSError/ValueError name the path and the cause."""
    from interp.video import output_dir
    if out is not None:
        output_dir(out)
    gb = getattr(args, "store_max_gb", None)
    if gb is not None and not (math.isfinite(gb) and gb >= 0):
        raise ValueError(f"--store-max-gb {gb!r} is not allowed: give a size in GB >= 0 "
                         "(0 = no limit)")
    store = getattr(args, "store", None)
    if store is not None and str(store).lower() != "none":
        output_dir(store)
