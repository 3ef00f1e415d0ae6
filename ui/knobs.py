"""The app's knobs: one widget per Settings / Export field, named after the field, grouped as the
side panel shows them (schedule, sampling, text inversion, ranking, attention, pose, output).
Choices come from the library's Enums; values go through interp.forms.settings_from_form.
Prompt B and Negative prompt B have no knob: in the studio every keyframe has its own prompts.
"""
from __future__ import annotations

import gradio as gr

from ui.points import PointsTable
from interp import limits
from interp.forms import FORM_FIELDS
from interp.settings import AttentionBlocks, AttentionMode, Curve, Fit, NoiseShape, Scheme

CURVE_LABELS = {Curve.UNIFORM: "uniform", Curve.EASE_IN: "ease in", Curve.EASE_OUT: "ease out",
                Curve.EASE_IN_OUT: "ease in-out", Curve.BETA: "Beta(α, β)",
                Curve.CUSTOM: "custom points"}
SCHEME_LABELS = {Scheme.METHOD: "noise → interpolate → denoise (the paper)",
                 Scheme.INTERPOLATE_ONLY: "interpolate only (baseline)",
                 Scheme.INTERPOLATE_DENOISE: "interpolate → denoise (baseline)",
                 Scheme.DID: "denoise → interpolate → denoise (baseline)",
                 Scheme.DID_INDEPENDENT: "DID, independent noise (baseline)"}


STUDIO_FIELDS = tuple(f for f in FORM_FIELDS if f not in ("prompt_b", "negative_prompt_b"))


def _choices(labels: dict) -> list:
    return [(label, member.value) for member, label in labels.items()]


def text_knobs(v: dict) -> dict:
    """The run's prompts (each keyframe may have its own instead, in the inspector)."""
    chars = limits.current().prompt_chars
    return {
        "prompt": gr.Textbox(v["prompt"], label="Prompt", lines=1, max_length=chars, scale=3,
                             placeholder="for every keyframe without its own prompt"),
        "negative_prompt": gr.Textbox(v["negative_prompt"], label="Negative prompt", lines=1,
                                      max_length=chars, scale=2),
    }


def schedule_knobs(v: dict) -> dict:
    knobs = {
        "frames": gr.Slider(3, limits.current().frames, v["frames"], step=1,
                            label="Frames per segment (both keyframes included)"),
        "curve": gr.Dropdown(_choices(CURVE_LABELS), value=v["curve"], label="Schedule curve"),
    }
    with gr.Row():
        knobs["curve_alpha"] = gr.Slider(0.1, 5.0, v["curve_alpha"], step=0.05, label="Beta α")
        knobs["curve_beta"] = gr.Slider(0.1, 5.0, v["curve_beta"], step=0.05, label="Beta β")
    knobs["curve_points"] = PointsTable(
        v["curve_points"] or [[0.5, 0.5]], headers=["x", "y"], datatype=["number", "number"],
        column_count=2, type="array",
        label="Custom control points (x = share of frames, y = position)")
    with gr.Row():
        knobs["noise_min"] = gr.Slider(0.01, 0.99, v["noise_min"], step=0.01,
                                       label="Noise at the finest level")
        knobs["noise_max"] = gr.Slider(0.01, 0.99, v["noise_max"], step=0.01,
                                       label="Noise at the coarsest level")
    knobs["noise_shape"] = gr.Radio([s.value for s in NoiseShape], value=v["noise_shape"],
                                    label="Noise shape across levels")
    return knobs


def sampling_knobs(v: dict) -> dict:
    lim = limits.current()
    return {
        "scheme": gr.Dropdown(_choices(SCHEME_LABELS), value=v["scheme"], label="Scheme"),
        "num_inference_steps": gr.Slider(2, lim.steps, v["num_inference_steps"], step=1,
                                         label="DDIM steps S (full schedule)"),
        "eta": gr.Slider(0.0, 1.0, v["eta"], step=0.01, label="DDIM eta"),
        "guidance_scale": gr.Slider(0.0, 20.0, v["guidance_scale"], step=0.1,
                                    label="Guidance scale"),
        "seed": gr.Number(v["seed"], precision=0, minimum=0, label="Seed"),
        "candidates": gr.Slider(0 if lim.paper_rule else 1, lim.candidates, v["candidates"],
                                step=1, label="Candidates per frame (0 = paper: 8, 7, 6, … ≥ 3)"),
    }


def inversion_knobs(v: dict) -> dict:
    return {
        "invert_steps": gr.Slider(0, limits.current().invert_steps, v["invert_steps"], step=10,
                                  label="Textual inversion steps (0 = off; paper 500)"),
        "invert_lr": gr.Number(v["invert_lr"], label="Inversion learning rate", step=1e-5),
    }


def ranking_knobs(v: dict) -> dict:
    return {
        "rank_positive": gr.Textbox(v["rank_positive"], label="CLIP positive prompt",
                                    placeholder="empty (with negative empty): no ranking"),
        "rank_negative": gr.Textbox(v["rank_negative"], label="CLIP negative prompt"),
    }


def pose_knobs(v: dict, has_controlnet: bool) -> dict:
    info = None if has_controlnet else "this model has no OpenPose ControlNet"
    return {
        "pose": gr.Checkbox(v["pose"] and has_controlnet, label="Pose guidance (ControlNet)",
                            interactive=has_controlnet, info=info),
        "pose_all_people": gr.Checkbox(v["pose_all_people"], label="All people (else largest)"),
        "control_peak": gr.Slider(0.0, 5.0, v["control_peak"], step=0.05,
                                  label="ControlNet scale at the middle frame"),
        "controlnet_conditioning_scale": gr.Slider(0.0, 3.0, v["controlnet_conditioning_scale"],
                                                   step=0.05, label="ControlNet global scale"),
    }


def output_knobs(v: dict) -> dict:
    top = limits.current().size
    knobs = {"size": gr.Slider(0, top, v["size"], step=64,
                               label="Size (long side, pixels; 0 = the model's native size)")}
    with gr.Row():
        knobs["width"] = gr.Number(v["width"], precision=0, minimum=0, maximum=top, step=64,
                                   label="Width (0 = auto)")
        knobs["height"] = gr.Number(v["height"], precision=0, minimum=0, maximum=top, step=64,
                                    label="Height (0 = auto)")
    knobs["fit"] = gr.Radio([f.value for f in Fit], value=v["fit"], label="Fit to size")
    return knobs


ATTENTION_LABELS = {AttentionMode.OFF: "off (the paper)",
                    AttentionMode.INTERPOLATE: "interpolate endpoint keys/values",
                    AttentionMode.EXTEND: "extend: attend to own + endpoint tokens"}


def attention_knobs(v: dict) -> dict:
    """Endpoint attention: each in-between frame's self-attention also sees the two inputs."""
    return {
        "attention": gr.Radio(_choices(ATTENTION_LABELS), value=v["attention"],
                              label="Endpoint attention",
                              info="mixes the inputs' self-attention into every frame (beyond "
                                   "the paper; costs 2 extra rows per step while on)"),
        "attention_strength": gr.Slider(0.0, 1.0, v["attention_strength"], step=0.05,
                                        label="Attention strength"),
        "attention_share": gr.Slider(0.05, 1.0, v["attention_share"], step=0.05,
                                     label="Share of each frame's steps"),
        "attention_blocks": gr.Radio([b.value for b in AttentionBlocks],
                                     value=v["attention_blocks"], label="UNet blocks"),
    }


def export_knobs(e: dict) -> dict:
    lim = limits.current()
    with gr.Row():
        knobs = {"fps": gr.Slider(1, lim.fps, e["fps"], step=1, label="Frames per second"),
                 "pingpong": gr.Checkbox(e["pingpong"], label="Ping-pong")}
    with gr.Row():
        knobs["gif_loop"] = gr.Number(e["gif_loop"], precision=0, minimum=0, maximum=lim.gif_loop,
                                  label="GIF loops (0 = ∞)")
        for name, label in (("hold_first", "Hold first"), ("hold_last", "Hold last")):
            knobs[name] = gr.Number(e[name], precision=0, minimum=0, maximum=lim.hold_frames,
                                    label=label)
    return knobs
