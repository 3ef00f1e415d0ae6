"""The keyframe row of the studio and its inspector: add images (or an example), select, reorder
and remove keyframes, each keyframe's prompts and the segment that starts at it (frames or
seconds, curve, noise range, seed). Handlers return {component name: value} (ui.names)."""
from __future__ import annotations

from typing import Any, Optional

import gradio as gr
from PIL import Image

from ui.errors import whole
from ui.plot import plan_error, timeline_svg
from ui.sessions import EXAMPLES, Sessions
from interp.errors import InputError
from interp.forms import form_from_segment, segment_from_form, settings_from_form
from interp.images import working_size
from interp.session import Session
from interp.timeline import keyframe_name, layout

THUMB, PREVIEW = 256, 512          # pixels: the keyframe row's thumbnails, the inspector's image
SEGMENT = ("seg_frames", "seg_duration", "seg_curve", "seg_noise_min", "seg_noise_max", "seg_seed")
INSPECTOR = ("kf", "kf_image", "kf_prompt", "kf_negative_prompt", "seg_title", *SEGMENT)
BOARD = ("state", "keyframes", "loop", *INSPECTOR)
PHOTO_EXAMPLES = [("astronaut → cat", ("astronaut.jpg", "chelsea.jpg"), "a photo", False),
                  ("coffee → rocket", ("coffee.jpg", "rocket.jpg"), "a photo", False),
                  ("astronaut → cat → coffee, looped", ("astronaut.jpg", "chelsea.jpg",
                                                       "coffee.jpg"), "a photo", True)]


def examples(model: str) -> list:
    """(label, [(path, keyframe prompt)], run prompt, loop) per example: shapes with their
    captions on the toy model (what it was trained on), public-domain photos otherwise."""
    if model != "toy":
        return [(label, [(str(EXAMPLES / n), None) for n in names], prompt, loop)
                for label, names, prompt, loop in PHOTO_EXAMPLES]
    from interp.toy.data import caption, example_pairs
    def key(spec):
        return str(EXAMPLES / "toy" / f"{spec.colour}_{spec.shape}_{spec.background}.png"), \
            caption(spec)
    pairs = example_pairs()
    out = [(f"{a.colour} {a.shape} → {b.colour} {b.shape}", [key(a), key(b)], "", False)
           for a, b in pairs]
    chain = [pairs[0][0], pairs[0][1], pairs[2][0]]
    out.append((" → ".join(f"{s.colour} {s.shape}" for s in chain) + ", looped",
                [key(s) for s in chain], "", True))
    return out


class KeyframeRow:
    """Handlers of the keyframe row and the inspector over one session's storyboard."""

    def __init__(self, sessions: Sessions, bundle) -> None:
        self.sessions = sessions
        self.examples = examples(bundle.name)
        self.native = bundle.native_size

    def add(self, session: Optional[Session], files: Any, request: gr.Request = None) -> dict:
        """Append uploaded images as keyframes; the last one opens in the inspector."""
        session = self.sessions.get(session, request)
        self.sessions.add_keyframes(session, files)
        return board(session, len(session.slots) - 1)

    def example(self, session: Optional[Session], example: Any,
                request: gr.Request = None) -> dict:
        """Replace the keyframes by an example's (with their prompts and loop)."""
        found = [e for e in self.examples if e[0] == example]
        if example in ("", None):
            return {}                        # the dropdown's "Load an example…"
        if not found:
            raise InputError(f"example={str(example)[:60]!r} is not one of "
                             f"{[e[0] for e in self.examples]}")
        session = self.sessions.get(session, request)
        _, keys, prompt, loop = found[0]
        session.slots, session.loop = [], loop
        session.add_keyframes([path for path, _ in keys])
        for k, (_, text) in enumerate(keys):
            session.set_keyframe_text(k, text)
        return {**board(session, 0), "prompt": prompt}

    def select(self, session: Optional[Session], evt: gr.SelectData) -> dict:
        """A click in the keyframe row opens that keyframe in the inspector."""
        if session is None or not isinstance(evt.index, int):
            return {}
        return {**board(session, evt.index), "side": gr.Tabs(selected="keyframe")}

    def choose(self, session: Optional[Session], keyframe: Any) -> dict:
        if session is None or keyframe is None:
            return {}
        return board(session, whole(keyframe, "keyframe"))

    def edit(self, session: Optional[Session], keyframe: Any, prompt: str = "",
             negative_prompt: str = "", frames: Any = 0, duration: Any = 0, curve: Any = "",
             noise_min: Any = 0, noise_max: Any = 0, seed: Any = None) -> dict:
        """Keep the inspector's values: the keyframe's prompts, its segment's overrides."""
        if session is None or keyframe is None:
            return {}
        k = whole(keyframe, "keyframe")
        session.set_keyframe_text(k, prompt, negative_prompt)
        if session.starts_segment(k):
            session.set_segment(k, segment_from_form(session.segment(k), frames, duration, curve,
                                                     noise_min, noise_max, seed))
        return {}          # the row shows the new prompt when the box is left (refresh)

    def refresh(self, session: Optional[Session], keyframe: Any) -> dict:
        """The keyframe row again (its captions show the keyframes' prompts)."""
        if session is None or not session.slots:
            return {}
        return {"keyframes": row(session, None if keyframe is None else whole(keyframe,
                                                                              "keyframe"))}

    def move(self, session: Optional[Session], keyframe: Any, by: int) -> dict:
        """Move a keyframe one place earlier (by = -1) or later (+1)."""
        if session is None or keyframe is None:
            raise InputError("Add images and pick a keyframe first.")
        k = whole(keyframe, "keyframe")
        to = k + by
        if not 0 <= to < len(session.slots):
            raise InputError(f"Keyframe {keyframe_name(k)} is already the "
                             f"{'first' if by < 0 else 'last'}.")
        session.move_keyframe(k, to)
        return board(session, to)

    def remove(self, session: Optional[Session], keyframe: Any) -> dict:
        if session is None or keyframe is None:
            raise InputError("Add images and pick a keyframe first.")
        k = whole(keyframe, "keyframe")
        session.remove_keyframe(k)
        return board(session, min(k, len(session.slots) - 1))

    def replace(self, session: Optional[Session], keyframe: Any, file: Any,
                request: gr.Request = None) -> dict:
        """A new image for the keyframe in the inspector (its prompts and segment stay)."""
        session = self.sessions.get(session, request)
        if keyframe is None:
            raise InputError("Pick a keyframe first.")
        k = whole(keyframe, "keyframe")
        self.sessions.replace_keyframe(session, k, file)
        return board(session, k)

    def set_loop(self, session: Optional[Session], loop: bool, keyframe: Any = None,
                 request: gr.Request = None) -> dict:
        session = self.sessions.get(session, request)
        session.loop = bool(loop)
        return board(session, None if keyframe is None else whole(keyframe, "keyframe"))

    def timeline(self, session: Optional[Session], fps: Any = 10, keyframe: Any = None,
                 **knobs) -> dict:
        """The timeline (ui.plot.timeline_svg) for the row and the knobs that set its lengths."""
        if session is None or len(session.slots) < 2:
            return {"timeline": timeline_svg(None, None, None, None)}
        try:
            settings = settings_from_form(knobs)
            frames_per_s = float(fps)
            where = layout(session.timeline(settings), settings, frames_per_s)
        except (ValueError, TypeError, InputError) as exc:
            return {"timeline": plan_error(str(exc))}
        first = session.slots[0].image
        size = working_size(first.width, first.height, settings, self.native)
        selected = None if keyframe is None else whole(keyframe, "keyframe")
        return {"timeline": timeline_svg(where, frames_per_s, size, selected)}


def board(session: Session, k: Optional[int]) -> dict:
    """The row and the inspector showing keyframe k (None or out of range: the first)."""
    count = len(session.slots)
    if count == 0:
        return {"state": session, "keyframes": [], "loop": session.loop,
                "kf": gr.Dropdown(choices=[], value=None), "kf_image": None, "kf_prompt": "",
                "kf_negative_prompt": "", "seg_title": "Add images to start.",
                **{n: gr.update(interactive=False) for n in SEGMENT}}
    k = k if k is not None and 0 <= k < count else 0
    slot = session.slots[k]
    return {"state": session, "keyframes": row(session, k), "loop": session.loop,
            "kf": gr.Dropdown(choices=[(keyframe_name(i), i) for i in range(count)], value=k),
            "kf_image": thumbnail(slot.image, PREVIEW, enlarge=True),
            "kf_prompt": slot.prompt or "",
            "kf_negative_prompt": slot.negative_prompt or "", **_segment(session, k)}


def row(session: Session, selected: Optional[int] = None) -> Any:
    """The keyframe row: thumbnails captioned with their letter and prompt."""
    items = [(thumbnail(slot.image, THUMB),
              keyframe_name(k) + (f" · {slot.prompt[:36]}" if slot.prompt else ""))
             for k, slot in enumerate(session.slots)]
    return gr.Gallery(value=items, selected_index=selected)


def thumbnail(image, side: int, enlarge: bool = False):
    """A copy of `image` that fits side x side (what the page needs to show it); enlarge: a
    smaller one grows to fit (nearest neighbour, so a 64 px toy image stays crisp)."""
    scale = side / max(image.size)
    if scale >= 1 and not enlarge:
        return image.copy()
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.NEAREST if scale > 1 else Image.LANCZOS)


def _segment(session: Session, k: int) -> dict:
    count = len(session.slots)
    if not session.starts_segment(k):
        title = (f"**{keyframe_name(k)}** is the last keyframe: turn on Loop for a segment "
                 f"back to {keyframe_name(0)}." if count > 1 else "Add a second image.")
        return {"seg_title": title, **{n: gr.update(interactive=False) for n in SEGMENT}}
    end = keyframe_name((k + 1) % count)
    values = form_from_segment(session.segment(k))
    return {"seg_title": f"Segment **{keyframe_name(k)} → {end}** (0 or empty: as the run)",
            **{f"seg_{name}": gr.update(value=v, interactive=True) for name, v in values.items()}}


