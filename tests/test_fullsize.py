"""Full-size random models (random-sd15, random-sd21, random-sdxl): real architectures from the public configs.

Fast tests build on the meta device or only the small networks; the tests marked `fullsize` run
benchmarks/fullsize.py in a subprocess (so its peak memory is that model's) and check what it reports.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from interp.errors import ModelUnavailable
from interp.models.load import load_bundle, weights_available
from interp.models.fullsize import (RANDOM_SPECS, build_random, empty_networks, parameter_count, random_identity,
                                    read_config)

ROOT = Path(__file__).resolve().parent.parent

# Parameter counts of the released models. Model cards: SD 1.5 "860M UNet and 123M text encoder", SD 2.x
# "865M UNet" with OpenCLIP ViT-H/14's text tower, SDXL "2.6B parameter UNet" with CLIP ViT-L and OpenCLIP
# ViT-bigG; exact values as counted by the project's research notes with diffusers' and transformers' own
# classes on the public configs (UNet 859.5M / 865.9M / 2.567B, as in issue 13).
PUBLIC = {
    "random-sd15": {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480, "controlnet": 361_279_120},
    "random-sd21": {"unet": 865_910_724, "vae": 83_653_863, "text_encoder": 340_387_840, "controlnet": 364_228_240},
    "random-sdxl": {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480,
                    "text_encoder_2": 694_659_840, "controlnet": 1_251_014_160},
}


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_parameter_counts_are_the_public_models(name):
    nets = empty_networks(name)
    counts = {k: parameter_count(v) for k, v in nets.items()}
    assert counts == PUBLIC[name]
    card_unet = {"random-sd15": 860e6, "random-sd21": 865e6, "random-sdxl": 2.6e9}[name]
    assert counts["unet"] == pytest.approx(card_unet, rel=0.015)
    assert all(p.device.type == "meta" for net in nets.values() for p in net.parameters())


def test_architecture_facts():
    sd15, sd21, xl = (empty_networks(n) for n in ("random-sd15", "random-sd21", "random-sdxl"))
    assert sd15["unet"].config.cross_attention_dim == 768 and not sd15["unet"].config.use_linear_projection
    assert sd21["unet"].config.cross_attention_dim == 1024 and sd21["unet"].config.use_linear_projection
    assert sd21["unet"].config.upcast_attention and sd21["text_encoder"].config.num_hidden_layers == 23
    assert sd21["text_encoder"].config.hidden_size == 1024
    # SDXL's added conditioning: 6 time ids x 256 sinusoidal features + the pooled 1280-d projection
    xl_unet, te2 = xl["unet"], xl["text_encoder_2"]
    assert xl_unet.config.addition_time_embed_dim * 6 + te2.config.projection_dim == 2816
    assert xl_unet.add_embedding.linear_1.in_features == 2816
    assert xl_unet.config.cross_attention_dim == 768 + 1280  # both encoders' hidden states, concatenated
    assert tuple(xl_unet.config.transformer_layers_per_block) == (1, 2, 10)


@pytest.mark.parametrize("name", sorted(RANDOM_SPECS))
def test_controlnet_is_the_published_openpose_config(name):
    spec = RANDOM_SPECS[name]
    published = read_config(f"{spec.controlnet}/config.json")
    built = json.loads(json.dumps(dict(empty_networks(name, ("controlnet",))["controlnet"].config)))
    assert {k: (v, built.get(k)) for k, v in published.items() if built.get(k) != v} == {}
    assert built["conditioning_embedding_out_channels"] == [16, 32, 96, 256]


def test_prediction_types_and_tokenizers():
    parts = {n: build_random(n, components=()) for n in RANDOM_SPECS}
    assert [parts[n]["scheduler_config"]["prediction_type"] for n in ("random-sd15", "random-sd21", "random-sdxl")] \
        == ["epsilon", "v_prediction", "epsilon"]
    assert parts["random-sd15"]["tokenizer"].pad_token_id == 49407  # SD 1.x pads with <|endoftext|>
    assert parts["random-sd21"]["tokenizer"].pad_token_id == 0  # OpenCLIP pads with "!" = 0
    assert (parts["random-sdxl"]["tokenizer"].pad_token_id, parts["random-sdxl"]["tokenizer_2"].pad_token_id) == (49407, 0)
    assert len({random_identity(n) for n in RANDOM_SPECS}) == 3
    assert random_identity("random-sd21").startswith("random-sd21:v1:")
    with pytest.raises(ValueError, match="components"):
        build_random("random-sd15", components=("unet", "tokenizer"))
    with pytest.raises(ValueError, match="random-sd3"):
        build_random("random-sd3")


def test_weights_deterministic_sane_and_global_rng_untouched():
    state = torch.random.get_rng_state()
    first = build_random("random-sd15", components=("text_encoder", "vae"))
    again = build_random("random-sd15", components=("text_encoder", "vae"))
    assert torch.equal(torch.random.get_rng_state(), state)
    for net in ("text_encoder", "vae"):
        a, b = first[net].state_dict(), again[net].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
    te = first["text_encoder"]
    assert torch.equal(te.embeddings.position_ids, torch.arange(77)[None])  # buffers are real, not empty memory
    ln = te.encoder.layers[0].layer_norm1
    assert bool((ln.weight == 1).all()) and bool((ln.bias == 0).all())
    fc1 = te.encoder.layers[0].mlp.fc1.weight  # 3072 x 768: N(0, 1/768)
    assert abs(float(fc1.std()) - 768 ** -0.5) < 0.01 * 768 ** -0.5 and abs(float(fc1.mean())) < 1e-3
    assert not torch.equal(fc1, te.encoder.layers[1].mlp.fc1.weight)


def test_small_networks_give_finite_outputs():
    parts = build_random("random-sd21", components=("text_encoder", "vae"))
    ids = parts["tokenizer"](["a photo of a cat", ""], padding="max_length", max_length=77, return_tensors="pt")
    with torch.no_grad():
        text = parts["text_encoder"](ids.input_ids)[0]
        image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
        latents = parts["vae"].encode(image).latent_dist.mean
        decoded = parts["vae"].decode(latents).sample
    assert text.shape == (2, 77, 1024) and torch.isfinite(text).all() and not torch.equal(text[0], text[1])
    assert latents.shape == (1, 4, 8, 8) and decoded.shape == (1, 3, 64, 64)
    assert torch.isfinite(decoded).all() and 0.05 < float(decoded.std()) < 20


def test_loader_names():
    assert all(weights_available(f"random-{n}") for n in ("sd15", "sd21", "sdxl"))


def test_random_model_loads_by_name_and_says_so(caplog):
    """controlnet=None builds no ControlNet at all (saves its 361M parameters)."""
    with caplog.at_level(logging.WARNING, logger="interp.models.load"):
        bundle = load_bundle("random-sd15", controlnet=None, dtype="bfloat16")
    assert "random-sd15" in caplog.text and "RANDOM weights" in caplog.text
    assert bundle.controlnet is None and bundle.name == "random-sd15"
    assert bundle.identity == random_identity("random-sd15") and bundle.dtype == torch.bfloat16
    assert parameter_count(bundle.unet) == PUBLIC["random-sd15"]["unet"]
    assert next(bundle.unet.parameters()).dtype == torch.bfloat16


# --- full size, in a subprocess -------------------------------------------------------------------------

def run_job(*args: str, timeout: int = 600) -> dict:
    """Run benchmarks/fullsize.py in its own process; its last output line is a JSON report."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fullsize.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(report))  # timings and memory for the README (pytest -s shows them)
    return report


def _benchmark_render_settings():
    """benchmarks/fullsize.py's RENDER (the settings the hand counts below start from)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("_fullsize_benchmark", ROOT / "benchmarks" / "fullsize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.RENDER


def test_benchmark_render_settings_are_the_hand_counts_premises():
    """The counts in check_render and test_single_file's full-size test are worked out by hand from these."""
    s = _benchmark_render_settings()
    assert (s.frames, s.num_inference_steps, s.noise_max, s.candidates, s.guidance_scale) == (3, 3, 0.55, 2, 7.5)
    assert (s.invert_steps, s.pose, s.attention.value, s.scheme.value) == (2, True, "off", "method")


# By hand from the benchmark's RENDER: 3 frames = one in-between frame (level 1, the coarsest, noise_max);
# S = 3, noise_max 0.55 -> DDIM index int(3 x 0.55) = int(1.65) = 1 -> steps 1, 0 = 2 denoising steps.
MIDDLE_DDIM_INDEX, STEPS, CANDIDATES, CFG = 1, 2, 2, 2


def check_render(report: dict, pose: bool, inversion: int) -> None:
    counts, expected = report["counts"], report["expected_counts"]
    assert report["generated"] == [1] and report["inversion_steps"] == inversion
    assert report["middle_candidates"] == CANDIDATES and report["middle_ddim_index"] == MIDDLE_DDIM_INDEX
    # the analytic minimum, counted here by hand: 2 candidates x 2 steps x 2 (CFG) = 8, plus per inversion
    # step one guided prediction for A and one for B (x 2 for CFG): 2 x 2 x 2 = 8 for 2 steps -> 16
    rows = CANDIDATES * STEPS * CFG + 2 * inversion * CFG
    assert rows == (16 if inversion == 2 else 8)
    assert counts["rows"]["unet"] == expected["unet_rows"] == rows
    assert counts["rows"]["vae_decode"] == expected["vae_decode_rows"] == 2
    assert counts["rows"]["controlnet"] == (CANDIDATES * STEPS * CFG if pose else 0)  # 8: every sampling row
    assert report["sizes"] == [[128, 128]] * 3
    assert report["latents_finite"] and all(report["frames_differ"]) and report["candidates_differ"]


@pytest.mark.slow
@pytest.mark.fullsize
@pytest.mark.parametrize("name, dtype", [("random-sd15", "float32"), ("random-sd21", "float32"),
                                         ("random-sdxl", "bfloat16")])
def test_full_size_render(name, dtype):
    """A real render at 128 px with each real architecture (SDXL in bfloat16: float32 would need
    ~19 GB of this 24 GB machine)."""
    report = run_job("render", name, "--dtype", dtype)
    assert report["parameters"] == {k: v for k, v in PUBLIC[name].items()}
    assert report["prediction_type"] == ("v_prediction" if name == "random-sd21" else "epsilon")
    assert report["family"] == ("sdxl" if name == "random-sdxl" else "sd")
    assert report["pad_token_ids"] == {"random-sd15": [49407], "random-sd21": [0],
                                       "random-sdxl": [49407, 0]}[name]
    check_render(report, pose=True, inversion=2)


