"""The frame panel of the studio: a frame of any segment with its candidates (CLIP scores as
captions), what it is made of, and its override form. Returns {component name: value}."""
from __future__ import annotations

import json
from typing import Any, Optional

import gradio as gr

from ui.errors import whole
from interp.session import Session
from interp.timeline import keyframe_name

EMPTY = "Click a frame in the strip to see its candidates."
FORM = ("frame_prompt", "frame_negative_prompt", "frame_strength", "frame_anchor", "frame_seed",
        "frame_noise", "frame_pose")
BLANK_FORM = dict(zip(FORM, ("", "", 1.0, False, None, 0, "")))
SHOWN = ("cand_gallery", "frame_info", "cand_no", *FORM)


def select_frame(session: Optional[Session], evt: gr.SelectData) -> dict:
    """Strip click -> that frame's number, and the Frame tab."""
    frames = sorted(session.frames) if session is not None else []
    if not isinstance(evt.index, int) or not 0 <= evt.index < len(frames):
        return {}
    return {"frame_no": frames[evt.index], "side": gr.Tabs(selected="frame")}


def show_frame(session: Optional[Session], frame: Any) -> dict:
    """Candidates (with CLIP scores), details and the override form of one frame."""
    if session is None or frame is None or session.plan is None:
        return {"cand_gallery": [], "frame_info": EMPTY, "cand_no": None, **BLANK_FORM}
    index = whole(frame, "frame")
    view = session.frame(index)
    session.selected = index
    gallery = [(im, _caption(c, view)) for c, im in enumerate(view.images)]
    keyframe = index in session.plan.keyframes
    edit = None if keyframe else session.edit_of(index)
    out = {"cand_gallery": gallery, "frame_info": _info(session, view, edit),
           "cand_no": view.chosen}
    if edit is None:
        return {**out, **BLANK_FORM}
    return {**out, **dict(zip(FORM, (edit.prompt or "", edit.negative_prompt or "", edit.strength,
                                     edit.keyframe, edit.seed, edit.noise or 0,
                                     json.dumps(edit.pose.to_json()) if edit.pose else "")))}


def refresh_frame(session: Optional[Session], frame: Any) -> dict:
    """After a render: refresh the open frame (none is open until the user picks one)."""
    if session is None or session.selected is None or session.selected not in session.frames:
        return show_frame(None, None)
    return show_frame(session, frame)


def select_candidate(evt: gr.SelectData) -> dict:
    return {"cand_no": evt.index}


def _caption(c: int, view) -> str:
    score = f" · {view.scores[c]:.3f}" if view.scores is not None else ""
    return f"#{c}{score}" + (" ✓" if c == view.chosen else "")


def _info(session: Session, view, edit) -> str:
    keys = session.plan.keyframes
    if view.index in keys:
        return f"**Frame {view.index}** is keyframe {keyframe_name(keys.index(view.index))}."
    s, local = session.plan.locate(view.index)
    pairs = session.plan.counts
    steps = session.settings.num_inference_steps
    state = "generated" if view.generated else "reused from the cache"
    pin = (f" · pinned candidate {edit.candidate}" if edit is not None and edit.candidate
           is not None else "")
    seeds = ", ".join(str(seed) for seed in view.seeds) or "-"
    start, end = keyframe_name(s), keyframe_name((s + 1) % len(keys) if session.plan.loop
                                                 else s + 1)
    return (f"**Frame {view.index}** · segment {start} → {end} (frame {local} of "
            f"{pairs[s] - 1}) · position {view.position:.3f} · level {view.level} · noise: DDIM "
            f"index {view.ddim_index} of {steps} · {len(view.images)} candidate(s) · "
            f"{state}{pin}  \nseeds: {seeds}")
