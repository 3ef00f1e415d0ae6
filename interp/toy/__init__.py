"""The built-in toy model: procedural shapes (data), its training (train, stages) and checks (check).

The trained weights live in assets/toy (diffusers layout; load with interp.models.load.load_bundle("toy")),
the open_clip scorer in assets/toy/clip (load with interp.toy.nets.load_toy_clip()).
"""
from __future__ import annotations

import os
from pathlib import Path

TOY_DIR = Path(__file__).resolve().parents[2] / "assets" / "toy"
TOY_CLIP_NAME = "interp-toy-clip"
CLIP_FILE = "open_clip_model.safetensors"
# Knob values the toy model needs whatever the preset: its training size, the guidance at which its
# shapes come out clean (a red circle is detected in 7/8 seeds at 3, 1/8 at 7.5), the ranking prompts
# its own CLIP was trained on, and a textual-inversion lr for its 64-wide embeddings (1e-4 barely
# moves them; 1e-3 lowers the endpoints' denoising error by ~7-18% and keeps the in-betweens as clean;
# 1e-2 halves the error but overfits: fewer clean in-betweens).
RECOMMENDED: dict = dict(size=64, guidance_scale=3.0, invert_lr=1e-3, rank_positive="a clean single shape",
                         rank_negative="a faded blend of two shapes")


def toy_clip_path(model_dir: str | os.PathLike | None = None) -> Path:
    """The toy open_clip weights file inside a toy model directory (default assets/toy)."""
    return Path(model_dir if model_dir is not None else TOY_DIR) / "clip" / CLIP_FILE
