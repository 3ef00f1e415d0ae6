"""The studio's knob-level handlers: the live plan plot, presets, re-exporting with new export
knobs, and loading a project file. Each returns {component name: value} (ui.names)."""
from __future__ import annotations

from typing import Any, Optional

import gradio as gr

from ui.errors import file_path
from ui.handlers import export_files
from ui.keyframes import board
from ui.knobs import STUDIO_FIELDS
from ui.plot import plan_error, plan_svg
from ui.sessions import Sessions
from interp.forms import (EXPORT_FIELDS, bounded_preset, export_from_form, form_from_export,
                          form_from_settings, settings_from_form)
from interp.plan import make_plan
from interp.project import load_project
from interp.scheduler import ddim_timesteps
from interp.session import Session
from interp.settings import PRESETS
from interp.models.startup import model_settings


class Projects:
    """Plot, presets, exports and project files over the process's engine."""

    def __init__(self, engine, sessions: Sessions) -> None:
        self.engine = engine
        self.sessions = sessions
        self.model = engine.bundle.identity
        self.needs = model_settings(engine.bundle.name)   # e.g. the toy model's size and guidance

    def plan(self, **knobs) -> dict:
        """The live plot (SVG) and the plan rows for the schedule knobs (one segment)."""
        try:
            settings = settings_from_form(knobs)
            steps = settings.num_inference_steps
            timesteps = ddim_timesteps(steps, self.engine.bundle.scheduler_config).tolist()
            plan = make_plan(settings, timesteps)
        except (ValueError, TypeError) as exc:
            return {"plot": plan_error(str(exc)), "plan_json": None}
        return {"plot": plan_svg(plan, steps), "plan_json": plan.to_json()}

    def apply_preset(self, name: str) -> dict:
        """Knob values of a preset (only the knobs the preset sets change; what the model needs,
        e.g. the toy model's guidance, stays)."""
        values = form_from_settings(bounded_preset(name, **self.needs))
        return {f: values[f] for f in STUDIO_FIELDS if f in PRESETS[name] and f not in self.needs}

    def export(self, session: Optional[Session], request: gr.Request = None, **export) -> dict:
        """Write MP4 / GIF / ZIP / project again with the current export knobs."""
        knobs = export_from_form(export)      # bad knobs are named even before a render
        session = self.sessions.get(session, request)
        if session.done is None:
            raise gr.Error("Nothing rendered yet: press Interpolate first.")
        return export_files(session.write_exports(knobs, model=self.model))

    def load_project(self, session: Optional[Session], file: Any,
                     request: gr.Request = None) -> dict:
        """Restore keyframes, segments, knobs, edits and poses from a project file (the render
        that follows reuses its cached frames)."""
        session = self.sessions.get(session, request)
        path = file_path(file)
        if path is None:
            raise gr.Error("Choose a project file (.json) to load.")
        project = load_project(self.sessions.project_path(session, path))
        session.restore(project)
        knobs, export = form_from_settings(project.settings), form_from_export(project.export)
        if project.model and project.model != self.model:
            gr.Warning(f"This project was made with {project.model}; this app runs "
                       f"{self.model}, so frames will differ.")
        count = len(project.timeline.keyframes)
        return {**board(session, 0), **{f: knobs[f] for f in STUDIO_FIELDS},
                **{f: export[f] for f in EXPORT_FIELDS},
                "status": f"Project loaded ({count} keyframes, {len(project.edits)} frame "
                          "edit(s)); rendering — cached frames are reused."}
