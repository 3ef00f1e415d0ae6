"""OpenPose body detection through controlnet_aux (imported lazily: it loads every annotator, ~5 s).

Detection downloads lllyasviel/Annotators body_pose_model.pth from the hub (body only, no hands or
face) and raises PoseUnavailable when it cannot.
"""
from __future__ import annotations

import functools
import logging
import math
from typing import Any, Sequence

import numpy as np
from PIL import Image

from interp.pose.draw import check_size, open_pose_module
from interp.pose.keypoints import MAX_PEOPLE, MISSING, NUM_KEYPOINTS, Person, Pose, PoseUnavailable

logger = logging.getLogger(__name__)

BODY_WEIGHTS_REPO = "lllyasviel/Annotators"
BODY_WEIGHTS_FILE = "body_pose_model.pth"
DETECTOR = f"controlnet_aux-openpose-body:{BODY_WEIGHTS_REPO}/{BODY_WEIGHTS_FILE}"  # in pose keys


def _keypoint_to_pixels(kp: Any, width: int, height: int) -> tuple[float, float, float]:
    """A controlnet_aux Keypoint (normalised x, y; None = missing) as (x, y, c) in pixels."""
    if kp is None:
        return MISSING
    x, y = float(kp.x), float(kp.y)
    if not (math.isfinite(x) and math.isfinite(y)) or x < 0 or y < 0:
        return MISSING  # controlnet_aux marks undetected hand/face points with -1
    score = float(getattr(kp, "score", 1.0))
    c = score if math.isfinite(score) and score > 0 else 1.0
    return (min(x * width, float(width)), min(y * height, float(height)), c)


def _bbox(person: Person) -> tuple[float, float, float, float]:
    xs = [x for x, _, c in person if c > 0]
    ys = [y for _, y, c in person if c > 0]
    return min(xs), min(ys), max(xs), max(ys)


def _area(person: Person) -> float:
    x0, y0, x1, y1 = _bbox(person)
    return (x1 - x0) * (y1 - y0)


def _centre_x(person: Person) -> float:
    x0, _, x1, _ = _bbox(person)
    return (x0 + x1) / 2.0


def pose_from_results(results: Sequence[Any], width: int, height: int,
                      all_people: bool = False) -> Pose:
    """Detector output (PoseResult list, normalised coords) -> Pose in pixels of a width x height image.

    Keeps the largest person by bounding-box area (first on ties), or with all_people the (up to
    MAX_PEOPLE largest) people sorted left to right by bounding-box centre. People with no keypoint
    are dropped; confidence is the keypoint's score (1.0 when it has none).
    """
    check_size(width, height)
    people: list[Person] = []
    for i, result in enumerate(results):
        keypoints = list(getattr(result, "body", result).keypoints)
        if len(keypoints) != NUM_KEYPOINTS:
            raise ValueError(f"results[{i}] has {len(keypoints)} body keypoints; "
                             f"expected {NUM_KEYPOINTS}")
        person = tuple(_keypoint_to_pixels(kp, width, height) for kp in keypoints)
        if any(c > 0 for _, _, c in person):
            people.append(person)
    if not people:
        return Pose.empty(width, height)
    if not all_people:
        return Pose(width, height, (max(people, key=_area),))
    largest = sorted(people, key=_area, reverse=True)[:MAX_PEOPLE]
    return Pose(width, height, tuple(sorted(largest, key=_centre_x)))


def _weights_path() -> str:
    """The body model file: from the local hub cache, else a download (short timeout)."""
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(BODY_WEIGHTS_REPO, BODY_WEIGHTS_FILE, local_files_only=True)
    except Exception:  # not cached: try the hub (fails fast under HF_HUB_OFFLINE=1)
        return hf_hub_download(BODY_WEIGHTS_REPO, BODY_WEIGHTS_FILE, etag_timeout=5)


@functools.lru_cache(maxsize=2)
def _load_detector(device: str) -> Any:
    """A body-only OpenposeDetector on device (cached); PoseUnavailable when weights cannot load."""
    try:
        path = _weights_path()
        op = open_pose_module()
        body = op.Body(path)
        body.to(device)
    except Exception as exc:
        raise PoseUnavailable(
            f"pose detection weights are unavailable ({BODY_WEIGHTS_REPO}/{BODY_WEIGHTS_FILE}: "
            f"{type(exc).__name__}: {exc}). Draw the pose by hand in the pose editor or give it as "
            f"an OpenPose JSON file (--pose-a/--pose-b).") from exc
    return op.OpenposeDetector(body)


def detect_pose(image: Image.Image, all_people: bool = False, *, device: str = "cpu") -> Pose:
    """OpenPose body detection on image (method.md sec. 5): largest person, or all left to right."""
    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL image, got {type(image).__name__}")
    detector = _load_detector(str(device))
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    results = detector.detect_poses(rgb, include_hand=False, include_face=False)
    return pose_from_results(results, image.width, image.height, all_people)


def detect_pose_cached(image: Image.Image, store: Any, all_people: bool = False, *,
                       device: str = "cpu") -> Pose:
    """detect_pose through a store (get/put Records), keyed by interp.keys.pose_key."""
    from interp.keys import pose_key
    from interp.store import Record

    key = pose_key(image, all_people, DETECTOR)
    record = store.get(key)
    if record is not None:
        try:
            return Pose.from_json(record.meta["pose"])
        except (KeyError, TypeError, ValueError) as exc:
            logger.warning("ignoring unreadable cached pose %s: %s", key, exc)
    pose = detect_pose(image, all_people, device=device)
    store.put(key, Record(tensors={}, meta={"pose": pose.to_json()}))
    return pose
