"""Frame keys: a hash of everything a frame's candidates depend on (incremental regeneration)."""
from __future__ import annotations

from typing import Optional

import torch

from interp.settings import Settings
from interp.hashing import content_hash

ENGINE_VERSION = "interp-engine-1"

# Settings fields a generated frame reads directly (the rest reach it through its inputs).
FRAME_FIELDS = ("scheme", "num_inference_steps", "eta", "guidance_scale")


def endpoint_key(identity: str, image) -> str:
    """Key of an input's clean latent: model identity and image content."""
    return content_hash(["endpoint", ENGINE_VERSION, identity, image])


def tensor_key(tensor: Optional[torch.Tensor]) -> Optional[str]:
    """Content key of a condition tensor (text embedding, control image)."""
    return None if tensor is None else content_hash(tensor.detach().float().cpu())


def frame_key(*, identity: str, settings: Settings, index: int, position: float, level: int,
              weight: float, ddim_index: int, candidates: int, seeds: list,
              cond_key: str, uncond_key: str, control_key: Optional[str],
              control_scale: Optional[float], parents: list) -> str:
    """key(frame) per the architecture: engine, model, settings read, plan data, seeds, conditions, parents.

    `parents` is [(parent key, parent's chosen candidate), ...]: a pick in a parent changes this key.
    """
    return content_hash({
        "engine": ENGINE_VERSION,
        "model": identity,
        "settings": {name: getattr(settings, name) for name in FRAME_FIELDS},
        "index": index, "position": float(position), "level": level, "weight": float(weight),
        "ddim_index": ddim_index, "candidates": candidates, "seeds": list(seeds),
        "cond": cond_key, "uncond": uncond_key,
        "control": control_key, "control_scale": control_scale,
        "parents": [list(p) for p in parents],
    })


def scores_key(frame: str, scorer_identity: str, positive: str, negative: str) -> str:
    """Key of a frame's CLIP scores: candidates are scored again only when the ranking changes."""
    return content_hash(["scores", frame, scorer_identity, positive, negative])
