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
from interp.settings import PRESETS, Settings, preset

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


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per Settings field; default None means "take the preset's value"."""
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
        elif f.name in OPTIONAL_TEXT:
            kwargs.update(type=str)
        elif f.name in OPTIONAL_SIZE:
            kwargs.update(type=int, metavar="PIXELS")
        else:
            kwargs.update(type=type(default))
        group.add_argument(_flag(f.name), *ALIASES.get(f.name, []), **kwargs)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="balanced",
                        help="speed/quality preset that fills every unset flag")


def settings_from_args(args: argparse.Namespace, model: Optional[str] = None) -> Settings:
    """The preset, then what `model` needs (startup.model_settings), then every given flag."""
    from interp.models.startup import model_settings
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)
             if getattr(args, f.name, None) is not None}
    return preset(args.preset, **{**model_settings(model), **given})


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
    """(Interpolator, note) from the model and store flags: the model (offline rule; note says when
    the built-in one stands in), the frame store, and the CLIP scorer `settings` rank with."""
    from interp.render import Interpolator
    from interp.models.startup import load_scorer_for, load_store, loader_options, resolve_and_load
    bundle, note = resolve_and_load(args.model, args.device, args.dtype, need_controlnet=settings.pose,
                                    **loader_options(args))
    if note:
        log.warning(note)
    scorer = load_scorer_for(settings, args.clip_model, bundle)
    return Interpolator(bundle, load_store(args.store, args.store_max_gb), scorer,
                        max_batch=max_batch), note


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
