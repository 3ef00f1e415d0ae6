"""Per-frame ControlNet inputs from poses: endpoint poses (given or detected), the interpolated path
with per-frame overrides, rendered skeletons and the paper's scale ramp (method.md section 5).

When the detector finds nobody in an input (a painting, a cartoon), the paper first translates it to
a photo style (img2img) and detects on that (its Fig. 4). That pre-pass is keyed and cached like a
frame, reports progress and honours Cancel; the studio's pose editor uses the same endpoint poses.
"""
from __future__ import annotations

import logging
from typing import Mapping, Optional

import torch

from interp.events import CancelToken, EventCallback, StageProgress, ignore_event
from interp.keys import engine_identity, prepass_key
from interp.pose.detect import detect_pose_cached
from interp.pose.draw import control_image
from interp.pose.keypoints import Pose, control_scales, pose_path
from interp.sampling import Control, Guidance, add_noise, denoise, make_generator, randn
from interp.scheduler import by_index
from interp.settings import FrameEdit, Settings
from interp.store import Record

log = logging.getLogger(__name__)

PREPASS = {"prompt": "a photo of a person", "negative_prompt": "", "steps": 50, "strength": 0.6,
           "guidance_scale": 7.5, "seed": 0}   # img2img: the last 30 of 50 DDIM steps


def photo_prepass(bundle, image, store, on_event: EventCallback = ignore_event,
                  cancel: Optional[CancelToken] = None):
    """img2img of a stylised input toward a photo of a person, for the detector (paper, Fig. 4);
    cached by (engine, image, recipe), so a repeated render makes no model call for it."""
    from interp.images import to_pil, to_tensor
    from interp.text import encode_prompt
    key = prepass_key(engine_identity(bundle), image, PREPASS)
    record = store.get(key)
    if record is not None:
        return record.images[0]
    scheduler = bundle.make_scheduler(PREPASS["steps"])
    index = int(PREPASS["steps"] * PREPASS["strength"]) - 1
    gen = make_generator(PREPASS["seed"], bundle.device)
    with torch.no_grad():
        z0 = bundle.encode_images(to_tensor([image]).to(bundle.device, bundle.dtype)).float()
        start = add_noise(scheduler, z0.cpu(), randn(z0.shape, gen, "cpu"), int(by_index(scheduler)[index]))
        guidance = Guidance(encode_prompt(bundle, PREPASS["prompt"])[0],
                            encode_prompt(bundle, PREPASS["negative_prompt"], negative=True)[0],
                            PREPASS["guidance_scale"])
        z = denoise(bundle, scheduler, start, index, guidance, [gen], cancel=cancel,
                    on_step=lambda n, total: on_event(StageProgress("pose pre-pass", n, total)))
        photo = to_pil(bundle.decode_latents(z.to(bundle.dtype)).float())[0]
    store.put(key, Record(tensors={}, images=(photo,), meta={"kind": "photo-prepass"}))
    return photo


def detect_with_prepass(bundle, image, store, all_people: bool, device: str,
                        on_event: EventCallback = ignore_event,
                        cancel: Optional[CancelToken] = None) -> Pose:
    """Detect a pose; when nobody is found, detect again on a photo-style version of the image."""
    pose = detect_pose_cached(image, store, all_people, device=device)
    if pose.people:
        return pose
    log.info("no person found; trying the photo-style pre-pass before giving up")
    photo = photo_prepass(bundle, image, store, on_event, cancel)
    return detect_pose_cached(photo, store, all_people, device=device)


def endpoint_pose(bundle, image, store, settings: Settings, given: Optional[Pose] = None,
                  on_event: EventCallback = ignore_event,
                  cancel: Optional[CancelToken] = None) -> Pose:
    """An input's pose at its working size: the given one, else detected (with the pre-pass).
    The render and the studio's pose editor both call this, so they show the same pose."""
    if given is None:
        device = "cuda" if bundle.device.type == "cuda" else "cpu"
        given = detect_with_prepass(bundle, image, store, settings.pose_all_people, device,
                                    on_event, cancel)
    return given.rescaled(*image.size)


def frame_controls(bundle, store, a, b, settings: Settings, edits: Mapping[int, FrameEdit],
                   positions, pose_a: Optional[Pose] = None, pose_b: Optional[Pose] = None,
                   on_event: EventCallback = ignore_event,
                   cancel: Optional[CancelToken] = None) -> list:
    """Control (skeleton image [1,3,H,W], ramped scale [1]) per frame for the pose ControlNet:
    endpoint poses, interpolated at each position, a FrameEdit.pose override where given."""
    start = endpoint_pose(bundle, a, store, settings, pose_a, on_event, cancel)
    end = endpoint_pose(bundle, b, store, settings, pose_b, on_event, cancel)
    overrides = {i: e.pose for i, e in edits.items() if e.pose is not None}
    poses = pose_path(start, end, positions, overrides)
    scales = control_scales(positions, settings.control_peak,
                            settings.controlnet_conditioning_scale)
    width, height = a.size
    return [Control(control_image(p, width, height)[None], torch.tensor([float(s)]))
            for p, s in zip(poses, scales)]
