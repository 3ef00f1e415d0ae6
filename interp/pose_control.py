"""Per-frame ControlNet inputs from poses: endpoint poses (given or detected), the interpolated path
with per-frame overrides, rendered skeletons and the paper's scale ramp (method.md section 5)."""
from __future__ import annotations

from typing import Mapping, Optional

import torch

from .pose import Pose, control_scales, pose_path
from .pose_draw import control_image, detect_pose_cached
from .sampling import Control
from .settings import FrameEdit, Settings


def endpoint_poses(a, b, store, settings: Settings, pose_a: Optional[Pose],
                   pose_b: Optional[Pose], device: str = "cpu") -> tuple:
    """Given poses win; missing ones are detected (cached by image content) on the resized inputs."""
    width, height = a.size
    out = []
    for image, given in ((a, pose_a), (b, pose_b)):
        pose = given if given is not None else detect_pose_cached(
            image, store, settings.pose_all_people, device=device)
        out.append(pose.rescaled(width, height))
    return tuple(out)


def frame_poses(a, b, store, settings: Settings, edits: Mapping[int, FrameEdit], positions,
                pose_a: Optional[Pose] = None, pose_b: Optional[Pose] = None,
                device: str = "cpu") -> list:
    """The Pose of every frame: interpolated, or a FrameEdit.pose override."""
    start, end = endpoint_poses(a, b, store, settings, pose_a, pose_b, device)
    overrides = {i: Pose.from_json(e.pose) for i, e in edits.items() if e.pose is not None}
    return pose_path(start, end, positions, overrides)


def frame_controls(bundle, store, a, b, settings: Settings, edits: Mapping[int, FrameEdit],
                   positions, pose_a: Optional[Pose] = None,
                   pose_b: Optional[Pose] = None) -> list:
    """Control (skeleton image [1,3,H,W], ramped scale [1]) per frame for the pose ControlNet."""
    device = "cuda" if bundle.device.type == "cuda" else "cpu"
    poses = frame_poses(a, b, store, settings, edits, positions, pose_a, pose_b, device)
    scales = control_scales(positions, settings.control_peak,
                            settings.controlnet_conditioning_scale)
    width, height = a.size
    return [Control(control_image(p, width, height)[None], torch.tensor([float(s)]))
            for p, s in zip(poses, scales)]
