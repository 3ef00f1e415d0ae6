"""The app's pose editor: a gr.HTML component running assets/pose_editor.js in the browser, and
its server side (load the pose of A, B or a frame; validate every edit as Pose JSON; keep it).

The editor's value is {image, pose, target, label, source}; the browser sets source "user" on
its edits, the server sends "server" (so echoes of what the server showed are not stored).
"""
from __future__ import annotations

import base64
import io
import json
import logging
from pathlib import Path
from typing import Any, Optional

import gradio as gr

from ui.handlers import _int
from ui.sessions import Sessions
from interp.errors import InputError
from interp.pose.keypoints import Pose
from interp.forms import settings_from_form
from interp.session import Session

log = logging.getLogger("interp.app")
ASSETS = Path(__file__).resolve().parents[1] / "assets"
TARGETS = [("Image A", "a"), ("Image B", "b"), ("Selected frame", "frame")]
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
    """Server handlers of the pose section, over the shared frame store (for detection)."""

    def __init__(self, store, sessions: Sessions) -> None:
        self.store = store
        self.sessions = sessions

    def load(self, session: Optional[Session], image_a: Any, image_b: Any, target: str,
             frame: Any, size: Any, fit: Any, pose_all_people: bool,
             override: bool = True, request: gr.Request = None) -> tuple:
        """Editor value and JSON text for the chosen target (A, B or the selected frame)."""
        session = self.sessions.get(session, request)
        for which, image in (("a", image_a), ("b", image_b)):
            if image is not None:
                self.sessions.load_image(session, which, image)
        which, label, image, pose, note = self._lookup(session, target, frame, size, fit,
                                                       pose_all_people, override)
        if note:
            log.warning("%s", note)
            gr.Warning("Pose detection is unavailable here, so this pose starts empty: use "
                       "“Add person” and drag the joints into place.")
        value = {"image": data_url(image), "pose": pose.to_json(), "target": which,
                 "label": label, "source": "server"}
        return session, value, pose_text(pose)

    def _lookup(self, session, target, frame, size, fit, all_people, override=True) -> tuple:
        if target not in [t for _, t in TARGETS]:
            raise gr.Error(f"target={str(target)[:40]!r} is not allowed: choose one of "
                           f"{[t for _, t in TARGETS]}")
        if session.image_a is None or session.image_b is None:
            raise gr.Error("Upload both images (Image A and Image B) first.")
        which = target
        if target == "frame":
            index = _frame_index(session, frame)
            last = len(session.plan.nodes) - 1
            which = "a" if index == 0 else "b" if index == last else "frame"
        if which in ("a", "b"):
            settings = settings_from_form({"size": size, "fit": fit,
                                           "pose_all_people": all_people})
            image = session.prepared(settings)[0 if which == "a" else 1]
            pose, note = session.endpoint_pose(which, settings, self.store)
            return which, f"Image {which.upper()}", image, pose, note
        view = session.frame(index)
        pose, note = session.frame_pose(index, session.settings, self.store, override)
        return f"frame:{index}", f"Frame {index}", view.image, pose.rescaled(*view.image.size), note

    def follow(self, session: Optional[Session], image_a: Any, image_b: Any, target: str,
               frame: Any, size: Any, fit: Any, pose_all_people: bool) -> tuple:
        """A frame was opened: show its pose when the editor is on "Selected frame"."""
        if target != "frame" or session is None:
            return session, gr.skip(), gr.skip()
        return self.load(session, image_a, image_b, target, frame, size, fit, pose_all_people)

    def edited(self, session: Optional[Session], value: Any) -> tuple:
        """The browser changed the pose: validate it, keep it, show its JSON."""
        if not isinstance(value, dict) or value.get("pose") is None:
            return session, gr.skip(), gr.skip()
        pose = parse_pose(value["pose"])
        if value.get("source") != "user" or session is None:
            return session, pose_text(pose), gr.skip()
        target = str(value.get("target", ""))
        if target in ("a", "b"):
            session.set_pose(target, pose)
            return session, pose_text(pose), gr.skip()
        return session, pose_text(pose), pose_text(pose)  # a frame's pose: into its override form

    def typed(self, session: Optional[Session], text: str, value: Any) -> tuple:
        """The JSON box was edited: validate, keep, and redraw the editor."""
        if not isinstance(value, dict):
            raise gr.Error("Choose whose pose to edit first.")
        pose = parse_pose(text)
        target = str(value.get("target", ""))
        if target in ("a", "b") and session is not None:
            session.set_pose(target, pose)
        frame_text = pose_text(pose) if target.startswith("frame") else gr.skip()
        return (session, {**value, "pose": pose.to_json(), "source": "server"}, pose_text(pose),
                frame_text)

    def reset(self, session: Optional[Session], image_a: Any, image_b: Any, target: str,
              frame: Any, size: Any, fit: Any, pose_all_people: bool,
              request: gr.Request = None) -> tuple:
        """Forget the drawn pose of the target (A/B: detect again; a frame: interpolate)."""
        session = self.sessions.get(session, request)
        if target in ("a", "b"):
            session.set_pose(target, None)
        session, value, text = self.load(session, image_a, image_b, target, frame, size, fit,
                                         pose_all_people, override=False, request=request)
        return session, value, text, "" if target == "frame" else gr.skip()


def _frame_index(session: Session, frame: Any) -> int:
    if frame is None or session.plan is None:
        raise gr.Error("Click a frame in the strip first.")
    index = _int(frame, "frame")
    if index not in session.frames:
        raise gr.Error(f"Frame {index} is not available yet.")
    return index
