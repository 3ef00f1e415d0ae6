"""Single-file checkpoints (.safetensors / .ckpt in the original LDM / SGM layout): load one through diffusers'
from_single_file, offline against a local config directory, and save a model in that layout.

Offline, from_single_file needs a diffusers directory of the same architecture for the configs (no weights):
any such folder, or interp's copies of the public configs (`sd15`, `sd21` = SD 2.1 768 v-prediction,
`sdxl`). A config directory without tokenizer vocabulary files would load a tokenizer that cannot encode
prompts, so the real CLIP tokenizer (built offline) is passed in instead.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from interp.errors import ModelUnavailable
from interp.models.fullsize import CONFIG_DIR
from interp.hashing import file_sha256
from interp.models.hub import hub_offline
from interp.models.original_layout import SDXL_TEXT_PREFIXES, to_original
from interp.models.tokenizer import OPEN_CLIP_PAD, build_tokenizer, pad_for, tokenizer_problem
from interp.scheduler import ddim_config

log = logging.getLogger(__name__)

SUFFIXES = (".safetensors", ".ckpt")
BUILTIN_CONFIGS = ("sd15", "sd21", "sdxl")  # folders of interp/models/configs usable as config directories
TOKENIZERS = (("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2"))


def config_directory(config: str | Path | None) -> Path | None:
    """The diffusers config directory for single-file checkpoints: a path, or a built-in name."""
    if config is None:
        return None
    if str(config) in BUILTIN_CONFIGS:
        return CONFIG_DIR / str(config)
    path = Path(config).expanduser()
    if not (path / "model_index.json").is_file():
        raise ModelUnavailable(
            f"model_config={str(config)!r} is not a diffusers config directory (no model_index.json there); pass "
            f"the folder of a diffusers model of the same architecture (configs suffice, no weights) or one of "
            f"{', '.join(BUILTIN_CONFIGS)} (interp's copies of those models' public configs)")
    return path


def is_sdxl(file: Path, config_dir: Path | None) -> bool:
    """Whether a checkpoint is SDXL: by its config directory's pipeline class, else by its keys."""
    if config_dir is not None:
        return "XL" in json.loads((config_dir / "model_index.json").read_text()).get("_class_name", "")
    if file.suffix != ".safetensors":
        return False
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(file), framework="pt") as fh:
            return any(k.startswith(SDXL_TEXT_PREFIXES[1]) for k in fh.keys())
    except SafetensorError:  # not a readable file: from_single_file reports it with its own words
        return False


def _has_vocabulary(folder: Path) -> bool:
    return (folder / "tokenizer.json").is_file() or (folder / "vocab.json").is_file()


def tokenizer_arguments(config_dir: Path | None, sdxl: bool) -> dict:
    """Built-in CLIP tokenizers for the tokenizer folders of `config_dir` that hold no vocabulary."""
    if config_dir is None:
        return {}
    out = {}
    for tokenizer, encoder in TOKENIZERS[: 2 if sdxl else 1]:
        if not _has_vocabulary(config_dir / tokenizer):
            encoder_config = json.loads((config_dir / encoder / "config.json").read_text())
            out[tokenizer] = build_tokenizer(pad_for(encoder_config))
    return out


def _pipeline_class(sdxl: bool):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    return StableDiffusionXLPipeline if sdxl else StableDiffusionPipeline


def load_single_file(path: str, dtype: torch.dtype, config: str | Path | None) -> dict:
    """Networks, tokenizer(s), DDIM config and identity (file hash) of a single-file SD / SDXL checkpoint."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ModelUnavailable(f"model {path!r}: no such file")
    config_dir = config_directory(config)
    sdxl = is_sdxl(file, config_dir)
    offline = hub_offline()
    kwargs = {"torch_dtype": dtype, "local_files_only": offline or config_dir is not None}
    if not sdxl:
        kwargs["safety_checker"] = None
    if config_dir is not None:
        kwargs["config"] = str(config_dir)
        kwargs.update(tokenizer_arguments(config_dir, sdxl))
    try:
        pipe = _pipeline_class(sdxl).from_single_file(str(file), **kwargs)
    except Exception as exc:
        hint = ("; offline it needs --model-config DIR (a local diffusers directory of the same architecture) "
                f"or --model-config {'|'.join(BUILTIN_CONFIGS)}") if config_dir is None else ""
        raise ModelUnavailable(f"model {path!r}: from_single_file failed ({type(exc).__name__}: {exc}){hint}") from exc
    parts = {"vae": pipe.vae, "unet": pipe.unet, "text_encoder": pipe.text_encoder, "tokenizer": pipe.tokenizer,
             "scheduler_config": ddim_config(dict(pipe.scheduler.config)),
             "identity": f"file:{file_sha256(file)[:32]}"}
    if sdxl:
        parts["text_encoder_2"], parts["tokenizer_2"] = pipe.text_encoder_2, pipe.tokenizer_2
        if tokenizer_problem(pipe.tokenizer_2) is not None:
            parts["tokenizer_2"] = build_tokenizer(OPEN_CLIP_PAD)
    return parts


def save_single_file(parts: dict, path: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write a model's UNet, VAE and text encoder(s) as one original-layout .safetensors file (optionally cast)."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"path={str(path)!r} must end in .safetensors")
    state = {k: (v if dtype is None else v.to(dtype)).contiguous() for k, v in to_original(parts).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"format": "pt"})
    log.info("saved %d tensors to %s", len(state), path)
    return path
