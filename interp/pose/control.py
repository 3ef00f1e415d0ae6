"""Per-frame ControlNet inputs from poses: endpoint poses (given or detected), the interpolated path
with per-frame overrides, rendered skeletons and the paper's scale ramp (method.md section 5)."""
from __future__ import annotations

import logging
from typing import Mapping, Optional

import torch

from interp.pose.keypoints import Pose, control_scales, pose_path
from interp.pose.draw import control_image
from interp.pose.detect import detect_pose_cached
from interp.sampling import Control, Guidance, add_noise, denoise, make_generator, randn
from interp.scheduler import by_index
from interp.settings import FrameEdit, Settings

log = logging.getLogger(__name__)


PHOTO_PROMPT = "a photo of a person"
PREPASS_STEPS, PREPASS_STRENGTH = 50, 0.6  # img2img: 30 of 50 DDIM steps


def photo_prepass(bundle, image, seed: int = 0):
    """img2img of a stylised input toward a photo of a person, for the detector (paper, Fig. 4)."""
    from interp.images import to_pil, to_tensor
    from interp.text import encode_prompt
    scheduler = bundle.make_scheduler(PREPASS_STEPS)
    index = int(PREPASS_STEPS * PREPASS_STRENGTH) - 1
    gen = make_generator(seed, bundle.device)
    with torch.no_grad():
        z0 = bundle.encode_images(to_tensor([image]).to(bundle.device, bundle.dtype)).float()
        t = int(by_index(scheduler)[index])
        start = add_noise(scheduler, z0.cpu(), randn(z0.shape, gen, "cpu"), t)
        cond, _ = encode_prompt(bundle, PHOTO_PROMPT)
        uncond, _ = encode_prompt(bundle, "")
        z = denoise(bundle, scheduler, start, index, Guidance(cond, uncond, 7.5), [gen])
        return to_pil(bundle.decode_latents(z.to(bundle.dtype)).float())[0]


def detect_with_prepass(bundle, image, store, all_people: bool, device: str) -> Pose:
    """Detect a pose; when nobody is found, detect again on a photo-style version of the image."""
    pose = detect_pose_cached(image, store, all_people, device=device)
    if pose.people:
        return pose
    log.info("no person found; trying the photo-style pre-pass before giving up")
    return detect_pose_cached(photo_prepass(bundle, image), store, all_people, device=device)


def endpoint_poses(bundle, a, b, store, settings: Settings, pose_a: Optional[Pose],
                   pose_b: Optional[Pose], device: str = "cpu") -> tuple:
    """Given poses win; missing ones are detected (cached by image content) on the resized inputs."""
    width, height = a.size
    out = []
    for image, given in ((a, pose_a), (b, pose_b)):
        pose = given if given is not None else detect_with_prepass(
            bundle, image, store, settings.pose_all_people, device)
        out.append(pose.rescaled(width, height))
    return tuple(out)


def frame_poses(bundle, a, b, store, settings: Settings, edits: Mapping[int, FrameEdit], positions,
                pose_a: Optional[Pose] = None, pose_b: Optional[Pose] = None,
                device: str = "cpu") -> list:
    """The Pose of every frame: interpolated, or a FrameEdit.pose override."""
    start, end = endpoint_poses(bundle, a, b, store, settings, pose_a, pose_b, device)
    overrides = {i: Pose.from_json(e.pose) for i, e in edits.items() if e.pose is not None}
    return pose_path(start, end, positions, overrides)


def frame_controls(bundle, store, a, b, settings: Settings, edits: Mapping[int, FrameEdit],
                   positions, pose_a: Optional[Pose] = None,
                   pose_b: Optional[Pose] = None, on_event=None, cancel=None) -> list:
    """Control (skeleton image [1,3,H,W], ramped scale [1]) per frame for the pose ControlNet."""
    device = "cuda" if bundle.device.type == "cuda" else "cpu"
    poses = frame_poses(bundle, a, b, store, settings, edits, positions, pose_a, pose_b, device)
    scales = control_scales(positions, settings.control_peak,
                            settings.controlnet_conditioning_scale)
    width, height = a.size
    return [Control(control_image(p, width, height)[None], torch.tensor([float(s)]))
            for p, s in zip(poses, scales)]
