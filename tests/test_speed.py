"""Speed options (channels-last, torch.compile of the UNet, VAE slicing, attention processor) on tiny models,
and benchmarks/gpu.py's CPU run. Timings are the benchmark's business; these check the options change
nothing but speed and memory."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

from interp.models.load import load_bundle
from interp.models.speed import compile_in_place, set_attention

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def reference():
    return load_bundle("tiny-sd15")


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 77, 32, generator=g),
            torch.rand(2, 3, 64, 64, generator=g), torch.rand(2, 3, 64, 64, generator=g) * 2 - 1)


def _outputs(bundle):
    latents, text, pose, images = _inputs()
    with torch.no_grad():
        down, mid = bundle.controlnet_forward(latents, 10, text, pose, torch.ones(2))
        return (bundle.unet_forward(latents, 10, text, down, mid), bundle.encode_images(images),
                bundle.decode_latents(latents))


def test_channels_last_changes_layout_not_results(reference):
    fast = load_bundle("tiny-sd15", channels_last=True)
    conv = fast.unet.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert fast.vae.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert fast.controlnet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    for got, want in zip(_outputs(fast), _outputs(reference)):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_vae_slicing_decodes_one_image_at_a_time_with_the_same_result(reference):
    sliced = load_bundle("tiny-sd15", vae_slicing=True)
    calls = []
    hook = sliced.vae.decoder.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    try:
        latents = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(4))
        with torch.no_grad():
            got = sliced.decode_latents(latents)
    finally:
        hook.remove()
    assert calls == [1, 1, 1]  # three images, three decoder passes of one image each
    with torch.no_grad():
        torch.testing.assert_close(got, reference.decode_latents(latents), rtol=1e-4, atol=1e-5)
    assert sliced.counter.snapshot()["calls"]["vae_decode"] == 1  # still one call of the bundle


def test_classic_attention_processor_matches_sdpa(reference):
    classic = load_bundle("tiny-sd15")
    set_attention({"unet": classic.unet, "controlnet": classic.controlnet}, "classic")
    assert all(isinstance(p, AttnProcessor) for p in classic.unet.attn_processors.values())
    assert all(isinstance(p, AttnProcessor2_0) for p in reference.unet.attn_processors.values())  # the default
    for got, want in zip(_outputs(classic), _outputs(reference)):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="attention"):
        set_attention({"unet": classic.unet}, "flash")


def test_compile_unet_option_marks_the_unet_in_place(reference):
    """load_bundle(compile_unet=True) compiles lazily: checked without a call (inductor needs ~1 min for
    the tiny UNet on this CPU); the compiled call path itself runs below with dynamo's eager backend."""
    compiled = load_bundle("tiny-sd15", compile_unet=True)
    assert compiled.unet._compiled_call_impl is not None and compiled.unet.config.sample_size == 8
    assert compiled.controlnet._compiled_call_impl is None


def test_compiled_unet_call_path_gives_the_same_prediction(reference):
    bundle = load_bundle("tiny-sd15")
    compile_in_place(bundle.unet, backend="eager")
    latents, text, _, _ = _inputs(1)
    with torch.no_grad():
        torch.testing.assert_close(bundle.unet_forward(latents, 10, text), reference.unet_forward(latents, 10, text),
                                   rtol=1e-5, atol=1e-6)
    assert bundle.counter.snapshot()["calls"]["unet"] == 1


def test_gpu_benchmark_runs_on_the_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--device", "cpu", "--size", "64",
                           "--frames", "3", "--steps", "2", "--out", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    runs = {(r["model"], r["run"]): r for r in rows}
    assert {m for m, _ in runs} == {"tiny-sd15", "tiny-sd21-v"}
    assert {r for _, r in runs} == {"full: sdpa (default)", "sdpa (default)", "classic attention", "channels-last",
                                    "vae slicing", "vae tiling", "attention slicing", "cpu offload", "compile unet"}
    for row in rows:
        if "skipped" in row:
            assert row["run"] in ("cpu offload", "compile unet")
            continue
        assert "error" not in row and row["frames"] == 3 and row["steps"] == 2
        assert row["unet_rows"] == row["minimum"] and row["generated"] == 1
        assert 0 < row["forward_s"] <= row["wall_s"]
    assert "s_per_frame" in done.stdout and "tiny-sd21-v" in done.stdout
