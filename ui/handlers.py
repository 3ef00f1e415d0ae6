"""Rendering handlers of the studio: Interpolate, pin a candidate, regenerate a frame, even pacing,
cancel. Thin calls into interp.session.Session; interp's errors become gr.Error / gr.Warning (see
ui.errors). Each handler yields {component name: value} (ui.names)."""
from __future__ import annotations

from typing import Any, Optional

import gradio as gr

from ui.errors import need_render, whole
from ui.sessions import Sessions
from ui.zerogpu import ZeroGpu, on_zero_gpu
from interp.events import DenoiseStep, FrameReady, StageProgress
from interp.forms import edit_from_form, settings_from_form
from interp.session import Session
from interp.text import cut_words
from interp.timeline import keyframe_name

FILES = ("video", "mp4", "gif", "zip", "project")     # what a finished render exports
RENDER = ("state", "strip", "status", *FILES, "details")


class Studio:
    """Handlers bound to the process's one Interpolator (model, frame store, scorer)."""

    def __init__(self, engine, sessions: Optional[Sessions] = None) -> None:
        self.engine = engine
        self.sessions = sessions or Sessions()
        self.model = engine.bundle.identity
        self.zero = ZeroGpu(engine) if on_zero_gpu() else None   # a ZeroGPU Space's GPU calls

    def _runner(self, session: Session, settings, frame: Optional[int] = None,
                pin: bool = False, invert: bool = True):
        """Where the render runs: here, or on ZeroGPU in its GPU worker (budget checked)."""
        if self.zero is None:
            return None
        return self.zero.runner(session, settings, frame, pin, invert)

    def interpolate(self, session: Optional[Session], loop: Any = None, progress=gr.Progress(),
                    request: gr.Request = None, **knobs):
        """Render the session's keyframes with the knobs (cached frames are reused)."""
        session = self.sessions.get(session, request)
        if loop is not None:
            session.loop = bool(loop)
        settings = settings_from_form(knobs)
        session.timeline(settings)      # at least two keyframes, within the limit
        tokenizer = self.engine.bundle.tokenizer
        warn_cut_prompts(tokenizer, settings.prompt, "Prompt", settings.negative_prompt,
                         "Negative prompt")
        for k, slot in enumerate(session.slots):
            warn_cut_prompts(tokenizer, slot.prompt, f"Keyframe {keyframe_name(k)}'s prompt",
                             slot.negative_prompt, f"Keyframe {keyframe_name(k)}'s negative prompt")
        runner = self._runner(session, settings)
        yield from self._render(session, progress,
                                lambda: session.stream(self.engine, settings, runner))

    def use_candidate(self, session: Optional[Session], frame: Any, candidate: Any,
                      progress=gr.Progress(), request: gr.Request = None):
        """Pin a candidate of a frame and re-render (its descendants regenerate)."""
        session = need_render(self.sessions.get(session, request))
        index = whole(frame, "frame")
        runner = self._runner(session, session.settings, index, pin=True)   # before the edit
        session.pin(index, whole(candidate, "candidate"))
        yield from self._render(session, progress,
                                lambda: session.stream(self.engine, runner=runner))

    def regenerate_frame(self, session: Optional[Session], frame: Any, prompt: str = "",
                         negative_prompt: str = "", strength: float = 1.0, keyframe: bool = False,
                         seed: Any = None, noise: Any = 0, pose: str = "",
                         progress=gr.Progress(), request: gr.Request = None):
        """Apply a frame's overrides (an unchanged form gives a new seed) and re-render."""
        session = need_render(self.sessions.get(session, request))
        edit = edit_from_form(prompt, negative_prompt, strength, keyframe, seed, noise, pose)
        warn_cut_prompts(self.engine.bundle.tokenizer, edit.prompt, "Frame prompt",
                         edit.negative_prompt, "Frame negative prompt")
        index = whole(frame, "frame")
        runner = self._runner(session, session.settings, index)             # before the edit
        session.edit_frame(index, edit)
        yield from self._render(session, progress,
                                lambda: session.stream(self.engine, runner=runner))

    def even_pacing(self, session: Optional[Session], keep_counts: bool = False,
                    progress=gr.Progress(), request: gr.Request = None):
        """Re-render the last sequence with frames moved so adjacent steps look equally large
        across the whole timeline (keep_counts: each segment keeps its number of frames)."""
        session = need_render(self.sessions.get(session, request))
        runner = self._runner(session, session.settings, invert=False)
        yield from self._render(session, progress,
                                lambda: session.respace(self.engine, bool(keep_counts), None,
                                                        runner))

    def cancel(self, session: Optional[Session]) -> None:
        if session is not None:
            session.cancel()

    def _render(self, session: Session, progress, start):
        progress(0.0, desc="preparing")
        events = start()          # started now, so Cancel can reach it
        cleared = dict.fromkeys(FILES)       # no video or downloads until complete
        try:
            yield {"state": session, "status": "rendering…", **cleared}
            done = 0
            for event in events:
                done += isinstance(event, FrameReady)
                _progress(progress, session, event, done)
                if isinstance(event, FrameReady) and _showable(session, event.index):
                    yield {"strip": strip(session), "status": session.status()}
        except GeneratorExit:     # the page went away: stop the render too
            session.cancel()
            raise
        for note in session.notes:
            gr.Warning(note)
        if session.cancelled:
            gr.Warning("Cancelled: the finished frames are kept.")
            yield {"strip": strip(session), "status": session.status(), **cleared}
            return
        for warning in session.result.warnings:
            gr.Warning(warning)
        paths = session.write_exports(model=self.model)
        yield {"state": session, "strip": strip(session), "status": session.status(),
               **export_files(paths), "details": session.result.summary()}


def _showable(session: Session, index: int) -> bool:
    """A new frame worth a strip update: an in-between one, or the last keyframe to arrive (the
    keyframes show together)."""
    keys = session.plan.keyframes if session.plan is not None else ()
    return index not in keys or all(k in session.frames for k in keys)


def _progress(progress, session: Session, event: Any, done: int) -> None:
    """gr.Progress from the engine's events: a stage's steps, or frames done + the step."""
    if isinstance(event, StageProgress):
        progress((event.step, event.total), desc=f"{event.stage}: {event.step}/{event.total}")
    elif isinstance(event, DenoiseStep) and session.plan is not None:
        inner = max(session.plan.total - len(session.plan.keyframes), 1)
        progress((done + event.step / event.total) / inner,
                 desc=f"frame {event.index}: step {event.step}/{event.total}")


def export_files(paths: dict) -> dict:
    """The download widgets' values: the MP4 also plays in the video widget."""
    return {"video": str(paths["mp4"]), **{k: str(paths[k]) for k in FILES[1:]}}


def strip(session: Session) -> list:
    """The frame strip across all segments: each finished frame's chosen image, captioned with
    its number, its keyframe letter and whether it is pinned or edited."""
    keys = session.plan.keyframes if session.plan is not None else ()
    def caption(i):
        if i in keys:
            return f"{i} · {keyframe_name(keys.index(i))}"
        edit = session.edit_of(i)
        mark = " · pinned" if edit is not None and edit.candidate is not None else (
            " · edited" if edit is not None else "")
        return f"{i}{mark}"
    return [(f.image, caption(i)) for i, f in sorted(session.frames.items())]


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
