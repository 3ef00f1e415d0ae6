"""A studio session's storyboard: the keyframes (images with prompts and poses) in order, the
loop option, and each segment's overrides.

A keyframe slot has a stable id, so a segment's settings (kept by the pair of keyframe ids it
joins) survive adding, removing and reordering other keyframes.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from interp import limits
from interp.errors import InputError
from interp.images import fit_image, load_image, prepare_images, working_size
from interp.pose.keypoints import Pose, PoseUnavailable
from interp.settings import Settings
from interp.timeline import Keyframe, Segment, Timeline, keyframe_name

_IDS = itertools.count(1)


@dataclass
class Slot:
    """One keyframe of the studio: its image (no larger than any working size needs), where it
    came from, its prompts and pose, and an id that stays with it when keyframes move."""
    image: Any
    source: Optional[str] = None             # the upload path it came from (the file rule)
    prompt: Optional[str] = None             # None: the run's prompt
    negative_prompt: Optional[str] = None    # None: the run's negative prompt
    pose: Optional[Pose] = None              # a drawn pose (None: detected when needed)
    id: int = dataclasses.field(default_factory=lambda: next(_IDS))


class Storyboard:
    """The keyframe slots in order, the loop option and the segments' overrides."""

    def __init__(self) -> None:
        self.slots: list = []
        self.loop = False
        self.segments: dict = {}                 # (id, id) -> Segment of the pair

    # -- keyframes -----------------------------------------------------------------------------
    def add_keyframes(self, sources: Sequence) -> list:
        """Images appended as keyframes, all or none (a bad file adds nothing); InputError names
        the keyframe that could not be read."""
        self._check_bound(len(self.slots) + len(sources))
        images = [self._load(len(self.slots) + n, s) for n, s in enumerate(sources)]
        self.slots += [Slot(im, s if isinstance(s, str) else None)
                       for im, s in zip(images, sources)]
        return images

    def set_keyframe(self, k: int, source: Any) -> Any:
        """Load keyframe k's image (k == the count: a new keyframe at the end); None removes it."""
        if source is None:
            if k < len(self.slots):
                self.remove_keyframe(k)
            return None
        if k == len(self.slots):
            return self.add_keyframes([source])[0]
        slot = self._slot(k)
        image = self._load(k, source)
        if not _same_image(slot.image, image):
            slot.pose = None                  # a drawn pose belongs to its image
        slot.image, slot.source = image, source if isinstance(source, str) else None
        return image

    @staticmethod
    def _load(k: int, source: Any) -> Any:
        try:
            return load_image(source, keep=limits.current().size)
        except InputError as exc:
            raise InputError(f"Keyframe {keyframe_name(k)}: {exc}") from None

    def remove_keyframe(self, k: int) -> None:
        self._slot(k)
        del self.slots[k]

    def move_keyframe(self, k: int, to: int) -> None:
        """Move keyframe k to position `to` (its segments' settings and edits follow the pairs)."""
        slot = self._slot(k)
        if not 0 <= to < len(self.slots):
            raise InputError(f"position {to} is out of range: keyframes are 0..{len(self.slots) - 1}")
        del self.slots[k]
        self.slots.insert(to, slot)

    def set_keyframe_text(self, k: int, prompt: Optional[str] = None,
                          negative_prompt: Optional[str] = None) -> None:
        """Keyframe k's prompt and negative prompt (blank or None: the run's)."""
        slot = self._slot(k)
        slot.prompt = prompt if prompt and prompt.strip() else None
        slot.negative_prompt = negative_prompt if negative_prompt and negative_prompt.strip() else None

    def set_pose(self, k: int, pose: Optional[Pose]) -> None:
        self._slot(k).pose = pose

    def index_of(self, slot_id: int) -> int:
        """Where the keyframe with this id is now; InputError when it was removed."""
        for k, slot in enumerate(self.slots):
            if slot.id == slot_id:
                return k
        raise InputError("that keyframe was removed: pick a keyframe again")

    def starts_segment(self, k: int) -> bool:
        """Whether keyframe k starts a segment (all but the last do; with loop, the last too)."""
        count = len(self.slots)
        return 0 <= k < count - 1 or (self.loop and count > 1 and k == count - 1)

    def segment(self, s: int) -> Segment:
        """Segment s's overrides (an empty Segment: all as the run)."""
        pairs = self._pair_ids()
        if not 0 <= s < len(pairs):
            raise InputError(f"segment {s} is out of range: there are {len(pairs)}")
        return self.segments.get(pairs[s], Segment())

    def set_segment(self, s: int, segment: Segment) -> None:
        """Segment s's overrides (between keyframes s and s + 1, or the loop's last -> first)."""
        pairs = self._pair_ids()
        if not 0 <= s < len(pairs):
            raise InputError(f"segment {s} is out of range: there are {len(pairs)}")
        self.segments[pairs[s]] = segment

    def timeline(self, settings: Optional[Settings] = None) -> Timeline:
        """The keyframes and segments as a Timeline (two keyframes: prompt B from settings)."""
        self._check_count(len(self.slots))
        keys = [Keyframe(s.image, s.prompt, s.negative_prompt, s.pose) for s in self.slots]
        if len(keys) == 2 and not self.loop and settings is not None:   # Prompt B, Negative B
            b = keys[1]
            keys[1] = dataclasses.replace(
                b, prompt=settings.prompt_b if b.prompt is None else b.prompt,
                negative_prompt=settings.negative_prompt_b if b.negative_prompt is None
                else b.negative_prompt)
        return Timeline(tuple(keys), tuple(self.segments.get(p, Segment())
                                           for p in self._pair_ids()), self.loop)

    def _pair_ids(self) -> tuple:
        ids = [s.id for s in self.slots]
        ends = ids[1:] + ids[:1] if self.loop else ids[1:]
        return tuple(zip(ids, ends))

    def _slot(self, k: int) -> Slot:
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < len(self.slots):
            raise InputError(f"keyframe {k!r} does not exist: there are {len(self.slots)}")
        return self.slots[k]

    @staticmethod
    def _check_bound(n: int) -> None:
        bound = limits.current().keyframes
        if n > bound:
            raise InputError(f"{n} keyframes are over this server's limit of {bound} (set by "
                             f"{limits.env_name('keyframes')}): remove some first")

    def _check_count(self, n: int) -> None:
        self._check_bound(n)
        if n < 2:
            raise InputError("add at least two images (keyframes) first")

    # -- poses (the render's own rule: given, else detected with the photo pre-pass) --------------
    def prepared(self, settings: Settings, native: int) -> list:
        """Every keyframe at the working size (what the model and the pose canvas see)."""
        self._check_count(len(self.slots))
        return prepare_images([s.image for s in self.slots], settings, native)

    def keyframe_image(self, k: int, settings: Settings, native: int):
        """Keyframe k at the working size (the size comes from the first keyframe, as the render's
        does; only keyframe k is fitted)."""
        self._check_count(len(self.slots))
        first, image = self.slots[0].image, self._slot(k).image
        return fit_image(image, working_size(first.width, first.height, settings, native),
                         settings.fit)

    def keyframe_pose(self, k: int, settings: Settings, engine) -> tuple:
        """(pose, note) of keyframe k: drawn, else as the render detects it, else empty."""
        image = self.keyframe_image(k, settings, engine.bundle.native_size)
        return pose_or_empty(engine, image, settings, self._slot(k).pose)


def pose_or_empty(engine, image, settings: Settings, given: Optional[Pose]) -> tuple:
    """(pose, note) of a keyframe at the working size: `given`, else detected as the render
    does (with the photo pre-pass), else an empty pose and why."""
    from interp.pose.control import endpoint_pose
    try:
        return endpoint_pose(engine.bundle, image, engine.store, settings, given), None
    except PoseUnavailable as exc:
        return Pose.empty(*image.size), str(exc)


def _same_image(a, b) -> bool:
    return (a is not None and b is not None and a.size == b.size and a.mode == b.mode
            and a.tobytes() == b.tobytes())
