"""Endpoint attention (interp.attention) at the level of one denoising call on tiny models: strength 0
is the paper's frame bit for bit, the processors leave no trace, the endpoint rows are the endpoints'
own at the same timestep, and the injection does what its formula says."""
from __future__ import annotations

import pytest
import torch

from interp.attention import Injection, installed
from interp.settings import AttentionBlocks, AttentionMode
from interp.models.load import load_bundle
from interp.sampling import Guidance, add_noise, denoise, make_generator
from interp.scheduler import by_index


@pytest.fixture(scope="module", params=["tiny-sd15", "tiny-sd21", "tiny-sdxl"])
def bundle(request):
    return load_bundle(request.param)


def _setup(bundle, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(2, 4, 8, 8, generator=g)                         # clean latents of A and B
    cond = torch.cat([bundle.encode_prompt("a red circle"), bundle.encode_prompt("a blue square")])
    uncond = bundle.encode_prompt("blurry", negative=True).expand(2, -1, -1)
    x = torch.randn(3, 4, 8, 8, generator=g)                         # three candidates
    return z, cond, uncond, x


def _injection(z, cond, uncond, mode=AttentionMode.INTERPOLATE, strength=1.0, share=0.5,
               blocks=AttentionBlocks.ALL, weight=0.25, eps=None):
    eps = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(7)) if eps is None else eps
    return Injection(mode, strength, share, blocks, weight, z, eps, cond, uncond)


def _run(bundle, x, cond, uncond, injection=None, steps=6, start=4):
    scheduler = bundle.make_scheduler(steps)
    guidance = Guidance(cond[:1] * 0.5 + cond[1:] * 0.5, uncond[:1], 4.0)
    gens = [make_generator(i) for i in range(x.shape[0])]
    with torch.no_grad():
        return denoise(bundle, scheduler, x, start, guidance, gens, eta=0.0, injection=injection)


def test_strength_zero_and_mode_off_are_the_plain_frames_bit_for_bit(bundle):
    z, cond, uncond, x = _setup(bundle)
    plain = _run(bundle, x, cond, uncond)
    rows = bundle.counter.snapshot()["rows"]["unet"]
    for inj in (_injection(z, cond, uncond, strength=0.0),
                _injection(z, cond, uncond, mode=AttentionMode.OFF)):
        assert torch.equal(_run(bundle, x, cond, uncond, inj), plain)
    # no endpoint rows were added: 2 runs x 5 steps x 3 candidates x 2 (CFG) rows
    assert bundle.counter.snapshot()["rows"]["unet"] - rows == 2 * 5 * 3 * 2


def test_processors_are_removed_after_a_call_and_the_model_is_as_fresh(bundle):
    z, cond, uncond, x = _setup(bundle)
    before = bundle.unet.attn_processors
    injected = _run(bundle, x, cond, uncond, _injection(z, cond, uncond))
    after = bundle.unet.attn_processors
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)
    fresh = load_bundle(bundle.name)
    assert torch.equal(_run(bundle, x, cond, uncond), _run(fresh, x, cond, uncond))
    assert not torch.equal(injected, _run(bundle, x, cond, uncond))   # it did something
    with pytest.raises(RuntimeError, match="boom"):                   # removed after an error too
        with installed(bundle.unet, _injection(z, cond, uncond)):
            raise RuntimeError("boom")
    assert all(bundle.unet.attn_processors[k] is before[k] for k in before)


def test_endpoint_rows_are_the_endpoints_noised_to_the_frames_timestep(bundle):
    z, cond, uncond, x = _setup(bundle)
    eps = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    seen = []
    hook = bundle.unet.register_forward_pre_hook(
        lambda m, args, kw: seen.append((args[0].clone(), int(args[1]))), with_kwargs=True)
    try:
        _run(bundle, x, cond, uncond, _injection(z, cond, uncond, share=0.5, eps=eps), steps=6,
             start=4)
    finally:
        hook.remove()
    scheduler = bundle.make_scheduler(6)
    expected_t = [int(t) for t in by_index(scheduler)[[4, 3, 2, 1, 0]]]
    assert [t for _, t in seen] == expected_t                        # the frame's own timesteps
    injected = [s for s in seen if s[0].shape[0] == 2 * (3 + 2)]
    assert len(injected) == 3                                        # ceil(0.5 x 5) -> 3 steps
    for sample, t in injected:
        ends = add_noise(scheduler, z, eps.expand(2, -1, -1, -1), t)
        for half in (0, 5):                                          # uncond and cond halves
            torch.testing.assert_close(sample[half + 3:half + 5].float(), ends)


def _attn1_io(bundle, blocks_prefix="up_blocks"):
    """Record each attn1 layer's input hidden states and output (forward hooks)."""
    records, hooks = {}, []
    for name, module in bundle.unet.named_modules():
        if name.endswith("attn1") and name.startswith(blocks_prefix):
            hooks.append(module.register_forward_hook(
                lambda m, args, kw, out, name=name: records.setdefault(name, []).append(
                    (kw.get("hidden_states", args[0] if args else None), out)),
                with_kwargs=True))
    return records, hooks


def test_interpolate_at_full_strength_mixes_the_endpoints_keys_and_values(bundle):
    """Formula check on one attn1 layer: frame rows' K/V = (1 - w) K_A + w K_B."""
    z, cond, uncond, x = _setup(bundle)
    records, hooks = _attn1_io(bundle)
    try:
        _run(bundle, x, cond, uncond, _injection(z, cond, uncond, weight=0.25, share=0.2))
    finally:
        for h in hooks:
            h.remove()
    name, calls = next(iter(records.items()))
    hidden, out = calls[0]                                           # the first (injected) step
    attn = dict(bundle.unet.named_modules())[name]
    q, k, v = attn.to_q(hidden), attn.to_k(hidden), attn.to_v(hidden)
    mix = lambda t, row, a, b: 0.75 * t[a] + 0.25 * t[b]             # noqa: E731
    k2, v2 = k.clone(), v.clone()
    for half in (0, 5):
        for row in range(half, half + 3):
            k2[row], v2[row] = mix(k, row, half + 3, half + 4), mix(v, row, half + 3, half + 4)
    heads, d = attn.heads, k.shape[-1] // attn.heads
    split = lambda t: t.reshape(t.shape[0], -1, heads, d).transpose(1, 2)   # noqa: E731
    ref = torch.nn.functional.scaled_dot_product_attention(split(q), split(k2), split(v2))
    ref = attn.to_out[0](ref.transpose(1, 2).reshape(hidden.shape))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def test_extend_at_weight_zero_attends_to_own_and_endpoint_a_tokens(bundle):
    z, cond, uncond, x = _setup(bundle)
    records, hooks = _attn1_io(bundle)
    try:
        _run(bundle, x, cond, uncond, _injection(z, cond, uncond, mode=AttentionMode.EXTEND,
                                                 weight=0.0, share=0.2))
    finally:
        for h in hooks:
            h.remove()
    name, calls = next(iter(records.items()))
    hidden, out = calls[0]
    attn = dict(bundle.unet.named_modules())[name]
    heads = attn.heads
    row, a_row = 1, 3                                                # a frame row and A's row
    kv = torch.cat([hidden[row], hidden[a_row]])                     # own tokens then A's
    q, k, v = attn.to_q(hidden[row]), attn.to_k(kv), attn.to_v(kv)
    d = q.shape[-1] // heads
    split = lambda t: t.reshape(1, -1, heads, d).transpose(1, 2)     # noqa: E731
    ref = torch.nn.functional.scaled_dot_product_attention(split(q), split(k), split(v))
    ref = attn.to_out[0](ref.transpose(1, 2).reshape(1, -1, q.shape[-1]))[0]
    torch.testing.assert_close(out[row], ref, atol=1e-5, rtol=1e-4)


# -- in a render -----------------------------------------------------------------------------------

def _render_settings():
    from interp.settings import Settings
    return Settings(frames=5, num_inference_steps=8, size=64, candidates=2, prompt="a photo",
                    guidance_scale=4.0)


def test_a_render_with_strength_zero_is_the_render_without_attention(bundle, photo_pair):
    from interp.render import Interpolator
    from interp.store import FrameStore
    s = _render_settings()
    off = Interpolator(bundle, FrameStore()).render(*photo_pair, s)
    zero = Interpolator(bundle, FrameStore()).render(
        *photo_pair, s.replace(attention=AttentionMode.EXTEND, attention_strength=0.0))
    assert [f.key for f in zero.frames] == [f.key for f in off.frames]
    assert all(torch.equal(a.latents, b.latents) for a, b in zip(off.frames, zero.frames))


def test_attention_in_a_render_costs_its_endpoint_rows_and_leaves_no_trace(bundle, photo_pair):
    from interp.render import Interpolator
    from interp.store import FrameStore
    s = _render_settings()
    on = s.replace(attention=AttentionMode.INTERPOLATE, attention_strength=0.8,
                   attention_share=0.5)
    engine = Interpolator(bundle, FrameStore())
    first = engine.render(*photo_pair, on)
    # By hand: S = 8 -> DDIM index 4 (5 steps) for the middle frame, 2 (3 steps) for frames 1, 3;
    # 2 candidates x 2 (CFG) rows a step, plus 2 endpoint rows x 2 (CFG) for the first
    # ceil(0.5 x steps) steps: 3 (of 5), 2 and 2 (of 3).
    assert first.counts["rows"]["unet"] == (5 + 3 + 3) * 2 * 2 + (3 + 2 + 2) * 2 * 2
    assert first.expected_counts["unet_rows"] == first.counts["rows"]["unet"]
    after = engine.render(*photo_pair, s)                       # attention off again
    fresh = Interpolator(load_bundle(bundle.name), FrameStore()).render(*photo_pair, s)
    assert all(torch.equal(a.latents, b.latents) for a, b in zip(after.frames, fresh.frames))
    assert not torch.equal(after.frames[2].latents, first.frames[2].latents)
    back = engine.render(*photo_pair, on)                       # toggling back reuses
    assert back.generated == [] and back.counts["rows"]["unet"] == 0
