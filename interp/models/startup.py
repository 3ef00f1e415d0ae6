"""Choosing and loading what a run needs: the model (with the offline fallback), store and scorer.

Shared by the CLI and the app so both follow the same rule: an explicitly requested model must
load or fail with a clear error; with none requested, the default preset is used when its weights
are available locally, else the built-in model with a note saying so.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from interp.errors import ModelUnavailable
from interp.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_PRESET = "sd15"
BUILTIN_FALLBACK = ("toy", "tiny")
DEFAULT_CLIP = "ViT-B-32:laion2b_s34b_b79k"
DEFAULT_STORE_GB = 10.0


def default_device() -> str:
    """cuda when available, then mps, else cpu."""
    import torch
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_model(requested: Optional[str]) -> tuple:
    """(model name to load, note for the user or None)."""
    from interp.models.load import weights_available
    if requested:
        return requested, None
    if weights_available(DEFAULT_PRESET):
        return DEFAULT_PRESET, None
    for name in BUILTIN_FALLBACK:
        if weights_available(name):
            return name, (f"{DEFAULT_PRESET} weights are not available offline, so interp runs on "
                          f"the built-in '{name}' model. For real images download a model "
                          f"(e.g. `huggingface-cli download stable-diffusion-v1-5/"
                          f"stable-diffusion-v1-5`) and pass --model sd15 or a local path.")
    raise ModelUnavailable("no model is available: not even the built-in one")


def model_settings(name: Optional[str]) -> dict:
    """Settings a model needs whatever the preset (the built-in models' size, guidance, ranking
    prompts); explicit flags and knobs still win. {} for real models."""
    if name == "toy":
        from interp.toy import RECOMMENDED
        return dict(RECOMMENDED)
    if name is not None and name.startswith("tiny"):
        return {"size": 64}   # random test weights: 64 px is all they are for
    return {}


def resolve_and_load(requested: Optional[str], device: Optional[str] = None,
                     dtype: Optional[str] = None, need_controlnet: bool = False, **savers) -> tuple:
    """Load the bundle for `requested` (or the best available) -> (bundle, note)."""
    import torch
    from interp.models.load import load_bundle
    name, note = resolve_model(requested)
    torch_dtype = getattr(torch, dtype) if dtype else None
    bundle = load_bundle(name, device=device or default_device(), dtype=torch_dtype, **savers)
    if need_controlnet and bundle.controlnet is None:
        raise ModelUnavailable(f"pose guidance needs an OpenPose ControlNet, and none could be "
                               f"loaded for model {name!r}; turn pose off (--pose off)")
    return bundle, note


def add_loader_flags(group) -> None:
    """The model-loading flags shared by the CLI commands and the app: single-file config directory,
    memory savers and speed options (load_bundle's keyword arguments of the same names)."""
    group.add_argument("--model-config", default=None, metavar="DIR",
                       help="config directory for a single-file checkpoint (--model FILE): a local diffusers "
                            "folder of the same architecture, or sd15 | sd21 | sdxl (built-in public configs)")
    group.add_argument("--attention-slicing", action="store_true")
    group.add_argument("--vae-tiling", action="store_true")
    group.add_argument("--vae-slicing", action="store_true", help="encode/decode a batch one image at a time")
    group.add_argument("--cpu-offload", action="store_true")
    group.add_argument("--channels-last", action="store_true", help="channels-last weights (faster on GPUs)")
    group.add_argument("--compile-unet", action="store_true", help="torch.compile the UNet (slow first call)")


def loader_options(args) -> dict:
    """load_bundle keyword arguments from the flags add_loader_flags added."""
    return {"config": args.model_config, "attention_slicing": args.attention_slicing,
            "vae_tiling": args.vae_tiling, "vae_slicing": args.vae_slicing, "cpu_offload": args.cpu_offload,
            "channels_last": args.channels_last, "compile_unet": args.compile_unet}


def add_store_flags(parser) -> None:
    """--store DIR|none and --store-max-gb, shared by the CLI commands and the app."""
    parser.add_argument("--store", type=Path, default=None,
                        help="frame cache directory (default: the user cache dir); 'none' = memory only")
    parser.add_argument("--store-max-gb", type=float, default=DEFAULT_STORE_GB,
                        help=f"keep the frame cache under this many GB, dropping the least recently "
                             f"used frames (default {DEFAULT_STORE_GB:g}; 0 = no limit)")


def load_store(directory: Optional[Path], max_gb: float = DEFAULT_STORE_GB):
    """The frame store: a directory (default: the user cache dir) kept under max_gb (0: no limit),
    or memory only for 'none'."""
    from interp.store import FrameStore, default_store_dir
    if max_gb < 0:
        raise ValueError(f"store_max_gb={max_gb!r} is not allowed: use a size >= 0 (0 = no limit)")
    if directory is not None and str(directory).lower() == "none":
        return FrameStore(None)
    return FrameStore(directory if directory is not None else default_store_dir(),
                      disk_bytes=int(max_gb * 1e9) if max_gb else None)


def parse_clip_spec(spec: Optional[str]) -> tuple:
    """'NAME:PRETRAINED_OR_FILE' -> (name, pretrained)."""
    name, _, pretrained = (spec or DEFAULT_CLIP).partition(":")
    return name, pretrained or None


def load_scorer_for(settings: Settings, spec: Optional[str], bundle):
    """A CLIP scorer when ranking is asked for, else None; unavailable -> warning and no ranking."""
    if not (settings.rank_positive or settings.rank_negative) or settings.candidates == 1:
        return None
    try:
        return load_scorer(spec, bundle)
    except ModelUnavailable as exc:
        log.warning("%s; frames will use the first candidate (no ranking)", exc)
        return None


def load_scorer(spec: Optional[str], bundle):
    """The CLIP scorer for `spec` ('NAME:PRETRAINED', 'tiny', 'toy'); with no spec the toy model's
    own CLIP for the toy model, else DEFAULT_CLIP. Raises ModelUnavailable."""
    from interp.rank import build_tiny_clip, load_clip_scorer
    if spec == "toy" or (spec is None and bundle.name == "toy"):
        from interp.toy.nets import load_toy_clip
        return load_toy_clip(device=bundle.device, counter=bundle.counter)
    name, pretrained = parse_clip_spec(spec)
    if name == "tiny":
        return build_tiny_clip(device=bundle.device, counter=bundle.counter)
    return load_clip_scorer(name, pretrained, device=bundle.device, counter=bundle.counter)
