"""Finding and loading model weights: Hugging Face hub ids (offline-aware) and local directories
(single-file checkpoints: interp.models.single_file).

Every failure becomes ModelUnavailable naming the model, the cause and the fix. Never waits on the hub:
HF_HUB_OFFLINE is honoured, and otherwise a 2-second probe decides whether to go online at all.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

import torch

from interp.scheduler import ddim_config
from interp.errors import ModelUnavailable
from interp.hashing import file_sha256

log = logging.getLogger(__name__)

COMPONENTS = ("vae", "unet", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "scheduler")
WEIGHT_NAMES = ("diffusion_pytorch_model", "model")
VARIANT = re.compile(r"\.(fp16|fp32|bf16|ema|non_ema|non-ema)\.")
PROBE_SECONDS = 2.0
LOCAL = {"local_files_only": True}  # components always load from a local directory (a snapshot or a path)


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set (now or when huggingface_hub was
    imported), or the hub does not answer a TCP connect within 2 seconds."""
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    if constants.HF_HUB_OFFLINE or any(f.strip().lower() in ("1", "true", "yes", "on") for f in flags):
        return True
    return not _hub_reachable(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))


@functools.lru_cache(maxsize=4)
def _hub_reachable(endpoint: str) -> bool:
    parsed = urlparse(endpoint)
    host, port = parsed.hostname or "huggingface.co", parsed.port or 443
    ok: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
            ok.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(PROBE_SECONDS + 0.5)
    if not ok:
        log.info("%s is unreachable; loading models from the local cache only", host)
    return bool(ok)


def _fix(repo: str) -> str:
    return f"download it with `huggingface-cli download {repo}` while online, or pass a local path"


def _snapshot(repo: str, patterns: list[str] | None, what: str) -> Path:
    from huggingface_hub import snapshot_download

    from huggingface_hub.errors import IncompleteSnapshotError

    offline = hub_offline()
    try:
        path = snapshot_download(repo, allow_patterns=patterns, local_files_only=offline)
    except IncompleteSnapshotError as exc:
        log.warning("%s: using the incomplete cached snapshot as is (%s)", repo, exc)
        path = exc.snapshot_path
    except Exception as exc:
        where = "in the local Hugging Face cache (offline)" if offline else "on the Hugging Face hub"
        raise ModelUnavailable(
            f"model {what!r}: cannot find {repo!r} {where} ({type(exc).__name__}: {exc}); {_fix(repo)}"
        ) from exc
    return Path(path)


def _weights_missing(folder: Path) -> bool:
    return not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin"))


def fetch(repo: str, subfolders: tuple[str, ...], what: str) -> Path:
    """A local snapshot of hub `repo` with configs + weights of `subfolders` ("" = the root); safetensors first."""
    cfg = [f"{s}/*.json" if s else "*.json" for s in subfolders] + [f"{s}/*.txt" for s in subfolders if s]
    path = _snapshot(repo, cfg + _weight_patterns(subfolders, "safetensors"), what)
    weighted = [s for s in subfolders if not s.startswith(("tokenizer", "scheduler"))]
    missing = [s for s in weighted if (path / s).is_dir() and _weights_missing(path / s)]
    if missing and not hub_offline():
        path = _snapshot(repo, _weight_patterns(tuple(missing), "bin"), what)
    return path


def _weight_patterns(subfolders: tuple[str, ...], ext: str) -> list[str]:
    """Non-variant weight files (single or sharded) that diffusers/transformers load by default."""
    names = [f"{w}.{ext}" for w in WEIGHT_NAMES] + [f"{w}-*-of-*.{ext}" for w in WEIGHT_NAMES]
    return [f"{s}/{n}" if s else n for s in subfolders for n in names]


def available_locally(model: str) -> bool:
    """Whether a repo id is in the local cache with UNet weights, or a local path exists (no network)."""
    path = Path(model).expanduser()
    if path.exists():
        return True
    if not _looks_like_repo(model):
        return False
    from huggingface_hub import snapshot_download

    try:
        snap = Path(snapshot_download(model, local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure means "not cached", which is the answer
        return False
    return not _weights_missing(snap / "unet")


def _looks_like_repo(model: str) -> bool:
    return re.fullmatch(r"[\w.-]+/[\w.-]+", model) is not None and not model.startswith((".", "/"))


def _loaded_files(folder: Path) -> list[Path]:
    files = [f for f in sorted(folder.iterdir()) if f.is_file() and not f.name.startswith(".")]
    files = [f for f in files if not VARIANT.search(f.name)]
    if any(f.suffix == ".safetensors" for f in files):
        files = [f for f in files if f.suffix != ".bin"]
    return files


def dir_hash(root: Path, subfolders: tuple[str, ...]) -> str:
    """Content hash of the files loaded from `subfolders` of `root` (relative names + contents, not the path)."""
    digest = hashlib.sha256()
    for sub in subfolders:
        folder = root / sub if sub else root
        if not folder.is_dir():
            continue
        for f in _loaded_files(folder):
            digest.update(f"{sub}/{f.name}\0{file_sha256(f)}\n".encode())
    return digest.hexdigest()[:32]


def _locate(model: str, subfolders: tuple[str, ...], what: str) -> tuple[Path, str]:
    """(local directory, identity) of a directory path (content hash) or a hub repo id (id@commit)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path, f"dir:{dir_hash(path, subfolders)}"
    if path.exists() or not _looks_like_repo(model):
        raise ModelUnavailable(
            f"model {what!r}: {model!r} is neither a directory nor a Hugging Face repo id "
            "(expected a diffusers directory, owner/name, or a .safetensors/.ckpt file)"
        )
    snap = fetch(model, subfolders, what)
    return snap, f"{model}@{snap.name}"


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def load_diffusers(model: str, dtype: torch.dtype, what: str) -> dict:
    """VAE, UNet, text encoder(s), tokenizer(s) and scheduler config of a diffusers repo id or
    directory (SDXL repos also have text_encoder_2 and tokenizer_2)."""
    root, identity = _locate(model, COMPONENTS, what)
    try:
        parts = _components(root, dtype)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelUnavailable(
            f"model {what!r}: loading from {str(root)!r} failed ({type(exc).__name__}: {exc}); "
            f"{_fix(model) if _looks_like_repo(model) else 'check that it is a complete diffusers directory'}"
        ) from exc
    parts["identity"] = identity
    if (root / "controlnet" / "config.json").is_file():
        parts["local_controlnet"] = str(root / "controlnet")
    return parts


def _components(root: Path, dtype: torch.dtype) -> dict:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    def tokenizer(sub: str):
        return CLIPTokenizer.from_pretrained(root, subfolder=sub, **LOCAL) if (root / sub).is_dir() else None

    parts = {
        "vae": AutoencoderKL.from_pretrained(root, subfolder="vae", torch_dtype=dtype, **LOCAL),
        "unet": UNet2DConditionModel.from_pretrained(root, subfolder="unet", torch_dtype=dtype, **LOCAL),
        "text_encoder": CLIPTextModel.from_pretrained(root, subfolder="text_encoder", dtype=dtype, **LOCAL),
        "tokenizer": tokenizer("tokenizer"),
        "scheduler_config": ddim_config(_read_json(root / "scheduler" / "scheduler_config.json")),
    }
    if (root / "text_encoder_2").is_dir():
        parts["text_encoder_2"] = CLIPTextModelWithProjection.from_pretrained(
            root, subfolder="text_encoder_2", dtype=dtype, **LOCAL)
        parts["tokenizer_2"] = tokenizer("tokenizer_2")
    return parts


def load_vae(model: str, dtype: torch.dtype) -> tuple:
    """A VAE from a repo id or directory (its root or a vae/ subfolder), and its identity."""
    from diffusers import AutoencoderKL
    return _load_network(AutoencoderKL, "vae", "VAE", model, dtype)


def load_controlnet(model: str, dtype: torch.dtype) -> tuple:
    """A ControlNet from a repo id or directory (its root or a controlnet/ subfolder), and its identity."""
    from diffusers import ControlNetModel
    return _load_network(ControlNetModel, "controlnet", "ControlNet", model, dtype)


def _load_network(cls, subfolder: str, what: str, model: str, dtype: torch.dtype) -> tuple:
    """(network, identity) of a repo id or directory holding it at its root or in `subfolder`."""
    path = Path(model).expanduser()
    sub = subfolder if (path / subfolder / "config.json").is_file() else ""
    root, identity = _locate(model, (sub,), f"{what} {model}")
    try:
        net = cls.from_pretrained(root, subfolder=sub or None, torch_dtype=dtype, **LOCAL)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelUnavailable(f"{what} {model!r}: loading from {str(root)!r} failed "
                               f"({type(exc).__name__}: {exc})") from exc
    return net, identity
