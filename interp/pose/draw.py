"""Drawing the OpenPose skeleton with controlnet_aux (no weights needed), as image and ControlNet input.

controlnet_aux is imported lazily (importing it loads every annotator, ~5 s).
"""
from __future__ import annotations

import math
import warnings
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from interp.pose.keypoints import Pose

if TYPE_CHECKING:
    import torch

def open_pose_module() -> ModuleType:
    """controlnet_aux.open_pose, imported on first use with its import-time warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from controlnet_aux import open_pose
    return open_pose


def check_size(width: Any, height: Any) -> None:
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _normalised(value: float, size: int) -> float:
    """value / size, nudged up one ulp so controlnet_aux's int(v * size) is floor(value), not one less."""
    return math.nextafter(value / size, math.inf)


def render_pose(pose: Pose, width: int, height: int) -> Image.Image:
    """The OpenPose skeleton (18-colour palette, on black) of pose rescaled to width x height, RGB."""
    if not isinstance(pose, Pose):
        raise TypeError(f"pose must be a Pose, got {type(pose).__name__}")
    check_size(width, height)
    op = open_pose_module()
    scaled = pose.rescaled(width, height)
    results = []
    for person in scaled.people:
        keypoints = [op.Keypoint(_normalised(x, width), _normalised(y, height)) if c > 0 else None
                     for x, y, c in person]
        body = op.BodyResult(keypoints=keypoints, total_score=0.0,
                             total_parts=sum(k is not None for k in keypoints))
        results.append(op.PoseResult(body, None, None, None))
    canvas = op.draw_poses(results, height, width, draw_body=True, draw_hand=False, draw_face=False)
    return Image.fromarray(np.ascontiguousarray(canvas, dtype=np.uint8), "RGB")


def control_image(pose: Pose, width: int, height: int) -> "torch.Tensor":
    """The rendered skeleton as the ControlNet condition: float32 [3, height, width] in [0, 1]."""
    import torch

    array = np.asarray(render_pose(pose, width, height), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()
