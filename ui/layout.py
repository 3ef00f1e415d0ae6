"""The studio's layout and wiring: which components exist, where they sit, and which handler each
event calls. The handlers (ui.handlers, ui.pose_editor) call interp.session; the library does the work.
"""
from __future__ import annotations

import atexit
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import gradio as gr

from ui.handlers import SCHEDULE_FIELDS, Studio, errors, gpu
from ui.knobs import (attention_knobs, export_knobs, inversion_knobs, output_knobs, pose_knobs,
                      ranking_knobs, sampling_knobs, schedule_knobs, text_knobs)
from ui.pose_editor import TARGETS, PoseSide, pose_editor
from ui.sessions import Sessions
from interp import limits
from interp.forms import (EXPORT_FIELDS, FORM_FIELDS, bounded_preset, form_from_export,
                          form_from_settings)
from interp.exports import remove_session_dirs
from interp.settings import PRESETS, Export, Settings
from interp.models.startup import model_settings

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"
PHOTO_PAIRS = [("astronaut.jpg", "chelsea.jpg"), ("coffee.jpg", "rocket.jpg"),
               ("chelsea.jpg", "coffee.jpg")]
GPU_QUEUE = dict(concurrency_id="gpu", concurrency_limit=1)
QUEUE_SIZE = 64               # events waiting at once; more are refused ("queue is full")
SESSION_TTL_S = 6 * 3600      # a session state not written for this long is deleted
LIGHT = dict(concurrency_limit=None, show_progress="hidden")
CSS = """
#interp-banner { border-left: 4px solid #f59e0b; background: #f59e0b1a; padding: 6px 12px;
  border-radius: 6px; }
#interp-status { min-height: 1.6em; font-weight: 600; }
#interp-progress { min-height: 3.2em; }
#interp-plot svg { width: 100%; height: auto; max-height: 280px; }
.plan-error { color: #b91c1c; padding: 8px; }
#interp-strip .caption-label { font-size: 0.75rem; }
#interp-strip .grid-wrap, #interp-candidates .grid-wrap { min-height: 0 !important;
  max-height: 60vh; }
"""


def header_markdown(bundle) -> str:
    return (f"## interp · latent diffusion interpolation\n"
            f"model **{bundle.name}** · device **{bundle.device}** · dtype "
            f"**{str(bundle.dtype).replace('torch.', '')}** · <small>{bundle.identity}</small>")


def build_demo(engine, note: Optional[str] = None, defaults: Optional[Settings] = None,
               export: Optional[Export] = None) -> gr.Blocks:
    """The whole UI over one Interpolator (its bundle, frame store and CLIP scorer)."""
    _session_dirs_cleaned()
    sessions = Sessions()
    studio, poses = Studio(engine, sessions), PoseSide(engine.store, sessions)
    v = form_from_settings(defaults or initial_settings("draft", engine.bundle.name))
    ui = SimpleNamespace(knobs={})
    with gr.Blocks(title="interp studio", analytics_enabled=False) as demo:
        # a session's files go when its tab goes (unload) and when Gradio deletes its state: an
        # hour after the tab closed, or SESSION_TTL_S after an event last wrote it (API calls
        # without a heartbeat never close)
        ui.state = gr.State(None, time_to_live=SESSION_TTL_S,
                            delete_callback=lambda s: s.close() if s is not None else None)
        gr.Markdown(header_markdown(engine.bundle), elem_id="interp-header")
        gr.Markdown(note or "", elem_id="interp-banner", visible=bool(note))
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=320):
                _inputs(ui, v, example_rows(engine.bundle.name))
            with gr.Column(scale=4, min_width=320):
                _settings(ui, v, form_from_export(export or Export()))
        with gr.Row(equal_height=True):
            with gr.Column(scale=3, min_width=240):
                ui.status = gr.Markdown("", elem_id="interp-status")
            with gr.Column(scale=2, min_width=200):
                ui.progress = gr.HTML("", elem_id="interp-progress", apply_default_css=False)
        ui.strip = gr.Gallery(label="Frames (click one to open it)", columns=9, height="auto",
                              allow_preview=False, object_fit="contain", elem_id="interp-strip")
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=320):
                _frame_panel(ui)
            with gr.Column(scale=1, min_width=320):
                _pose_panel(ui, v, engine.bundle.controlnet is not None)
        _outputs(ui)
        _wire_inputs(demo, ui, studio)
        _wire_frames(ui, studio, poses)
        _wire_pose(ui, poses)
        _wire_outputs(ui, studio)
        demo.unload(sessions.end)
    sessions.bind(demo, (ui.image_a, ui.image_b))
    demo.queue(default_concurrency_limit=4, max_size=QUEUE_SIZE)
    return demo


def _session_dirs_cleaned() -> None:
    """Session folders left by processes that no longer run go now, this process's at exit."""
    remove_session_dirs()
    atexit.register(remove_session_dirs, own=True)


def initial_settings(name: str, model: str) -> Settings:
    """A preset with what the model needs, within this server's limits (interp.limits)."""
    return bounded_preset(name, **model_settings(model))


# -- layout ----------------------------------------------------------------------------------------

def example_rows(model: str) -> list:
    """Example inputs with their prompts: pairs of shapes with captions on the toy model (what it
    was trained on), public-domain photos otherwise."""
    if model == "toy":
        from interp.toy.data import caption, example_pairs
        def path(spec):
            return str(EXAMPLES / "toy" / f"{spec.colour}_{spec.shape}_{spec.background}.png")
        return [[path(a), path(b), caption(a), caption(b)] for a, b in example_pairs()]
    return [[str(EXAMPLES / a), str(EXAMPLES / b), "a photo", ""] for a, b in PHOTO_PAIRS]


def _inputs(ui, v: dict, examples: list) -> None:
    with gr.Row():
        ui.image_a = gr.Image(label="Image A", format="png", height=220, elem_id="interp-image-a")
        ui.image_b = gr.Image(label="Image B", format="png", height=220, elem_id="interp-image-b")
    ui.knobs.update(text_knobs(v))
    with gr.Row():
        ui.run = gr.Button("Interpolate", variant="primary", elem_id="interp-run")
        ui.stop = gr.Button("Cancel", variant="stop", elem_id="interp-cancel")
    ui.pace = gr.Button("Even out pacing (re-render with equal-looking steps)", size="sm",
                        elem_id="interp-pace")
    gr.Examples(examples, [ui.image_a, ui.image_b, ui.knobs["prompt"], ui.knobs["prompt_b"]],
                label="Examples (public domain / CC0, see assets/README.md)")


def _settings(ui, v: dict, e: dict) -> None:
    ui.preset = gr.Radio(sorted(PRESETS), label="Preset (fills the knobs below)")
    with gr.Accordion("Frames and schedule", open=True):
        ui.knobs.update(schedule_knobs(v))
        ui.plot = gr.HTML(elem_id="interp-plot", apply_default_css=False)
        with gr.Accordion("Plan as JSON", open=False):
            ui.plan_json = gr.JSON(label="Plan")
    for title, group in (("Sampling", sampling_knobs), ("Text inversion", inversion_knobs),
                         ("Ranking (CLIP)", ranking_knobs), ("Endpoint attention", attention_knobs)):
        with gr.Accordion(title, open=False):
            ui.knobs.update(group(v))
    with gr.Accordion("Output", open=False):
        ui.knobs.update(output_knobs(v))
        ui.exports = export_knobs(e)
        ui.reexport = gr.Button("Update video and downloads", size="sm")


def _frame_panel(ui) -> None:
    ui.frame_info = gr.Markdown("Click a frame in the strip to see its candidates.")
    with gr.Row():
        ui.frame_no = gr.Number(None, precision=0, label="Frame", elem_id="interp-frame")
        ui.cand_no = gr.Number(None, precision=0, label="Candidate", elem_id="interp-candidate")
    ui.candidates = gr.Gallery(label="Candidates (CLIP score, ✓ = in use)", columns=4,
                               height="auto", allow_preview=False, elem_id="interp-candidates")
    ui.use = gr.Button("Use this candidate", elem_id="interp-use")
    with gr.Accordion("Override this frame", open=True):
        ui.form = dict(
            prompt=gr.Textbox(label="Frame prompt", placeholder="empty: as the run"),
            negative_prompt=gr.Textbox(label="Frame negative prompt"),
            strength=gr.Slider(0, 1, 1.0, step=0.05, label="Prompt strength"),
            keyframe=gr.Checkbox(False, label="Keyframe (anchor the text path)"),
            seed=gr.Number(None, precision=0, minimum=0, label="Frame seed (empty: derived)"),
            noise=gr.Slider(0, 0.99, 0, step=0.01, label="Noise level (0: the level's)"),
            pose=gr.Textbox(label="Frame pose (OpenPose JSON; empty: interpolated)", lines=2,
                            max_lines=6, elem_id="interp-frame-pose"))
        ui.regen = gr.Button("Regenerate frame", variant="primary", elem_id="interp-regenerate")


def _pose_panel(ui, v: dict, has_controlnet: bool) -> None:
    gr.Markdown("### Pose")
    ui.knobs.update(pose_knobs(v, has_controlnet))
    ui.target = gr.Radio(TARGETS, value="a", label="Edit the pose of")
    ui.editor = pose_editor()
    with gr.Row():
        ui.show_pose = gr.Button("Load pose", size="sm", elem_id="interp-load-pose")
        ui.reset_pose = gr.Button("Reset pose", size="sm")
    ui.pose_json = gr.Textbox(label="Pose JSON (validated)", lines=3, max_lines=10,
                              elem_id="interp-pose-json")


def _outputs(ui) -> None:
    with gr.Row(equal_height=False):
        ui.video = gr.Video(label="Video", elem_id="interp-video", loop=True, autoplay=True,
                            height=320)
        with gr.Column(min_width=240):
            gr.Markdown("**Downloads** (of the last complete sequence)")
            ui.downloads = [gr.DownloadButton(label, elem_id=f"interp-dl-{k}", size="md")
                            for k, label in (("mp4", "MP4"), ("gif", "GIF"),
                                             ("zip", "Frames ZIP"), ("project", "Project file"))]
            gr.Markdown("**Project** (inputs, knobs, frame edits, seeds, poses)")
            ui.load = gr.UploadButton("Load project", file_types=[".json"], variant="primary",
                                      elem_id="interp-load-project")
    with gr.Accordion("Run details", open=False):
        ui.details = gr.JSON(label="Summary of the last render")


# -- wiring ----------------------------------------------------------------------------------------

def _render_event(ui) -> dict:
    """GPU events: one queue, progress next to the status line (the strip stays visible)."""
    return dict(GPU_QUEUE, outputs=[ui.state, ui.strip, ui.status, ui.video, *ui.downloads,
                                    ui.details], show_progress_on=[ui.progress])


def _pose_inputs(ui) -> list:
    return [ui.state, ui.image_a, ui.image_b, ui.target, ui.frame_no, ui.knobs["size"],
            ui.knobs["fit"], ui.knobs["pose_all_people"]]


def _frame_outputs(ui) -> list:
    return [ui.candidates, ui.frame_info, ui.cand_no, *ui.form.values()]


def _wire_inputs(demo, ui, studio: Studio) -> None:
    """Uploads are validated at once (interp's messages); the plot follows the schedule knobs."""
    for widget, which in ((ui.image_a, "a"), (ui.image_b, "b")):
        widget.upload(errors(studio.set_image), [ui.state, widget, gr.State(which)], ui.state,
                      preprocess=False, api_name=f"set_image_{which}", **LIGHT)
    gr.on([demo.load] + [ui.knobs[f].change for f in SCHEDULE_FIELDS], studio.plan,
          inputs_kwargs={f: ui.knobs[f] for f in SCHEDULE_FIELDS},
          outputs=[ui.plot, ui.plan_json], preprocess=False, api_name="plan", **LIGHT)
    ui.preset.input(errors(studio.apply_preset), ui.preset, [ui.knobs[f] for f in FORM_FIELDS],
                    api_name="apply_preset", **LIGHT)
    ui.stop.click(studio.cancel, ui.state, None, api_name="cancel", **LIGHT)


def _wire_frames(ui, studio: Studio, poses: PoseSide) -> None:
    """Interpolate, open a frame, pin a candidate, regenerate a frame."""
    go = ui.run.click(gpu(errors(studio.interpolate)), [ui.state, ui.image_a, ui.image_b],
                      inputs_kwargs=ui.knobs, preprocess=False, api_name="interpolate",
                      **_render_event(ui))
    ui.strip.select(studio.select_frame, ui.state, ui.frame_no, api_name="strip_select",
                    api_visibility="private", **LIGHT
                    ).then(errors(studio.show_frame), [ui.state, ui.frame_no], _frame_outputs(ui),
                           api_name="open_frame", api_visibility="private", **LIGHT
                           ).then(errors(poses.follow), _pose_inputs(ui),
                                  [ui.state, ui.editor, ui.pose_json], preprocess=False,
                                  api_name="pose_follow", api_visibility="private", **LIGHT)
    ui.frame_no.submit(errors(studio.show_frame), [ui.state, ui.frame_no], _frame_outputs(ui),
                       preprocess=False, api_name="select_frame", **LIGHT)
    ui.candidates.select(studio.select_candidate, None, ui.cand_no, api_name="candidate_select",
                         api_visibility="private", **LIGHT)
    pinned = ui.use.click(gpu(errors(studio.use_candidate)), [ui.state, ui.frame_no, ui.cand_no],
                          preprocess=False, api_name="use_candidate", **_render_event(ui))
    redone = ui.regen.click(gpu(errors(studio.regenerate_frame)),
                            [ui.state, ui.frame_no, *ui.form.values()], preprocess=False,
                            api_name="regenerate_frame", **_render_event(ui))
    paced = ui.pace.click(gpu(errors(studio.even_pacing)), ui.state, api_name="even_pacing",
                          **_render_event(ui))
    paced.then(studio.schedule_knobs, ui.state, [ui.knobs["curve"], ui.knobs["curve_points"]],
               api_name="schedule_knobs", api_visibility="private", **LIGHT)
    for n, event in enumerate((go, pinned, redone, paced)):
        event.then(errors(studio.refresh_frame), [ui.state, ui.frame_no], _frame_outputs(ui),
                   api_name=f"refresh_frame_{n}", api_visibility="private", **LIGHT)


def _wire_pose(ui, poses: PoseSide) -> None:
    """The pose editor: load a target, keep the browser's edits, typed JSON, reset."""
    shown = [ui.state, ui.editor, ui.pose_json]
    ui.target.change(errors(poses.load), _pose_inputs(ui), shown, preprocess=False,
                     api_name="load_pose", **LIGHT)
    ui.show_pose.click(errors(poses.load), _pose_inputs(ui), shown, preprocess=False,
                       api_name="show_pose", api_visibility="private", **LIGHT)
    ui.editor.change(errors(poses.edited), [ui.state, ui.editor],
                     [ui.state, ui.pose_json, ui.form["pose"]], api_name="pose_edited",
                     api_visibility="private", **LIGHT)
    ui.pose_json.blur(errors(poses.typed), [ui.state, ui.pose_json, ui.editor],
                      [*shown, ui.form["pose"]], api_name="set_pose", **LIGHT)
    ui.reset_pose.click(errors(poses.reset), _pose_inputs(ui), [*shown, ui.form["pose"]],
                        preprocess=False, api_name="reset_pose", **LIGHT)


def _wire_outputs(ui, studio: Studio) -> None:
    """Re-export with new export knobs; load a project, then render it (cached frames reused)."""
    ui.reexport.click(errors(studio.export), ui.state, [ui.video, *ui.downloads],
                      inputs_kwargs=ui.exports, preprocess=False, api_name="export", **LIGHT)
    restored = [ui.state, ui.image_a, ui.image_b, *[ui.knobs[f] for f in FORM_FIELDS],
                *[ui.exports[f] for f in EXPORT_FIELDS], ui.status]
    ui.load.upload(errors(studio.load_project), [ui.state, ui.load], restored,
                   api_name="load_project", **LIGHT
                   ).success(gpu(errors(studio.interpolate)), [ui.state, ui.image_a, ui.image_b],
                             inputs_kwargs=ui.knobs, preprocess=False,
                             api_name="interpolate_loaded", api_visibility="private",
                             **_render_event(ui))


def launch_options() -> dict:
    """Options for demo.launch (Gradio 6 takes theme and css here); uploads up to the limit."""
    return dict(css=CSS, theme=gr.themes.Soft(),
                max_file_size=f"{limits.current().upload_mb}mb")
