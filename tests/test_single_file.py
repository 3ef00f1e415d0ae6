"""Single-file checkpoints end to end on tiny models: original layout -> from_single_file against a local
config directory (no tokenizer files) -> identical weights -> a render; SDXL at the component level; the
tokenizer fallback; the --model-config flag. The full-size SD 1.5 round trip is marked `fullsize`."""
from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch
from diffusers import (AutoencoderKL, ControlNetModel, EulerDiscreteScheduler, StableDiffusionPipeline,
                       StableDiffusionXLPipeline, UNet2DConditionModel)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from interp.errors import ModelUnavailable
from interp.models.load import load_bundle
from interp.models.fullsize import CONFIG_DIR
from interp.models.single_file import config_directory, load_single_file, save_single_file
from interp.models.tiny import TEXT
from interp.models.tokenizer import build_tokenizer, tokenizer_problem
from interp.render import Interpolator
from interp.settings import Settings
from interp.text import tokenize

from test_fullsize import run_job

RENDER = Settings(frames=3, num_inference_steps=4, size=64, candidates=2, prompt="a red square", seed=3)


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    x, y = a.state_dict(), b.state_dict()
    return sorted(x) == sorted(y) and all(torch.equal(x[k], y[k]) for k in x)


def config_only(pipe, directory, tokenizers: str = "none"):
    """Save a pipeline, then keep only its JSON configs (what `config=` needs); tokenizers: "none" = empty
    tokenizer folders, "config" = only tokenizer_config.json (both load as unusable tokenizers)."""
    full = directory.parent / (directory.name + "-full")
    pipe.save_pretrained(full)
    for f in full.rglob("*.json"):
        if "tokenizer" in f.parent.name and not (tokenizers == "config" and f.name == "tokenizer_config.json"):
            continue
        (directory / f.relative_to(full)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, directory / f.relative_to(full))
    for name in ("tokenizer", "tokenizer_2"):
        if (full / name).is_dir():
            (directory / name).mkdir(parents=True, exist_ok=True)
    shutil.rmtree(full)
    return directory


def sd_pipeline(bundle):
    return StableDiffusionPipeline(vae=bundle.vae, text_encoder=bundle.text_encoder, tokenizer=bundle.tokenizer,
                                   unet=bundle.unet, scheduler=bundle.make_scheduler(10), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


def sd2_text_bundle():
    """tiny-sd21-v with an OpenCLIP-style (gelu) text encoder, so the SD 2.x text layout is exercised."""
    bundle = load_bundle("tiny-sd21-v")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        bundle.text_encoder = CLIPTextModel(CLIPTextConfig(**{**TEXT, "hidden_act": "gelu"})).eval()
    bundle.tokenizer = build_tokenizer("!")
    return bundle


@pytest.mark.parametrize("kind", ["sd15", "sd21"])
def test_tiny_single_file_round_trip_and_render(kind, tmp_path, caplog):
    source = load_bundle("tiny-sd15") if kind == "sd15" else sd2_text_bundle()
    config = config_only(sd_pipeline(source), tmp_path / "config")
    path = save_single_file({"unet": source.unet, "vae": source.vae, "text_encoder": source.text_encoder},
                            tmp_path / "model.safetensors")
    loaded = load_bundle(str(path), config=str(config), controlnet=None)
    for net in ("unet", "vae", "text_encoder"):
        assert _same_state(getattr(source, net), getattr(loaded, net)), net
    assert loaded.identity.startswith("file:") and loaded.prediction_type == source.prediction_type
    assert tokenizer_problem(loaded.tokenizer) is None  # no tokenizer files: the built-in one, padded as trained
    assert loaded.tokenizer.pad_token_id == (49407 if kind == "sd15" else 0)
    result = Interpolator(loaded).render(*_pair(), RENDER)
    # By hand from RENDER: 3 frames = one in-between frame (level 1, the coarsest, noise_max); S = 4,
    # noise_max 0.55 -> DDIM index int(4 x 0.55) = int(2.2) = 2 -> steps 2, 1, 0 = 3 steps; 2 candidates;
    # guidance 7.5 > 1 -> CFG doubles the rows; no inversion, no endpoint attention: 3 x 2 x 2 = 12.
    assert result.generated == [1] and result.frames[1].ddim_index == 2
    assert result.counts["rows"]["unet"] == 3 * 2 * 2 == 12
    assert result.counts["rows"]["vae_decode"] == 2  # the in-between frame's 2 candidates
    assert all(f.image.size == (64, 64) for f in result.frames)


def _pair():
    from PIL import Image
    return Image.new("RGB", (64, 64), (200, 30, 30)), Image.new("RGB", (64, 64), (30, 30, 200))


def test_unusable_tokenizers_are_detected_and_replaced(tmp_path, caplog):
    empty = CLIPTokenizer.from_pretrained(tmp_path)  # a folder without vocabulary files loads silently...
    assert empty.model_max_length > 10**20 and len(empty) < 10
    with pytest.raises(OverflowError):  # ...and prompt encoding then fails
        tokenize(empty, "a photo")
    assert "model_max_length" in tokenizer_problem(empty)
    build_tokenizer().save_pretrained(tmp_path / "full")
    (tmp_path / "config-only").mkdir()
    shutil.copy(tmp_path / "full" / "tokenizer_config.json", tmp_path / "config-only")
    vocabless = CLIPTokenizer.from_pretrained(tmp_path / "config-only")
    assert vocabless.model_max_length == 77 and "vocabulary" in tokenizer_problem(vocabless)
    assert tokenizer_problem(CLIPTokenizer.from_pretrained(tmp_path / "full")) is None
    assert tokenizer_problem(None) == "no tokenizer was loaded"
    # a diffusers directory whose tokenizer folder holds only tokenizer_config.json still encodes prompts
    source = load_bundle("tiny-sd15")
    directory = config_only(sd_pipeline(source), tmp_path / "dir", tokenizers="config")
    for sub in ("unet", "vae", "text_encoder"):
        getattr(source, sub).save_pretrained(directory / sub)
    with caplog.at_level(logging.WARNING, logger="interp.models.bundle"):
        loaded = load_bundle(str(directory), controlnet=None)
    assert "cannot encode prompts" in caplog.text and tokenizer_problem(loaded.tokenizer) is None
    assert torch.equal(tokenize(loaded.tokenizer, "a photo")[0], tokenize(build_tokenizer(), "a photo")[0])


def test_tokenizer_pad_option_matches_open_clip():
    import open_clip

    prompts = ["a photo of a cat", "", "an astronaut riding a horse, 4k"]
    ours = build_tokenizer("!")(prompts, padding="max_length", max_length=77, truncation=True,
                                return_tensors="pt").input_ids
    assert torch.equal(ours, open_clip.tokenize(prompts))  # OpenCLIP pads with 0 = "!"
    assert build_tokenizer("!") is build_tokenizer("!") and build_tokenizer() is not build_tokenizer("!")
    with pytest.raises(ValueError, match="pad_token"):
        build_tokenizer("<pad>")


def test_config_directory_argument(tmp_path):
    assert config_directory(None) is None
    assert config_directory("sd15") == CONFIG_DIR / "sd15"
    assert json.loads((config_directory("sdxl") / "model_index.json").read_text())["_class_name"] \
        == "StableDiffusionXLPipeline"
    with pytest.raises(ModelUnavailable, match="model_config.*model_index.json"):
        config_directory(tmp_path)
    with pytest.raises(ValueError, match="safetensors"):
        save_single_file({}, tmp_path / "model.ckpt")


# --- SDXL, at the component level (rendering SDXL comes with the SDXL model family) ------------------------
# Adapted from the research notes' scripts/tiny_sdxl.py: keep the two text encoders' widths apart (the loader
# tells them apart by width) and give the second one >= 10 layers (diffusers' SDXL detection key).
D1, D2, PROJ, TIME_DIM = 32, 64, 64, 8


def tiny_sdxl() -> dict:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = UNet2DConditionModel(
            sample_size=8, layers_per_block=2, block_out_channels=(32, 64, 64),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4, 4),
            use_linear_projection=True, cross_attention_dim=D1 + D2, addition_embed_type="text_time",
            addition_time_embed_dim=TIME_DIM, projection_class_embeddings_input_dim=6 * TIME_DIM + PROJ)
        clip = dict(vocab_size=49408, max_position_embeddings=77, num_attention_heads=4, bos_token_id=0,
                    eos_token_id=2, pad_token_id=1)
        te1 = CLIPTextModel(CLIPTextConfig(hidden_size=D1, intermediate_size=37, num_hidden_layers=2,
                                           hidden_act="quick_gelu", projection_dim=D1, **clip))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(hidden_size=D2, intermediate_size=128, num_hidden_layers=10,
                                                         hidden_act="gelu", projection_dim=PROJ, **clip))
        vae = AutoencoderKL(block_out_channels=(8, 16, 16, 16), down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, norm_num_groups=8,
                            sample_size=64, scaling_factor=0.13025)
        controlnet = ControlNetModel.from_unet(unet)
    return {"unet": unet, "vae": vae, "text_encoder": te1, "text_encoder_2": te2, "controlnet": controlnet}


def test_tiny_sdxl_single_file_round_trip(tmp_path):
    parts = tiny_sdxl()
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    pipe = StableDiffusionXLPipeline(vae=parts["vae"], text_encoder=parts["text_encoder"],
                                     text_encoder_2=parts["text_encoder_2"], tokenizer=build_tokenizer(),
                                     tokenizer_2=build_tokenizer("!"), unet=parts["unet"], scheduler=scheduler)
    config = config_only(pipe, tmp_path / "config")
    path = save_single_file(parts, tmp_path / "xl.safetensors")
    for given in (str(config), None):  # by its config directory, or by its keys when none is given (offline: fails)
        if given is None:
            with pytest.raises(ModelUnavailable, match="model-config"):
                load_single_file(str(path), torch.float32, None)
            continue
        loaded = load_single_file(str(path), torch.float32, given)
        for net in ("unet", "vae", "text_encoder", "text_encoder_2"):
            assert _same_state(parts[net], loaded[net]), net
        assert [loaded[t].pad_token_id for t in ("tokenizer", "tokenizer_2")] == [49407, 0]
        assert tokenizer_problem(loaded["tokenizer_2"]) is None
    bundle = load_bundle(str(path), config=str(config))          # an SDXL checkpoint renders
    assert bundle.family == "sdxl" and bundle.identity.startswith("file:")
    # the networks as loaded still run the SDXL way: pooled projection + 6 time ids, ControlNet residuals
    ids = build_tokenizer("!")(["a cat"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        out2 = loaded["text_encoder_2"](ids, output_hidden_states=True)
        h1 = loaded["text_encoder"](ids, output_hidden_states=True).hidden_states[-2]
        embeds = torch.cat([h1, out2.hidden_states[-2]], dim=-1)
        cond = {"text_embeds": out2[0], "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]])}
        down, mid = parts["controlnet"](torch.zeros(1, 4, 8, 8), 10, encoder_hidden_states=embeds,
                                        controlnet_cond=torch.rand(1, 3, 64, 64), added_cond_kwargs=cond,
                                        return_dict=False)
        out = loaded["unet"](torch.zeros(1, 4, 8, 8), 10, encoder_hidden_states=embeds, added_cond_kwargs=cond,
                             down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
    assert out.shape == (1, 4, 8, 8) and torch.isfinite(out).all()


# --- the flag ------------------------------------------------------------------------------------------------

def test_cli_model_config_flag_renders_a_single_file(tmp_path):
    from interp.cli.main import main

    source = load_bundle("tiny-sd15")
    config = config_only(sd_pipeline(source), tmp_path / "config")
    path = save_single_file({"unet": source.unet, "vae": source.vae, "text_encoder": source.text_encoder},
                            tmp_path / "model.safetensors")
    out = tmp_path / "run"
    code = main(["render", *(str(p) for p in _pair_files(tmp_path)), "--model", str(path), "--model-config",
                 str(config), "--prompt", "a red square", "--frames", "3", "--steps", "3", "--size", "64",
                 "--candidates", "1", "--invert-steps", "0", "--store", "none", "--out", str(out)])
    assert code in (0, None)
    summary = json.loads((out / "summary.json").read_text())
    assert len(list((out / "frames").glob("*.png"))) == 3
    # the premises of the hand count: the flags given, the preset's (balanced) guidance and noise
    used = summary["settings"]
    assert (used["frames"], used["num_inference_steps"], used["candidates"], used["invert_steps"]) == (3, 3, 1, 0)
    assert (used["noise_max"], used["guidance_scale"], used["attention"]) == (0.55, 7.5, "off")
    # By hand: one in-between frame at DDIM index int(3 x 0.55) = int(1.65) = 1 -> 2 steps; 1 candidate;
    # CFG doubles the rows: 2 x 1 x 2 = 4.
    assert summary["model_calls"]["rows"]["unet"] == 2 * 1 * 2 == 4


def test_app_takes_the_same_loader_flags():
    import app
    from interp.models.startup import loader_options

    args = app.parse_args(["--model", "m.safetensors", "--model-config", "sd15", "--channels-last", "--vae-slicing"])
    assert loader_options(args) == {"config": "sd15", "attention_slicing": False, "vae_tiling": False,
                                    "vae_slicing": True, "cpu_offload": False, "channels_last": True,
                                    "compile_unet": False}


def _pair_files(tmp_path):
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    for image, p in zip(_pair(), paths):
        image.save(p)
    return paths


@pytest.mark.slow
@pytest.mark.fullsize
def test_full_size_sd15_single_file_round_trip():
    report = run_job("single-file", "random-sd15")
    assert report["same_weights"] == {"unet": True, "vae": True, "text_encoder": True}
    assert report["tokenizer"] == [49408, 77, 49407] and report["prediction_type"] == "epsilon"
    assert report["identity"].startswith("file:")
    assert report["generated"] == [1] and report["sizes"] == [[128, 128]] * 3
    # By hand from benchmarks/fullsize.py's RENDER with invert_steps=0, pose=False (test_fullsize.py checks
    # those settings): one in-between frame at DDIM index int(3 x 0.55) = 1 -> 2 steps; 2 candidates; CFG
    # doubles the rows: 2 x 2 x 2 = 8, and no ControlNet rows.
    assert report["middle_ddim_index"] == 1 and report["middle_candidates"] == 2
    assert report["counts"]["rows"]["unet"] == 2 * 2 * 2 == 8
    assert report["counts"]["rows"].get("controlnet", 0) == 0
    assert report["latents_finite"] and all(report["frames_differ"]) and report["candidates_differ"]
