"""Every cache key recipe, in one file: a key is the hash of everything its result depends on.

Keys hash content (images, tensors, JSON-like values), never paths. The identity of an engine is the
model's identity plus the precision it runs in, and every key that depends on model outputs
includes it. Changing a recipe (what a result depends on) means bumping ENGINE_VERSION.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from interp.hashing import content_hash
from interp.settings import Settings

ENGINE_VERSION = "interp-engine-1"
INVERSION_VERSION = "textual-inversion-1"  # bump when the optimisation changes its results

# Settings fields a generated frame reads directly (the rest reach it through its inputs: positions,
# noise level, seeds, text conditions, control images, parents). The key-completeness test checks
# that every Settings field reaches some frame key.
FRAME_FIELDS = ("scheme", "num_inference_steps", "eta", "guidance_scale")
# ... and with endpoint attention on, its knobs (off: the keys of the paper's frames, unchanged).
ATTENTION_FIELDS = ("attention", "attention_strength", "attention_share", "attention_blocks")
# Settings fields the textual inversion reads.
INVERSION_FIELDS = ("invert_steps", "invert_lr", "guidance_scale", "num_inference_steps", "seed")


def engine_identity(bundle) -> str:
    """The model identity and the dtype it runs in: frames depend on both."""
    return f"{bundle.identity}|{str(bundle.dtype).replace('torch.', '')}"


def tensor_key(tensor: Optional[torch.Tensor]) -> Optional[str]:
    """Content key of a condition tensor (text embedding, control image)."""
    return None if tensor is None else content_hash(tensor.detach().float().cpu())


def endpoint_key(identity: str, image) -> str:
    """Key of an input's clean latent: the engine identity and the image's content."""
    return content_hash(["endpoint", ENGINE_VERSION, identity, image])


def frame_key(*, identity: str, settings: Settings, node, ddim_index: int, seeds: Sequence[int],
              cond: torch.Tensor, uncond: torch.Tensor, control, parents: Sequence[tuple]) -> str:
    """A frame's candidates: engine, the settings it reads, its plan node, noise level, seeds, text
    conditions, control (image and scale) and its parents with the candidate each settled on.

    `node` is the plan's FrameNode; `control` an interp.sampling.Control or None; `parents` is
    [(parent key, parent's chosen candidate), ...]: a pick in a parent changes this key.
    """
    attention = settings.attention.value != "off" and settings.attention_strength > 0
    fields = FRAME_FIELDS + (ATTENTION_FIELDS if attention else ())
    return content_hash({
        "engine": ENGINE_VERSION, "model": identity,
        "settings": {name: getattr(settings, name) for name in fields},
        "index": node.index, "position": float(node.position), "level": node.level,
        "weight": float(node.weight), "ddim_index": ddim_index, "candidates": len(seeds),
        "seeds": list(seeds), "cond": tensor_key(cond), "uncond": tensor_key(uncond),
        "control": tensor_key(control.images) if control is not None else None,
        "control_scale": float(control.scales[0]) if control is not None else None,
        "parents": [list(p) for p in parents],
    })


def scores_key(frame: str, scorer_identity: str, positive: str, negative: str) -> str:
    """A frame's CLIP scores: candidates are scored again only when the ranking changes."""
    return content_hash(["scores", frame, scorer_identity, positive, negative])


def inversion_key(identity: str, images: torch.Tensor, settings: Settings) -> str:
    """Textual inversion of a pair: engine, image contents and sizes, prompts, settings it reads."""
    return content_hash({
        "kind": "textual-inversion", "version": INVERSION_VERSION, "model": identity,
        "images": images.detach().float().cpu().contiguous(),
        "prompts": list(settings.prompt_pair), "negative_prompt": settings.negative_prompt,
        **({} if settings.negative_prompt_b is None else
           {"negative_prompts": list(settings.negative_pair)}),
        "height": int(images.shape[-2]), "width": int(images.shape[-1]),
        **{name: getattr(settings, name) for name in INVERSION_FIELDS},
    })


def pose_key(image, all_people: bool, detector: str) -> str:
    """A detected pose: the image's content, the people rule and the detector's identity."""
    return content_hash(["pose", detector, image, bool(all_people)])


def prepass_key(identity: str, image, recipe: dict) -> str:
    """The photo-style img2img of an input (for pose detection): engine, image, its recipe."""
    return content_hash(["prepass", ENGINE_VERSION, identity, image, recipe])
