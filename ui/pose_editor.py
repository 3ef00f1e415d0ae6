"""The app's pose editor: a gr.HTML component running assets/pose_editor.js in the browser, and
its server side (load the pose of a keyframe or a frame; validate every edit as Pose JSON; keep it).

The editor's value is {image, pose, target, label, source}; target is "keyframe:<slot id>" (so
an edit reaches its keyframe even after the row was reordered) or "frame:<number>". The browser
sets source "user" on its edits, the server sends "server" (so echoes are not stored).
"""
from __future__ import annotations

import base64
import io
import json
import logging
from pathlib import Path
from typing import Any, Optional

import gradio as gr

from ui.errors import whole
from ui.sessions import Sessions
from interp.errors import InputError
from interp.pose.keypoints import Pose
from interp.forms import settings_from_form
from interp.session import Session
from interp.timeline import keyframe_name

log = logging.getLogger("interp.app")
ASSETS = Path(__file__).resolve().parents[1] / "assets"
TARGETS = [("Selected keyframe", "keyframe"), ("Selected frame", "frame")]
TEMPLATE = """<div class="pe-root">
  <div class="pe-toolbar">
    <button type="button" data-act="add-person">Add person</button>
    <button type="button" data-act="remove-person">Remove person</button>
    <button type="button" data-act="remove-joint">Remove joint</button>
    <select class="pe-missing" aria-label="add a missing joint"></select>
  </div>
  <div class="pe-stage"></div>
  <div class="pe-info"></div>
  <div class="pe-hint">Drag a joint to move it. Double-click a joint to remove it. To add one,
  pick it in the list, then click where it goes.</div>
</div>"""


def pose_editor() -> gr.HTML:
    """The editor component (its JS and CSS come from assets/)."""
    return gr.HTML(value=None, html_template=TEMPLATE,
                   css_template=(ASSETS / "pose_editor.css").read_text(encoding="utf-8"),
                   js_on_load=(ASSETS / "pose_editor.js").read_text(encoding="utf-8"),
                   apply_default_css=False, elem_id="pose-editor", label="Pose editor")


def data_url(image) -> str:
    """A JPEG data URL of an RGB image (the editor's background)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def pose_text(pose: Optional[Pose]) -> str:
    return "" if pose is None else json.dumps(pose.to_json())


def parse_pose(value: Any) -> Pose:
    """Pose JSON (text or dict) -> Pose; a clear gr.Error when it is not valid."""
    try:
        return Pose.from_json(value)
    except InputError as exc:
        raise gr.Error(str(exc)) from None


class PoseSide:
    """Server handlers of the pose section, over the engine (its model and store detect poses)."""

    def __init__(self, engine, sessions: Sessions) -> None:
        self.engine = engine
        self.sessions = sessions

    def load(self, session: Optional[Session], target: str = "keyframe", keyframe: Any = None,
             frame: Any = None, override: bool = True, request: gr.Request = None,
             **knobs) -> dict:
        """Editor value and JSON text for the chosen target (a keyframe or the selected frame);
        knobs: the size knobs and pose_all_people (the pose is drawn at the working size)."""
        session = self.sessions.get(session, request)
        where, label, image, pose, note = self._lookup(session, target, keyframe, frame, knobs,
                                                       override)
        if note:
            log.warning("%s", note)
            gr.Warning("Pose detection is unavailable here, so this pose starts empty: use "
                       "“Add person” and drag the joints into place.")
        value = {"image": data_url(image), "pose": pose.to_json(), "target": where,
                 "label": label, "source": "server"}
        return {"state": session, "editor": value, "pose_json": pose_text(pose)}

    def _lookup(self, session: Session, target: str, keyframe: Any, frame: Any, knobs: dict,
                override: bool) -> tuple:
        if target not in [t for _, t in TARGETS]:
            raise gr.Error(f"target={str(target)[:40]!r} is not allowed: choose one of "
                           f"{[t for _, t in TARGETS]}")
        if target == "frame":
            index = _frame_index(session, frame)
            if index in session.plan.keyframes:
                target, keyframe = "keyframe", session.plan.keyframes.index(index)
        if target == "keyframe":
            if keyframe is None or not session.slots:
                raise gr.Error("Add images and pick a keyframe first.")
            k = whole(keyframe, "keyframe")
            settings = settings_from_form(knobs)
            image = session.keyframe_image(k, settings, self.engine.bundle.native_size)
            pose, note = session.keyframe_pose(k, settings, self.engine)
            return (f"keyframe:{session.slots[k].id}", f"Keyframe {keyframe_name(k)}", image,
                    pose, note)
        view = session.frame(index)
        pose, note = session.frame_pose(index, self.engine, override)
        return f"frame:{index}", f"Frame {index}", view.image, pose.rescaled(*view.image.size), note

    def follow(self, session: Optional[Session], target: str = "frame", keyframe: Any = None,
               frame: Any = None, **knobs) -> dict:
        """A frame was opened: show its pose when the editor is on "Selected frame"."""
        if session is None or target != "frame" or frame is None:
            return {}
        return self.load(session, target, keyframe, frame, **knobs)

    def edited(self, session: Optional[Session], value: Any) -> dict:
        """The browser changed the pose: validate it, keep it, show its JSON."""
        if not isinstance(value, dict) or value.get("pose") is None:
            return {}
        pose = parse_pose(value["pose"])
        if value.get("source") != "user" or session is None:
            return {"pose_json": pose_text(pose)}
        if self._keep(session, str(value.get("target", "")), pose):
            return {"state": session, "pose_json": pose_text(pose)}
        return {"pose_json": pose_text(pose), "frame_pose": pose_text(pose)}  # a frame's override

    def typed(self, session: Optional[Session], text: str, value: Any) -> dict:
        """The JSON box was edited: validate, keep, and redraw the editor."""
        if not isinstance(value, dict):
            raise gr.Error("Choose whose pose to edit first.")
        pose = parse_pose(text)
        out = {"editor": {**value, "pose": pose.to_json(), "source": "server"},
               "pose_json": pose_text(pose)}
        if session is not None and self._keep(session, str(value.get("target", "")), pose):
            return {**out, "state": session}
        return {**out, "frame_pose": pose_text(pose)}

    def reset(self, session: Optional[Session], target: str = "keyframe", keyframe: Any = None,
              frame: Any = None, request: gr.Request = None, **knobs) -> dict:
        """Forget the drawn pose of the target (a keyframe: detect again; a frame: interpolate)."""
        session = self.sessions.get(session, request)
        if target == "keyframe" and keyframe is not None and session.slots:
            session.set_pose(whole(keyframe, "keyframe"), None)
        out = self.load(session, target, keyframe, frame, override=False, **knobs)
        return {**out, "frame_pose": ""} if target == "frame" else out

    @staticmethod
    def _keep(session: Session, target: str, pose: Pose) -> bool:
        """Store a keyframe's pose (True); False for a frame's (it goes to the override form)."""
        kind, _, ident = target.partition(":")
        if kind != "keyframe":
            return False
        if not ident.isdigit():
            raise gr.Error(f"target={target[:40]!r} is not a keyframe of this session")
        session.set_pose(session.index_of(int(ident)), pose)
        return True


def _frame_index(session: Session, frame: Any) -> int:
    """The number of a frame of the render shown (session.frame says when it is not there)."""
    if frame is None or session.plan is None:
        raise gr.Error("Click a frame in the strip first.")
    index = whole(frame, "frame")
    session.frame(index)
    return index
