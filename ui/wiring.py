"""Which handler each event of the studio calls, with named inputs and outputs (ui.names).

GPU work (render, pin, regenerate, even pacing) runs through one queue; everything else is light
and runs at once. API names are the endpoints gradio_client sees (README: "Named API endpoints").
"""
from __future__ import annotations

import gradio as gr

from ui.errors import errors
from ui.frame_panel import SHOWN, refresh_frame, select_candidate, select_frame, show_frame
from ui.handlers import RENDER
from ui.keyframes import BOARD, SEGMENT
from ui.knobs import STUDIO_FIELDS
from ui.names import Components
from interp.forms import EXPORT_FIELDS

GPU_QUEUE = dict(concurrency_id="gpu", concurrency_limit=1)
LIGHT = dict(concurrency_limit=None, show_progress="hidden")
SCHEDULE = ("frames", "curve", "curve_alpha", "curve_beta", "curve_points", "noise_min",
            "noise_max", "noise_shape", "num_inference_steps")
SIZES = ("size", "width", "height", "fit")
POSE_KNOBS = (*SIZES, "pose_all_people")
SEGMENT_PARAMS = ("frames", "duration", "curve", "noise_min", "noise_max", "seed")


def wire(demo, c: Components, h) -> None:
    """All events of the layout `c` to the handlers `h` (ui.layout.Handlers)."""
    _knobs(demo, c, h)      # first: its public names (plan, timeline) before chained steps
    _keyframes(c, h)
    _render(c, h)
    _frames(c, h)
    _pose(c, h)
    _files(c, h)


def _on(c: Components, trigger, fn, inputs=(), outputs=(), api=None, private=False, **extra):
    """trigger(fn) with inputs/outputs given by name (kwargs: {param: name} in `kwargs`)."""
    kwargs = extra.pop("kwargs", None)
    options = {**LIGHT, **extra}
    return trigger(c.named(errors(fn), outputs), c(*inputs), c(*outputs),
                   inputs_kwargs=c.kwargs(**kwargs) if kwargs else None, api_name=api,
                   api_visibility="private" if private else "public", **options)


def _then(c: Components, event, fn, inputs=(), outputs=(), kwargs=None, how="then", **extra):
    """A step chained after `event` (not an API endpoint of its own)."""
    options = {**LIGHT, **extra}
    return getattr(event, how)(c.named(errors(fn), outputs), c(*inputs), c(*outputs),
                               inputs_kwargs=c.kwargs(**kwargs) if kwargs else None,
                               api_visibility="private", **options)


def _timeline_then(c: Components, h, event):
    """Refresh the timeline after an event that changes keyframes or lengths."""
    return _then(c, event, h.row.timeline, ("state", "fps", "kf"), ("timeline",),
                 {n: n for n in ("frames", *SIZES)})


def _keyframes(c: Components, h) -> None:
    """The keyframe row and the inspector; each change redraws the timeline."""
    row = h.row
    c["minus"], c["plus"] = gr.State(-1), gr.State(1)
    added = _on(c, c["add"].upload, row.add, ("state", "add"), BOARD, "add_keyframes",
                preprocess=False)
    example = _on(c, c["example"].input, row.example, ("state", "example"), (*BOARD, "prompt"),
                  "load_example")
    picked = _on(c, c["keyframes"].select, row.select, ("state",), (*BOARD, "side"),
                 "keyframe_select", private=True)
    raw = dict(preprocess=False)      # the handlers check the raw values and name the problem
    chosen = _on(c, c["kf"].input, row.choose, ("state", "kf"), BOARD, "select_keyframe", **raw)
    earlier = _on(c, c["kf_earlier"].click, row.move, ("state", "kf", "minus"), BOARD,
                  "move_keyframe_earlier", **raw)
    later = _on(c, c["kf_later"].click, row.move, ("state", "kf", "plus"), BOARD,
                "move_keyframe_later", **raw)
    removed = _on(c, c["kf_remove"].click, row.remove, ("state", "kf"), BOARD, "remove_keyframe",
                  **raw)
    replaced = _on(c, c["kf_replace"].upload, row.replace, ("state", "kf", "kf_replace"), BOARD,
                   "replace_keyframe", preprocess=False)
    looped = _on(c, c["loop"].input, row.set_loop, ("state", "loop", "kf"), BOARD, "set_loop",
                 **raw)
    edit = dict(kwargs={"prompt": "kf_prompt", "negative_prompt": "kf_negative_prompt",
                        **{p: f"seg_{p}" for p in SEGMENT_PARAMS}})
    edits = [_on(c, c[n].input, row.edit, ("state", "kf"), (),
                 "edit_keyframe" if n == "kf_prompt" else None, private=n != "kf_prompt",
                 trigger_mode="always_last", preprocess=False, **edit)
             for n in ("kf_prompt", "kf_negative_prompt", *SEGMENT)]
    left = _on(c, c["kf_prompt"].blur, row.edit, ("state", "kf"), (), "keyframe_left",
               private=True, preprocess=False, **edit)   # the last value, then the row
    _then(c, left, row.refresh, ("state", "kf"), ("keyframes",), preprocess=False)
    for event in (added, example, picked, chosen, earlier, later, removed, replaced, looped,
                  *edits):
        _timeline_then(c, h, event)


def _knobs(demo, c: Components, h) -> None:
    """The plot follows the schedule knobs, the timeline the lengths; presets fill knobs."""
    schedule = {n: n for n in SCHEDULE}
    gr.on([demo.load] + [c[n].change for n in SCHEDULE], c.named(h.projects.plan, ("plot",
                                                                               "plan_json")),
          outputs=c("plot", "plan_json"), inputs_kwargs=c.kwargs(**schedule), preprocess=False,
          api_name="plan", **LIGHT)
    gr.on([c[n].change for n in ("frames", "fps", *SIZES)],
          c.named(errors(h.row.timeline), ("timeline",)),
          c("state", "fps", "kf"), c("timeline"),
          inputs_kwargs=c.kwargs(**{n: n for n in ("frames", *SIZES)}), api_name="timeline",
          **LIGHT)
    _on(c, c["preset"].input, h.projects.apply_preset, ("preset",), STUDIO_FIELDS,
        "apply_preset")
    c["stop"].click(h.studio.cancel, c("state"), None, api_name="cancel", **LIGHT)


def _render_options(c: Components) -> dict:
    """GPU events: one queue, progress next to the buttons (the strip stays visible)."""
    return dict(GPU_QUEUE, show_progress="full", show_progress_on=c("progress"))


def _render(c: Components, h) -> None:
    """Interpolate, pin, regenerate, even pacing; each then refreshes the open frame and the
    inspector (even pacing changes the segments)."""
    s = h.studio
    knobs = {f: f for f in STUDIO_FIELDS}
    go = _on(c, c["run"].click, s.interpolate, ("state", "loop"), RENDER, "interpolate",
             kwargs=knobs, preprocess=False, **_render_options(c))
    pinned = _on(c, c["use"].click, s.use_candidate, ("state", "frame_no", "cand_no"),
                 RENDER, "use_candidate", preprocess=False, **_render_options(c))
    form = {"prompt": "frame_prompt", "negative_prompt": "frame_negative_prompt",
            "strength": "frame_strength", "keyframe": "frame_anchor", "seed": "frame_seed",
            "noise": "frame_noise", "pose": "frame_pose"}
    redone = _on(c, c["regen"].click, s.regenerate_frame, ("state", "frame_no"), RENDER,
                 "regenerate_frame", kwargs=form, preprocess=False, **_render_options(c))
    paced = _on(c, c["pace"].click, s.even_pacing, ("state", "keep_counts"), RENDER,
                "even_pacing", **_render_options(c))
    for event in (go, pinned, redone, paced):
        _then(c, event, refresh_frame, ("state", "frame_no"), SHOWN)
    _timeline_then(c, h, _then(c, paced, h.row.choose, ("state", "kf"), BOARD))


def _frames(c: Components, h) -> None:
    """Open a frame of any segment (its pose follows when the editor is on frames)."""
    opened = _on(c, c["strip"].select, select_frame, ("state",), ("frame_no", "side"),
                 "strip_select", private=True)
    shown = _then(c, opened, show_frame, ("state", "frame_no"), SHOWN)
    _then(c, shown, h.poses.follow, ("state", "target", "kf", "frame_no"),
          ("state", "editor", "pose_json"), {n: n for n in POSE_KNOBS}, preprocess=False)
    _on(c, c["frame_no"].submit, show_frame, ("state", "frame_no"), SHOWN, "select_frame",
        preprocess=False)
    _on(c, c["cand_gallery"].select, select_candidate, (), ("cand_no",), "candidate_select",
        private=True)


def _pose(c: Components, h) -> None:
    """The pose editor: load a target, keep the browser's edits, typed JSON, reset."""
    p, knobs = h.poses, {n: n for n in POSE_KNOBS}
    target = ("state", "target", "kf", "frame_no")
    shown = ("state", "editor", "pose_json")
    _on(c, c["target"].change, p.load, target, shown, "load_pose", kwargs=knobs,
        preprocess=False)
    _on(c, c["show_pose"].click, p.load, target, shown, "show_pose", private=True,
        kwargs=knobs, preprocess=False)
    _on(c, c["editor"].change, p.edited, ("state", "editor"), ("state", "pose_json", "frame_pose"),
        "pose_edited", private=True)
    _on(c, c["pose_json"].blur, p.typed, ("state", "pose_json", "editor"), (*shown, "frame_pose"),
        "set_pose")
    _on(c, c["reset_pose"].click, p.reset, target, (*shown, "frame_pose"), "reset_pose",
        kwargs=knobs, preprocess=False)


def _files(c: Components, h) -> None:
    """Re-export with new export knobs; load a project, then render it (cached frames reused)."""
    _on(c, c["reexport"].click, h.projects.export, ("state",), ("video", "mp4", "gif", "zip",
        "project"), "export", kwargs={f: f for f in EXPORT_FIELDS}, preprocess=False)
    loaded = _on(c, c["load"].upload, h.projects.load_project, ("state", "load"),
                 (*BOARD, *STUDIO_FIELDS, *EXPORT_FIELDS, "status"), "load_project")
    _timeline_then(c, h, loaded)
    render = _then(c, loaded, h.studio.interpolate, ("state", "loop"), RENDER,
                   {f: f for f in STUDIO_FIELDS}, how="success", preprocess=False,
                   **_render_options(c))
    _then(c, render, refresh_frame, ("state", "frame_no"), SHOWN)
