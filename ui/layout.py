"""The studio's layout: which components exist and where they sit, for an artist at 1280 x 800.

The main column holds what is looked at: the keyframe row (add, reorder, pick), the timeline of
segment lengths, the prompts and the run buttons, the strip of frames across every segment and
the video. The side panel holds what is set: the inspector of a keyframe and its segment, the
open frame (candidates, overrides), the pose editor and the knobs, in tabs. Event wiring is
ui.wiring; the handlers (ui.handlers, ui.keyframes, ui.frame_panel, ui.pose_editor,
ui.projects) call interp.session; the library does the work.
"""
from __future__ import annotations

import atexit
from typing import Optional

import gradio as gr

from ui.frame_panel import EMPTY
from ui.handlers import Studio
from ui.keyframes import KeyframeRow
from ui.knobs import (CURVE_LABELS, attention_knobs, export_knobs, inversion_knobs,
                      output_knobs, pose_knobs, ranking_knobs, sampling_knobs, schedule_knobs,
                      text_knobs)
from ui.names import Components
from ui.plot import timeline_svg
from ui.pose_editor import TARGETS, PoseSide, pose_editor
from ui.projects import Projects
from ui.sessions import Sessions
from ui.wiring import wire
from interp import limits
from interp.forms import bounded_preset, form_from_export, form_from_settings
from interp.exports import remove_session_dirs
from interp.settings import PRESETS, Export, Settings
from interp.models.startup import model_settings

QUEUE_SIZE = 64               # events waiting at once; more are refused ("queue is full")
SESSION_TTL_S = 6 * 3600      # a session state not written for this long is deleted
CSS = """
#interp-banner { border-left: 4px solid #f59e0b; background: #f59e0b1a; padding: 4px 12px;
  border-radius: 6px; }
#interp-header p { margin: 0; }
#interp-status { min-height: 1.4em; font-weight: 600; }
#interp-progress { min-height: 2.4em; }
#interp-plot svg { width: 100%; height: auto; max-height: 260px; }
#interp-timeline svg { width: 100%; height: auto; display: block; }
.timeline-empty { opacity: .7; padding: 6px 2px; }
.plan-error { color: #b91c1c; padding: 8px; }
#interp-keyframes .grid-container, #interp-strip .grid-container { grid-auto-flow: column;
  grid-template-columns: none !important; grid-auto-columns: var(--thumb); overflow-x: auto;
  grid-template-rows: var(--thumb); }
#interp-keyframes { --thumb: 120px; }
#interp-strip { --thumb: 104px; }
#interp-main, #interp-side { gap: 10px; }
#interp-run-bar button, #interp-board-bar button { white-space: nowrap; }
#interp-board-bar { align-items: center; }
#interp-keyframes .caption-label, #interp-strip .caption-label,
#interp-candidates .caption-label { font-size: 0.72rem; }
#interp-candidates .grid-wrap { max-height: 260px; }
@media (max-width: 640px) { #interp-keyframes { --thumb: 84px; } #interp-strip { --thumb: 72px; } }
"""


def header_markdown(bundle) -> str:
    return (f"**interp** · latent diffusion interpolation · model **{bundle.name}** · device "
            f"**{bundle.device}** · dtype **{str(bundle.dtype).replace('torch.', '')}** · "
            f"<small>{bundle.identity}</small>")


def build_demo(engine, note: Optional[str] = None, defaults: Optional[Settings] = None,
               export: Optional[Export] = None, preset: Optional[str] = None) -> gr.Blocks:
    """The whole UI over one Interpolator (its bundle, frame store and CLIP scorer)."""
    _session_dirs_cleaned()
    sessions = Sessions()
    handlers = Handlers(engine, sessions)
    v = form_from_settings(defaults or initial_settings("draft", engine.bundle.name))
    e = form_from_export(export or Export())
    c = Components()
    with gr.Blocks(title="interp studio", analytics_enabled=False) as demo:
        # a session's files go when its tab goes (unload) and when Gradio deletes its state: an
        # hour after the tab closed, or SESSION_TTL_S after an event last wrote it
        c["state"] = gr.State(None, time_to_live=SESSION_TTL_S,
                              delete_callback=lambda s: s.close() if s is not None else None)
        c["header"] = gr.Markdown(header_markdown(engine.bundle), elem_id="interp-header")
        c["banner"] = gr.Markdown(note or "", elem_id="interp-banner", visible=bool(note))
        with gr.Row(equal_height=False):
            with gr.Column(scale=7, min_width=340, elem_id="interp-main"):
                _main(c, v, handlers.row.examples)
            with gr.Column(scale=4, min_width=320, elem_id="interp-side"):
                _preview(c, preset)
                _side(c, v, e, engine.bundle.controlnet is not None)
        wire(demo, c, handlers)
        demo.unload(sessions.end)
    sessions.bind(demo)
    demo.queue(default_concurrency_limit=4, max_size=QUEUE_SIZE)
    return demo


class Handlers:
    """Every handler object of the studio over one engine and one set of sessions."""

    def __init__(self, engine, sessions: Sessions) -> None:
        self.studio = Studio(engine, sessions)
        self.row = KeyframeRow(sessions, engine.bundle)
        self.poses = PoseSide(engine, sessions)
        self.projects = Projects(engine, sessions)
        self.sessions = sessions


def _session_dirs_cleaned() -> None:
    """Session folders left by processes that no longer run go now, this process's at exit."""
    remove_session_dirs()
    atexit.register(remove_session_dirs, own=True)


def initial_settings(name: str, model: str) -> Settings:
    """A preset with what the model needs, within this server's limits (interp.limits)."""
    return bounded_preset(name, **model_settings(model))


# -- the main column -------------------------------------------------------------------------------

def _main(c: Components, v: dict, examples: list) -> None:
    c["keyframes"] = gr.Gallery(label="Keyframes (click one to edit it)", columns=8, rows=1,
                                height=150, allow_preview=False, object_fit="cover",
                                elem_id="interp-keyframes")
    with gr.Row(equal_height=True, elem_id="interp-board-bar"):
        c["add"] = gr.UploadButton("Add images", file_count="multiple", file_types=["image"],
                                   elem_id="interp-add", min_width=120, scale=0, size="md")
        c["example"] = gr.Dropdown([("Load an example…", "")] + [(x[0], x[0]) for x in examples],
                                   value="", show_label=False, container=False, scale=1,
                                   min_width=200, elem_id="interp-example")
        c["loop"] = gr.Checkbox(False, label="Loop (last → first)", elem_id="interp-loop",
                                container=False, min_width=150, scale=0)
    c["timeline"] = gr.HTML(timeline_svg(None, None, None, None), elem_id="interp-timeline",
                            apply_default_css=False)
    with gr.Row(equal_height=True):
        c.update(text_knobs(v))
    with gr.Row(equal_height=True, elem_id="interp-run-bar"):
        c["run"] = gr.Button("Interpolate", variant="primary", elem_id="interp-run", scale=2,
                             min_width=120)
        c["stop"] = gr.Button("Cancel", variant="stop", elem_id="interp-cancel", scale=1,
                              min_width=90)
        c["pace"] = gr.Button("Even out pacing", elem_id="interp-pace", scale=1, min_width=140)
        c["progress"] = gr.HTML("", elem_id="interp-progress", apply_default_css=False, scale=2,
                                min_width=160)
    c["status"] = gr.Markdown("", elem_id="interp-status")
    c["strip"] = gr.Gallery(label="Frames of the whole timeline (click one to open it)",
                            columns=12, rows=1, height=136, allow_preview=False,
                            object_fit="contain", elem_id="interp-strip")


def _preview(c: Components, preset: Optional[str]) -> None:
    """The video of the last complete sequence, its downloads, the preset in use."""
    c["video"] = gr.Video(label="Video", elem_id="interp-video", loop=True, autoplay=True,
                          height=230)
    with gr.Row(equal_height=True, elem_id="interp-downloads"):
        for name, label in (("mp4", "MP4"), ("gif", "GIF"), ("zip", "ZIP"),
                            ("project", "Project")):
            c[name] = gr.DownloadButton(label, elem_id=f"interp-dl-{name}", size="sm",
                                        min_width=60)
        c["load"] = gr.UploadButton("Load project", file_types=[".json"], size="sm",
                                    min_width=90, elem_id="interp-load-project")
    c["preset"] = gr.Radio(sorted(PRESETS), value=preset, label="Preset", elem_id="interp-preset",
                           info="fills the knobs (the model's own needs stay)")


# -- the side panel ------------------------------------------------------------------------------

def _side(c: Components, v: dict, e: dict, has_controlnet: bool) -> None:
    with gr.Tabs(elem_id="interp-tabs") as c["side"]:
        with gr.Tab("Keyframe", id="keyframe"):
            _inspector(c)
        with gr.Tab("Frame", id="frame"):
            _frame_panel(c)
        with gr.Tab("Pose", id="pose"):
            _pose_panel(c, v, has_controlnet)
        with gr.Tab("Schedule", id="schedule"):
            c.update(schedule_knobs(v))
            c["keep_counts"] = gr.Checkbox(False, label="Even pacing keeps each segment's "
                                           "number of frames (timed keyframes)")
            c["plot"] = gr.HTML(elem_id="interp-plot", apply_default_css=False)
            with gr.Accordion("Plan of one segment as JSON", open=False):
                c["plan_json"] = gr.JSON(label="Plan")
        with gr.Tab("Sampling", id="sampling"):
            for title, group in (("Sampling", sampling_knobs), ("Text inversion", inversion_knobs),
                                 ("Ranking (CLIP)", ranking_knobs),
                                 ("Endpoint attention", attention_knobs)):
                with gr.Accordion(title, open=title == "Sampling"):
                    c.update(group(v))
        with gr.Tab("Output", id="output"):
            c.update(output_knobs(v))
            c.update(export_knobs(e))
            c["reexport"] = gr.Button("Update video and downloads", size="sm")
            with gr.Accordion("Run details", open=False):
                c["details"] = gr.JSON(label="Summary of the last render")


def _inspector(c: Components) -> None:
    with gr.Row(equal_height=False):
        c["kf_image"] = gr.Image(label="Keyframe", interactive=False, height=150, scale=1,
                                 show_label=False, elem_id="interp-kf-image")
        with gr.Column(scale=1, min_width=140):
            c["kf"] = gr.Dropdown([], value=None, label="Keyframe", elem_id="interp-kf")
            with gr.Row():
                c["kf_earlier"] = gr.Button("◀", size="sm", min_width=40, elem_id="interp-earlier")
                c["kf_later"] = gr.Button("▶", size="sm", min_width=40, elem_id="interp-later")
                c["kf_remove"] = gr.Button("✕", size="sm", min_width=40, elem_id="interp-remove")
            c["kf_replace"] = gr.UploadButton("Replace image", file_types=["image"], size="sm",
                                              elem_id="interp-replace")
    chars = limits.current().prompt_chars
    c["kf_prompt"] = gr.Textbox("", label="Keyframe prompt", max_length=chars,
                                placeholder="empty: the run's prompt", elem_id="interp-kf-prompt")
    c["kf_negative_prompt"] = gr.Textbox("", label="Keyframe negative prompt", max_length=chars,
                                         placeholder="empty: the run's negative prompt")
    c["seg_title"] = gr.Markdown("Add images to start.", elem_id="interp-seg-title")
    with gr.Row():
        c["seg_frames"] = gr.Number(0, precision=0, minimum=0, maximum=limits.current().frames,
                                    label="Frames", elem_id="interp-seg-frames")
        c["seg_duration"] = gr.Number(0, minimum=0, label="or seconds", step=0.1,
                                      elem_id="interp-seg-duration")
        c["seg_seed"] = gr.Number(None, precision=0, minimum=0, label="Seed")
    with gr.Row():
        c["seg_curve"] = gr.Dropdown([("as the run", "")] + [(label, m.value) for m, label in
                                                              CURVE_LABELS.items()],
                                     value="", label="Curve")
        c["seg_noise_min"] = gr.Number(0, minimum=0, maximum=0.99, step=0.01, label="Noise min")
        c["seg_noise_max"] = gr.Number(0, minimum=0, maximum=0.99, step=0.01, label="Noise max")


def _frame_panel(c: Components) -> None:
    c["frame_info"] = gr.Markdown(EMPTY)
    c["cand_gallery"] = gr.Gallery(label="Candidates (CLIP score, ✓ = in use)", columns=4,
                                   height=170, allow_preview=False, object_fit="contain",
                                   fit_columns=False, elem_id="interp-candidates")
    with gr.Row(equal_height=True):
        c["frame_no"] = gr.Number(None, precision=0, label="Frame", elem_id="interp-frame",
                                  min_width=80)
        c["cand_no"] = gr.Number(None, precision=0, label="Candidate", elem_id="interp-candidate",
                                 min_width=80)
        c["use"] = gr.Button("Use this candidate", elem_id="interp-use", scale=2)
    with gr.Accordion("Override this frame", open=True):
        c["frame_prompt"] = gr.Textbox("", label="Frame prompt", placeholder="empty: as the run")
        c["frame_negative_prompt"] = gr.Textbox("", label="Frame negative prompt")
        with gr.Row():
            c["frame_strength"] = gr.Slider(0, 1, 1.0, step=0.05, label="Prompt strength")
            c["frame_anchor"] = gr.Checkbox(False, label="Anchor the text path here")
        with gr.Row():
            c["frame_seed"] = gr.Number(None, precision=0, minimum=0,
                                        label="Frame seed (empty: derived)")
            c["frame_noise"] = gr.Slider(0, 0.99, 0, step=0.01, label="Noise (0: the level's)")
        c["frame_pose"] = gr.Textbox("", label="Frame pose (OpenPose JSON; empty: interpolated)",
                                     lines=2, max_lines=6, elem_id="interp-frame-pose")
        c["regen"] = gr.Button("Regenerate frame", variant="primary", elem_id="interp-regenerate")


def _pose_panel(c: Components, v: dict, has_controlnet: bool) -> None:
    c.update(pose_knobs(v, has_controlnet))
    c["target"] = gr.Radio(TARGETS, value="keyframe", label="Edit the pose of")
    c["editor"] = pose_editor()
    with gr.Row():
        c["show_pose"] = gr.Button("Load pose", size="sm", elem_id="interp-load-pose")
        c["reset_pose"] = gr.Button("Reset pose", size="sm")
    c["pose_json"] = gr.Textbox("", label="Pose JSON (validated)", lines=3, max_lines=10,
                                elem_id="interp-pose-json")


def launch_options() -> dict:
    """Options for demo.launch (Gradio 6 takes theme and css here); uploads up to the limit."""
    return dict(css=CSS, theme=gr.themes.Soft(),
                max_file_size=f"{limits.current().upload_mb}mb")
