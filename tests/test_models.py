"""ModelBundle on tiny random models: tokenizer parity, shapes, counts, ControlNet scales, dtypes, loading."""

from __future__ import annotations

import json
import logging
import shutil
import threading

import pytest
import torch

from interp.models import hub, load as models
from interp.errors import ModelUnavailable
from interp.models.bundle import CallCounter
from interp.models.load import enable_cpu_offload, load_bundle, weights_available
from interp.models.tokenizer import build_tokenizer

TINY = ("tiny-sd15", "tiny-sd21", "tiny-sd21-v")


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def bundles():
    return {name: load_bundle(name) for name in TINY}


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def _ids(bundle_or_tokenizer, prompts):
    tokenizer = getattr(bundle_or_tokenizer, "tokenizer", bundle_or_tokenizer)
    return tokenizer(prompts, padding="max_length", max_length=77, truncation=True,
                            return_tensors="pt").input_ids


def _inputs(bundle, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, 64, 64, generator=g) * 2 - 1
    pose = torch.rand(batch, 3, 64, 64, generator=g)
    text = bundle.encode_prompt("a red square").expand(batch, -1, -1)
    return images, pose, text


# --- tokenizer -------------------------------------------------------------------------------------

def test_tokenizer_matches_open_clip():
    import open_clip

    tok = build_tokenizer()
    assert (len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (49408, 49406, 49407, 49407)
    assert tok.model_max_length == 77
    prompts = ["a photo of a cat", "Hello, World!  It's 2023... naive cafe #1", "",
               "an astronaut riding a horse on mars, 4k, trending on artstation", "word " * 100]
    ours = _ids(tok, prompts)
    ref = open_clip.tokenize(prompts)
    for a, b in zip(ours, ref):
        n = int((b != 0).sum())  # open_clip pads with 0, SD 1.5 pads with eos
        assert a[:n].tolist() == b[:n].tolist()
        assert (a[n:] == 49407).all()
    assert build_tokenizer() is build_tokenizer()


# --- tiny bundles -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", TINY)
def test_tiny_shapes(bundles, name):
    b = bundles[name]
    images, pose, text = _inputs(b)
    assert text.shape == (2, 77, 32)
    latents = b.encode_images(images)
    assert latents.shape == (2, 4, 8, 8) and b.vae_scale_factor == 8
    assert b.decode_latents(latents).shape == (2, 3, 64, 64)
    down, mid = b.controlnet_forward(latents, 10, text, pose, torch.ones(2))
    out = b.unet_forward(latents, 10, text, down, mid)
    assert out.shape == latents.shape and torch.isfinite(out).all()


def test_tiny_shape_details(bundles):
    sd15, sd21, sd21v = (bundles[n] for n in TINY)
    assert sd15.unet.config.use_linear_projection is False and sd21.unet.config.use_linear_projection is True
    assert tuple(sd21.unet.config.attention_head_dim) == (2, 4)
    assert [b.prediction_type for b in (sd15, sd21, sd21v)] == ["epsilon", "epsilon", "v_prediction"]
    sched = sd21v.make_scheduler(10)
    assert sched.config.prediction_type == "v_prediction" and sched is not sd21v.make_scheduler(10)
    assert (sched.config.steps_offset, sched.config.timestep_spacing, sched.config.clip_sample) == (1, "leading", False)
    assert load_bundle("tiny").identity == sd15.identity


def test_counts(bundles):
    b = load_bundle("tiny-sd15")
    images, pose, text = _inputs(b, batch=3)
    latents = b.encode_images(images)
    b.decode_latents(latents[:2])
    b.controlnet_forward(latents, 5, text, pose, torch.ones(3))
    b.unet_forward(latents, 5, text)
    b.unet_forward(latents[:1], 5, text[:1])
    snap = b.counter.snapshot()
    assert snap["calls"] == {"unet": 2, "controlnet": 1, "vae_encode": 1, "vae_decode": 1, "text_encoder": 1,
                             "clip": 0, "clip_text": 0}
    # one distinct prompt: encoded once, then expanded to the batch
    assert snap["rows"] == {"unet": 4, "controlnet": 3, "vae_encode": 3, "vae_decode": 2, "text_encoder": 1,
                            "clip": 0, "clip_text": 0}
    b.counter.reset()
    assert sum(b.counter.snapshot()["calls"].values()) == 0


def test_call_counter_threads():
    counter = CallCounter()

    def work():
        for _ in range(500):
            counter.add("unet", 3)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counter.snapshot()["calls"]["unet"] == 4000 and counter.snapshot()["rows"]["unet"] == 12000


@pytest.mark.parametrize("name", ["tiny-sd15", "tiny-sd21"])
def test_controlnet_per_sample_scales(bundles, name):
    b = bundles[name]
    images, pose, text = _inputs(b, batch=1)
    latents = b.encode_images(images).repeat(3, 1, 1, 1)
    down, mid = b.controlnet_forward(latents, 20, text.repeat(3, 1, 1), pose.repeat(3, 1, 1, 1),
                                     torch.tensor([0.0, 1.0, 2.0]))
    for r in [*down, mid]:
        assert r[0].abs().max() == 0
        assert r[1].abs().max() > 0
        torch.testing.assert_close(r[2], 2 * r[1])
    with pytest.raises(ValueError, match="scales"):
        b.controlnet_forward(latents, 20, text.repeat(3, 1, 1), pose.repeat(3, 1, 1, 1), torch.ones(2))


def test_encode_is_posterior_mean_and_validates(bundles):
    b = bundles["tiny-sd15"]
    images, _, _ = _inputs(b)
    z = b.encode_images(images)
    torch.testing.assert_close(z, b.encode_images(images))
    torch.testing.assert_close(z, b.vae.encode(images).latent_dist.mean * 0.18215)
    with pytest.raises(ValueError, match="images"):
        b.encode_images(torch.zeros(1, 3, 60, 64))
    with pytest.raises(TypeError, match="prompt"):
        b.encode_prompt(["a list"])


def test_gradients_flow_through_methods(bundles):
    b = bundles["tiny-sd15"]
    emb = b.encode_prompt("x").detach().requires_grad_(True)
    out = b.unet_forward(torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1)), 3, emb)
    out.square().mean().backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0


def test_no_controlnet():
    b = load_bundle("tiny-sd21", controlnet=None)
    assert b.controlnet is None
    with pytest.raises(ModelUnavailable, match="ControlNet"):
        b.controlnet_forward(torch.zeros(1, 4, 8, 8), 1, torch.zeros(1, 77, 32), torch.zeros(1, 3, 64, 64),
                             torch.ones(1))


def test_deterministic_weights_and_identity(bundles):
    state = torch.random.get_rng_state()
    again = load_bundle("tiny-sd15")
    assert torch.equal(torch.random.get_rng_state(), state)
    first = bundles["tiny-sd15"]
    for p, q in zip(first.unet.parameters(), again.unet.parameters()):
        assert torch.equal(p, q)
    assert again.identity == first.identity and again.identity.startswith("tiny-sd15:v2:")
    assert len({bundles[n].identity for n in TINY}) == 3


def test_dtype_and_device_parameters():
    b = load_bundle("tiny-sd21", dtype="bf16", device=torch.device("cpu"))
    assert b.dtype == torch.bfloat16 and next(b.unet.parameters()).dtype == torch.bfloat16
    images, pose, text = _inputs(b, batch=1)
    assert text.dtype == torch.bfloat16
    latents = b.encode_images(images)  # float32 input is cast
    down, mid = b.controlnet_forward(latents, 7, text, pose, torch.ones(1))
    assert b.unet_forward(latents.float(), 7, text, down, mid).dtype == torch.bfloat16
    assert load_bundle("tiny").dtype == torch.float32
    with pytest.raises(ValueError, match="dtype"):
        load_bundle("tiny", dtype="float8")
    with pytest.raises(TypeError, match="dtype"):
        load_bundle("tiny", dtype=torch.int64)
    with pytest.raises(ValueError, match="device"):
        load_bundle("tiny", device="nonsense")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            load_bundle("tiny", device="cuda")


def test_memory_savers_on_cpu(bundles):
    ref = bundles["tiny-sd15"]
    b = load_bundle("tiny-sd15", attention_slicing=True, vae_tiling=True)
    assert b.vae.use_tiling
    images, pose, text = _inputs(b, batch=1)
    latents = b.encode_images(images)
    torch.testing.assert_close(b.unet_forward(latents, 9, text), ref.unet_forward(latents, 9, text))
    big = b.decode_latents(torch.randn(1, 4, 10, 10, generator=torch.Generator().manual_seed(2)))  # > 1 tile
    assert big.shape == (1, 3, 80, 80) and torch.isfinite(big).all()
    with pytest.raises(ValueError, match="cpu_offload"):
        load_bundle("tiny-sd15", cpu_offload=True)


def test_offload_hooks_run_forward():
    b = load_bundle("tiny-sd15")
    images, pose, text = _inputs(b, batch=1)
    before = b.unet_forward(b.encode_images(images), 4, text)
    enable_cpu_offload({"text_encoder": b.text_encoder, "unet": b.unet, "vae": b.vae,
                        "controlnet": b.controlnet}, torch.device("cpu"))
    assert hasattr(b.vae, "_hf_hook") and hasattr(b.unet, "_hf_hook")
    torch.testing.assert_close(b.unet_forward(b.encode_images(images), 4, b.encode_prompt("a red square")),
                               before)


# --- loading and offline behaviour --------------------------------------------------------------------

@pytest.mark.timeout(60)   # a hang guard, not a timing: failing offline must not wait
@pytest.mark.parametrize("preset, repo", [("sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5"),
                                          ("sdxl", "stabilityai/stable-diffusion-xl-base-1.0")])
def test_preset_offline_fails_fast(empty_hub_cache, preset, repo):
    with pytest.raises(ModelUnavailable, match=preset) as err:
        load_bundle(preset)
    assert f"huggingface-cli download {repo}" in str(err.value)
    assert not weights_available(preset) and not weights_available("sd21")
    assert weights_available("tiny") and weights_available("tiny-sd21-v")


@pytest.mark.timeout(60)   # a hang guard, not a timing: failing offline must not wait
def test_missing_paths_fail_fast(tmp_path, empty_hub_cache):
    with pytest.raises(ModelUnavailable, match="nope"):
        load_bundle(str(tmp_path / "nope"))
    with pytest.raises(ModelUnavailable, match="no such file"):
        load_bundle(str(tmp_path / "nope.safetensors"))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelUnavailable, match="from_single_file"):
        load_bundle(str(garbage))
    with pytest.raises(ModelUnavailable, match="ControlNet"):
        load_bundle("tiny", controlnet=str(tmp_path / "no-controlnet"))
    with pytest.raises(ModelUnavailable, match="acme/missing"):
        load_bundle("acme/missing")
    assert not weights_available(str(tmp_path / "nope"))


def _save_diffusers(bundle, directory, with_controlnet=False):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(vae=bundle.vae, text_encoder=bundle.text_encoder, tokenizer=bundle.tokenizer,
                                   unet=bundle.unet, scheduler=bundle.make_scheduler(10), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(directory)
    if with_controlnet:
        bundle.controlnet.save_pretrained(directory / "controlnet")


def _same_outputs(a, b):
    images, pose, text = _inputs(a, batch=1)
    za = a.encode_images(images)
    torch.testing.assert_close(za, b.encode_images(images))
    torch.testing.assert_close(text, b.encode_prompt("a red square"))
    torch.testing.assert_close(a.unet_forward(za, 11, text), b.unet_forward(za, 11, text))


def test_local_directory_round_trip(bundles, tmp_path):
    tiny = bundles["tiny-sd21-v"]
    first = tmp_path / "first"
    _save_diffusers(tiny, first, with_controlnet=True)
    assert json.loads((first / "model_index.json").read_text())["unet"][1] == "UNet2DConditionModel"
    loaded = load_bundle(str(first))
    assert loaded.identity.startswith("dir:") and str(tmp_path) not in loaded.identity
    assert loaded.prediction_type == "v_prediction" and loaded.controlnet is not None
    _same_outputs(tiny, loaded)
    second = tmp_path / "elsewhere" / "copy"
    shutil.copytree(first, second)
    assert load_bundle(str(second)).identity == loaded.identity
    assert load_bundle(str(second), controlnet=None).controlnet is None
    with_cn = load_bundle("tiny-sd15", controlnet=str(second / "controlnet"))
    assert with_cn.identity.startswith(bundles["tiny-sd15"].identity + "+dir:")
    (second / "unet" / "config.json").write_text((second / "unet" / "config.json").read_text() + " ")
    assert load_bundle(str(second), controlnet=None).identity.split("+")[0] != loaded.identity.split("+")[0]
    assert weights_available(str(second))


def test_hub_id_from_offline_cache(bundles, empty_hub_cache, monkeypatch, caplog):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = empty_hub_cache / "models--acme--tiny-sd"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    _save_diffusers(bundles["tiny-sd15"], repo / "snapshots" / commit)
    assert weights_available("acme/tiny-sd")
    loaded = load_bundle("acme/tiny-sd")
    assert loaded.identity == f"acme/tiny-sd@{commit}"
    _same_outputs(bundles["tiny-sd15"], loaded)
    monkeypatch.setitem(models.PRESETS, "fake", ("acme/tiny-sd", "acme/missing-controlnet"))
    with caplog.at_level(logging.WARNING, logger="interp.models.bundle"):
        preset = load_bundle("fake")  # controlnet="auto": warn and go on without
    assert preset.controlnet is None and "acme/missing-controlnet" in caplog.text
    assert preset.identity == loaded.identity
    with pytest.raises(ModelUnavailable, match="acme/missing-controlnet"):
        load_bundle("fake", controlnet="acme/missing-controlnet")


@pytest.mark.timeout(60)   # a hang guard, not a timing: failing offline must not wait
def test_unreachable_hub_without_offline_env_fails_fast(monkeypatch, empty_hub_cache):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    hub._hub_reachable.cache_clear()
    assert hub.hub_offline()
    with pytest.raises(ModelUnavailable, match="local Hugging Face cache"):
        load_bundle("acme/missing")
    hub._hub_reachable.cache_clear()


def test_bad_arguments():
    with pytest.raises(TypeError, match="model"):
        load_bundle("")
    with pytest.raises(TypeError, match="controlnet"):
        load_bundle("tiny", controlnet=3)


@pytest.mark.parametrize("device, cached, expected, words", [
    ("cuda", True, "sd15", None),
    ("cpu", True, "toy", "no GPU here"),
    ("cuda", False, "toy", "huggingface-cli download"),
])
def test_with_no_model_requested_the_default_needs_its_weights_and_a_gpu(monkeypatch, device,
                                                                        cached, expected, words):
    from interp.models import startup
    monkeypatch.setattr(models, "weights_available", lambda name: name == "toy" or cached)
    name, note = startup.resolve_model(None, device)
    assert name == expected and (note is None if words is None else words in note)
    assert startup.resolve_model("sd21", "cpu") == ("sd21", None)      # asked for: as asked
