"""Event handlers of the app: thin calls into interp.session.Session, with interp's errors turned
into gr.Error / gr.Warning. No algorithm lives here; the library does the work.
"""
from __future__ import annotations

import functools
import inspect
import json
import logging
from typing import Any, Optional

import gradio as gr

from ui.plot import plan_error, plan_svg
from ui.sessions import Sessions
from interp.errors import InputError, InterpError
from interp.events import DenoiseStep, FrameReady, StageProgress
from interp.plan import make_plan
from interp.scheduler import ddim_timesteps
from interp.project import load_project
from interp.session import Session
from interp.forms import (EXPORT_FIELDS, FORM_FIELDS, bounded_preset, edit_from_form,
                          export_from_form, form_from_export, form_from_settings,
                          settings_from_form)
from interp.settings import PRESETS
from interp.text import cut_words
from interp.video import FFmpegError
from interp.models.startup import model_settings

log = logging.getLogger("interp.app")
OOM_HINT = ("The GPU ran out of memory. Lower Size or Candidates, or restart the app with "
            "--attention-slicing / --vae-tiling / --cpu-offload.")
SCHEDULE_FIELDS = ("frames", "curve", "curve_alpha", "curve_beta", "curve_points", "noise_min",
                   "noise_max", "noise_shape", "num_inference_steps")


def user_error(exc: BaseException) -> gr.Error:
    """The gr.Error a user sees for an exception from the library."""
    if isinstance(exc, gr.Error):
        return exc
    if type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower():
        return gr.Error(OOM_HINT)
    if isinstance(exc, (InterpError, ValueError, TypeError)):
        return gr.Error(str(exc))
    if isinstance(exc, (OSError, FFmpegError)):
        log.error("could not write files", exc_info=exc)
        cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else "see the server log"
        return gr.Error(f"The server could not write the video and downloads ({cause}); the "
                        "frames are kept: try “Update video and downloads” later.")
    log.error("unexpected error", exc_info=exc)
    return gr.Error(f"Unexpected error ({type(exc).__name__}: {str(exc)[:200]}); see the server "
                    "log.")


def errors(fn):
    """Wrap a handler (plain or generator) so library errors reach the user as gr.Error."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise user_error(exc) from exc
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise user_error(exc) from exc
    return wrapper


def gpu(fn):
    """spaces.GPU on a Hugging Face ZeroGPU Space (when `spaces` is importable), else fn itself."""
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(fn)


def file_path(payload: Any) -> Optional[str]:
    """A file widget's value (path string, FileData dict or tempfile object) -> its path."""
    if payload is None or isinstance(payload, str):
        return payload
    if isinstance(payload, dict):
        return payload.get("path")
    return getattr(payload, "name", None)


class Studio:
    """Handlers bound to the process's one Interpolator (model, frame store, scorer)."""

    RENDER_OUTPUTS = 9  # state, strip, status, video, mp4, gif, zip, project, details

    def __init__(self, engine, sessions: Optional[Sessions] = None) -> None:
        self.engine = engine
        self.sessions = sessions or Sessions()
        self.model = engine.bundle.identity
        self.needs = model_settings(engine.bundle.name)   # e.g. the toy model's size and guidance

    # -- inputs, plan, presets -------------------------------------------------------------------
    def set_image(self, session: Optional[Session], image: Any, which: str,
                  request: gr.Request = None) -> Session:
        """Validate and keep an uploaded input (interp's message for a bad file)."""
        session = self.sessions.get(session, request)
        self.sessions.load_image(session, which, image)
        return session

    def plan(self, **knobs) -> tuple:
        """The live plot (SVG) and the plan rows for the schedule knobs."""
        try:
            settings = settings_from_form(knobs)
            steps = settings.num_inference_steps
            timesteps = ddim_timesteps(steps, self.engine.bundle.scheduler_config).tolist()
            plan = make_plan(settings, timesteps)
        except (ValueError, TypeError) as exc:
            return plan_error(str(exc)), None
        return plan_svg(plan, steps), plan.to_json()

    def apply_preset(self, name: str) -> list:
        """Knob values of a preset (only the knobs the preset sets change; what the model needs,
        e.g. the toy model's guidance, stays)."""
        values = form_from_settings(bounded_preset(name, **self.needs))
        return [values[f] if f in PRESETS[name] and f not in self.needs else gr.skip()
                for f in FORM_FIELDS]

    # -- rendering -------------------------------------------------------------------------------
    def interpolate(self, session: Optional[Session], image_a: Any, image_b: Any,
                    progress=gr.Progress(), request: gr.Request = None, **knobs):
        """Render the sequence for the current inputs and knobs (cached frames are reused)."""
        session = self.sessions.get(session, request)
        self.sessions.load_image(session, "a", image_a)
        self.sessions.load_image(session, "b", image_b)
        settings = settings_from_form(knobs)
        warn_cut_prompts(self.engine.bundle.tokenizer, settings.prompt_pair[0], "Prompt A",
                         settings.prompt_b, "Prompt B", settings.negative_prompt,
                         "Negative prompt")
        yield from self._render(session, progress, settings)

    def use_candidate(self, session: Optional[Session], frame: Any, candidate: Any,
                      progress=gr.Progress(), request: gr.Request = None):
        """Pin a candidate of a frame and re-render (its descendants regenerate)."""
        session = _need(self.sessions.get(session, request))
        session.pin(_int(frame, "frame"), _int(candidate, "candidate"))
        yield from self._render(session, progress)

    def regenerate_frame(self, session: Optional[Session], frame: Any, prompt: str,
                         negative_prompt: str, strength: float, keyframe: bool, seed: Any,
                         noise: Any, pose: str, progress=gr.Progress(),
                         request: gr.Request = None):
        """Apply a frame's overrides (an unchanged form gives a new seed) and re-render."""
        session = _need(self.sessions.get(session, request))
        edit = edit_from_form(prompt, negative_prompt, strength, keyframe, seed, noise, pose)
        warn_cut_prompts(self.engine.bundle.tokenizer, edit.prompt, "Frame prompt",
                         edit.negative_prompt, "Frame negative prompt")
        session.edit_frame(_int(frame, "frame"), edit)
        yield from self._render(session, progress)

    def even_pacing(self, session: Optional[Session], progress=gr.Progress(),
                    request: gr.Request = None):
        """Re-render the last sequence with frames moved so adjacent steps look equally large."""
        session = _need(self.sessions.get(session, request))
        yield from self._render(session, progress, respace=True)

    def schedule_knobs(self, session: Optional[Session]) -> tuple:
        """Curve and control points of the session's last render (after even pacing)."""
        if session is None or session.settings is None:
            return gr.skip(), gr.skip()
        values = form_from_settings(session.settings)
        return values["curve"], values["curve_points"]

    def cancel(self, session: Optional[Session]) -> None:
        if session is not None:
            session.cancel()

    def _render(self, session: Session, progress, settings=None, respace: bool = False):
        skip = [gr.skip()] * (self.RENDER_OUTPUTS - 3)
        done = 0
        progress(0.0, desc="preparing")
        # started now, so Cancel can reach it
        events = session.respace(self.engine) if respace else session.stream(self.engine, settings)
        cleared = [None] * (self.RENDER_OUTPUTS - 3)   # no video/downloads until complete
        try:
            yield session, gr.skip(), "rendering…", *cleared  # the session is in the state now
            for event in events:
                inner = max(len(session.plan.nodes) - 2, 1)
                if isinstance(event, StageProgress):
                    progress((event.step, event.total),
                             desc=f"{event.stage}: {event.step}/{event.total}")
                elif isinstance(event, DenoiseStep):
                    progress((done + event.step / event.total) / inner,
                             desc=f"frame {event.index}: step {event.step}/{event.total}")
                elif isinstance(event, FrameReady):
                    done += 1
                    yield session, self.strip(session), session.status(), *skip
        except GeneratorExit:  # the page went away: stop the render too
            session.cancel()
            raise
        for note in session.notes:
            gr.Warning(note)
        if session.cancelled:
            gr.Warning("Cancelled: the finished frames are kept.")
            yield session, self.strip(session), session.status(), *cleared
            return
        for warning in session.result.warnings:
            gr.Warning(warning)
        yield (session, self.strip(session), session.status(),
               *self._files(session.write_exports(model=self.model)), session.result.summary())

    @staticmethod
    def _files(paths: dict) -> list:
        return [str(paths[k]) for k in ("mp4", "mp4", "gif", "zip", "project")]

    @staticmethod
    def strip(session: Session) -> list:
        """The frame strip: each finished frame's chosen image, in order."""
        def caption(i):
            edit = session.edits.get(i)
            mark = " · pinned" if edit is not None and edit.candidate is not None else (
                " · edited" if edit is not None else "")
            return f"frame {i}{mark}"
        return [(v.image, caption(i)) for i, v in sorted(session.frames.items())]

    # -- frame panel -----------------------------------------------------------------------------
    def select_frame(self, session: Optional[Session], evt: gr.SelectData) -> Any:
        """Strip click -> frame number."""
        frames = sorted(session.frames) if session is not None else []
        if not isinstance(evt.index, int) or not 0 <= evt.index < len(frames):
            return gr.skip()
        return frames[evt.index]

    def show_frame(self, session: Optional[Session], frame: Any) -> tuple:
        """Candidates (with CLIP scores), details and the override form of one frame."""
        if session is None or frame is None or session.plan is None:
            return ([], "Click a frame in the strip to see its candidates.", None,
                    "", "", 1.0, False, None, 0, "")
        index = _int(frame, "frame")
        view = session.frame(index)
        session.selected = index
        last = len(session.plan.nodes) - 1
        gallery = [(im, _candidate_caption(c, view)) for c, im in enumerate(view.images)]
        edit = session.edits.get(index)
        info = _frame_info(session, view, last, edit)
        if edit is None or index in (0, last):
            return gallery, info, view.chosen, "", "", 1.0, False, None, 0, ""
        return (gallery, info, view.chosen, edit.prompt or "", edit.negative_prompt or "",
                edit.strength, edit.keyframe, edit.seed, edit.noise or 0,
                json.dumps(edit.pose) if edit.pose else "")

    def refresh_frame(self, session: Optional[Session], frame: Any) -> tuple:
        """After a render: refresh the open frame (none is open until the user picks one)."""
        if session is None or session.selected is None or session.selected not in session.frames:
            return self.show_frame(None, None)
        return self.show_frame(session, frame)

    def select_candidate(self, evt: gr.SelectData) -> int:
        return evt.index

    # -- output and projects -----------------------------------------------------------------------
    def export(self, session: Optional[Session], request: gr.Request = None, **export) -> list:
        """Write MP4 / GIF / ZIP / project again with the current export knobs."""
        knobs = export_from_form(export)      # bad knobs are named even before a render
        session = self.sessions.get(session, request)
        if session.done is None:
            raise gr.Error("Nothing rendered yet: press Interpolate first.")
        paths = session.write_exports(knobs, model=self.model)
        return self._files(paths)

    def load_project(self, session: Optional[Session], file: Any,
                     request: gr.Request = None) -> list:
        """Restore inputs, knobs, edits and poses from a project file."""
        session = self.sessions.get(session, request)
        path = file_path(file)
        if path is None:
            raise gr.Error("Choose a project file (.json) to load.")
        project = load_project(self.sessions.project_path(session, path))
        session.restore(project)
        knobs = form_from_settings(project.settings)
        export = form_from_export(project.export)
        note = (f"Project loaded ({len(project.edits)} frame edit(s)); rendering — cached "
                f"frames are reused.")
        if project.model and project.model != self.model:
            gr.Warning(f"This project was made with {project.model}; this app runs "
                       f"{self.model}, so frames will differ.")
        return [session, project.image_a, project.image_b, *[knobs[f] for f in FORM_FIELDS],
                *[export[f] for f in EXPORT_FIELDS], note]


def _need(session: Optional[Session]) -> Session:
    if session is None or session.settings is None:
        raise gr.Error("Nothing rendered yet: press Interpolate first.")
    return session


def _int(value: Any, name: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{name} must be a whole number, got {value!r}") from None
    if not number.is_integer():
        raise gr.Error(f"{name} must be a whole number, got {value!r}")
    return int(number)


def _candidate_caption(c: int, view) -> str:
    score = f" · {view.scores[c]:.3f}" if view.scores is not None else ""
    return f"#{c}{score}" + (" ✓" if c == view.chosen else "")


def _frame_info(session: Session, view, last: int, edit) -> str:
    if view.index in (0, last):
        return f"**Frame {view.index}** is input {'A' if view.index == 0 else 'B'}."
    steps = session.settings.num_inference_steps
    state = "generated" if view.generated else "reused from the cache"
    pin = (f" · pinned candidate {edit.candidate}" if edit is not None and edit.candidate
           is not None else "")
    seeds = ", ".join(str(s) for s in view.seeds) or "-"
    return (f"**Frame {view.index}** · position {view.position:.3f} · level {view.level} · "
            f"noise: DDIM index {view.ddim_index} of {steps} · {len(view.images)} candidate(s)"
            f" · {state}{pin}  \nseeds: {seeds}")


def warn_cut_prompts(tokenizer, *pairs) -> None:
    """A gr.Warning for each prompt (text, label, text, label, ...) longer than the text
    encoder's window, with the number of cut words and the first few."""
    window = int(tokenizer.model_max_length)
    for text, label in zip(pairs[::2], pairs[1::2]):
        cut = cut_words(tokenizer, text) if text else []
        if cut:
            few = " ".join(cut[:8])[:80]
            gr.Warning(f"{len(cut)} words of {label} were cut at CLIP's {window}-token window: "
                       f"{few}{'…' if len(cut) > 8 or len(few) == 80 else ''}")
