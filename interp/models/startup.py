"""Choosing and loading what a run needs: the model (with the offline fallback), store and CLIP
scorer (build_engine), the order its Settings come from (settings_for), and the flags that choose
them (add_model_flags, add_store_flags, engine_from_args). The CLI and the app both call these,
so they follow the same rules: an explicitly requested model must load or fail
with a clear error; with none requested, the default preset is used when its weights are available
locally, else the built-in model with a note saying so.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from interp.errors import ModelUnavailable

log = logging.getLogger(__name__)

DEFAULT_PRESET = "sd15"
BUILTIN_FALLBACK = ("toy", "tiny")
DEFAULT_STORE_GB = 10.0
# The paper's example ranking prompts (without its "2D" / "3D render": not every morph is 2D art).
RANKING = {"rank_positive": "high quality, detailed", "rank_negative": "blurry, distorted"}
NO_RANKING_NOTE = ("no CLIP model could be loaded ({cause}), so nothing ranks candidates: each frame "
                   "makes one (give --candidates N, or set Candidates, to keep N for a manual pick)")


def default_device() -> str:
    """cuda when available, then mps, else cpu."""
    import torch
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_model(requested: Optional[str], device: Optional[str] = None) -> tuple:
    """(model name to load, note for the user or None). With none requested: the default preset when
    its weights are cached and a GPU is there to run it; else the built-in model, saying why (an SD
    render on a CPU takes hours)."""
    from interp.models.load import weights_available
    if requested:
        return requested, None
    gpu = (device or default_device()) != "cpu"
    if gpu and weights_available(DEFAULT_PRESET):
        return DEFAULT_PRESET, None
    why = ("there is no GPU here (an SD render on a CPU takes hours; --model sd15 runs it anyway)"
           if weights_available(DEFAULT_PRESET) else
           f"{DEFAULT_PRESET} weights are not available offline (download them with "
           "`huggingface-cli download stable-diffusion-v1-5/stable-diffusion-v1-5` and pass "
           "--model sd15 or a local path)")
    for name in BUILTIN_FALLBACK:
        if weights_available(name):
            return name, f"interp runs on the built-in '{name}' model: {why}."
    raise ModelUnavailable("no model is available: not even the built-in one")


def model_settings(name: Optional[str]) -> dict:
    """Settings a model needs whatever the preset; explicit flags and knobs still win. The built-in
    models: their size, guidance and ranking prompts; real models: the paper's ranking prompts (so
    the candidates a preset makes are ranked)."""
    if name == "toy":
        from interp.toy import RECOMMENDED
        return dict(RECOMMENDED)
    if name is not None and name.startswith("tiny"):
        return {"size": 64}   # random test weights: 64 px is all they are for
    if name is not None and name.startswith("random-"):
        return {}             # random full-size weights: nothing to rank
    return dict(RANKING)


def settings_for(preset_name: str, model: Optional[str], given: Optional[dict] = None,
                 scorer=True) -> tuple:
    """(Settings, note): the preset, then what `model` needs (both cut to this server's limits),
    then the values given (past a limit: an error naming it); with no CLIP scorer (scorer=None) a
    preset makes one candidate per frame unless candidates were given (note says so)."""
    from interp.forms import bounded_preset
    given = dict(given or {})
    note = None
    if scorer is None and "candidates" not in given:
        given["candidates"] = 1
        note = NO_RANKING_NOTE.format(cause="none is loaded")
    base = bounded_preset(preset_name, **model_settings(model))   # the preset cut to the limits
    return base.replace(**given), note                          # given values: checked, not cut


def resolve_and_load(requested: Optional[str], device: Optional[str] = None,
                     dtype: Optional[str] = None, need_controlnet: bool = False, **savers) -> tuple:
    """Load the bundle for `requested` (or the best available) -> (bundle, note)."""
    import torch
    from interp.models.load import load_bundle
    name, note = resolve_model(requested, device)
    torch_dtype = getattr(torch, dtype) if dtype else None
    bundle = load_bundle(name, device=device or default_device(), dtype=torch_dtype, **savers)
    if need_controlnet and bundle.controlnet is None:
        raise ModelUnavailable(f"pose guidance needs an OpenPose ControlNet, and none could be "
                               f"loaded for model {name!r}; turn pose off (--pose off)")
    return bundle, note


def add_model_flags(parser, model_default: Optional[str] = None) -> None:
    """The model flags of every command that loads one (the CLI's and the app's): --model,
    --device, --dtype, the loader flags and --clip-model."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", default=model_default,
                       help="sd15 | sd21 | sdxl | toy | tiny | random-sd15 | random-sd21 | random-sdxl "
                            "(real architectures, random weights) | a diffusers repo id | a local "
                            "directory or single-file checkpoint (default: the best available)")
    group.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best)")
    group.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"])
    add_loader_flags(group)
    group.add_argument("--clip-model", default=None,
                       help="open_clip NAME:PRETRAINED or NAME:FILE, 'tiny' or 'toy' for ranking "
                            "(default: the toy model's own CLIP on toy, else ViT-L-14:openai)")


def engine_from_args(args, need_controlnet: bool = False,
                     max_batch: Optional[int] = None) -> tuple:
    """(Interpolator, notes) from the flags of add_model_flags and add_store_flags (build_engine);
    each note is logged as a warning."""
    engine, notes = build_engine(args.model, device=args.device, dtype=args.dtype,
                                 clip=args.clip_model, store=args.store,
                                 store_max_gb=args.store_max_gb, need_controlnet=need_controlnet,
                                 max_batch=max_batch, **loader_options(args))
    for note in notes:
        log.warning("%s", note)
    return engine, notes


def check_outputs(out: Optional[Path], args) -> None:
    """Before any model work: `out` is (or can become) a writable folder, --store likewise unless
    'none', and --store-max-gb is a size >= 0. OSError/ValueError name the path and the cause."""
    import math
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
    from interp.rank import DEFAULT_CLIP
    name, _, pretrained = (spec or ":".join(DEFAULT_CLIP)).partition(":")
    return name, pretrained or None


def load_scorer(spec: Optional[str], bundle):
    """The CLIP scorer for `spec` ('NAME:PRETRAINED' or 'NAME:/path/weights', 'tiny', 'toy'); with no
    spec: the toy model's own CLIP on toy, a tiny random one on tiny-* and random-* models, else the
    paper's ViT-L/14 (from the local cache offline, like the diffusion model). ModelUnavailable."""
    from interp.rank import build_tiny_clip, load_clip_scorer
    if spec == "toy" or (spec is None and bundle.name == "toy"):
        from interp.toy.nets import load_toy_clip
        return load_toy_clip(device=bundle.device, counter=bundle.counter)
    if spec is None and bundle.name.startswith(("tiny", "random-")):
        spec = "tiny"
    name, pretrained = parse_clip_spec(spec)
    if name == "tiny":
        return build_tiny_clip(device=bundle.device, counter=bundle.counter)
    return load_clip_scorer(name, pretrained, device=bundle.device, counter=bundle.counter)


def build_engine(model: Optional[str], *, device: Optional[str] = None, dtype: Optional[str] = None,
                 clip: Optional[str] = None, store: Optional[Path] = None,
                 store_max_gb: float = DEFAULT_STORE_GB, need_controlnet: bool = False,
                 max_batch: Optional[int] = None, **loader) -> tuple:
    """(Interpolator, notes): the model (offline rule), the frame store and the CLIP scorer, loaded
    once. notes: the built-in model standing in, or ranking being off because no CLIP could load."""
    from interp.render import Interpolator
    bundle, note = resolve_and_load(model, device, dtype, need_controlnet=need_controlnet, **loader)
    notes = [note] if note else []
    try:
        scorer = load_scorer(clip, bundle)
    except ModelUnavailable as exc:
        log.warning("CLIP ranking is unavailable: %s", exc)
        scorer = None
        notes.append(NO_RANKING_NOTE.format(cause=exc))
    return Interpolator(bundle, load_store(store, store_max_gb), scorer, max_batch=max_batch), notes
