"""Slerp, shared-noise forward diffusion, generators and the DDIM loop (pure + tiny model)."""
import math

import pytest
import torch
from hypothesis import given, settings as hsettings, strategies as st

from interp.sampling import (Control, Guidance, add_noise, denoise, derive_seed, make_generator,
                             noised_slerp, predict, randn, slerp)


def _vec(values):
    return torch.tensor(values, dtype=torch.float32)


def test_slerp_hand_computed_quarter_circle():
    p0, p1 = _vec([1.0, 0.0]), _vec([0.0, 1.0])
    mid = slerp(p0, p1, 0.5)
    assert torch.allclose(mid, _vec([math.sqrt(0.5), math.sqrt(0.5)]), atol=1e-6)
    third = slerp(p0, p1, 1 / 3)
    assert torch.allclose(third, _vec([math.cos(math.pi / 6), math.sin(math.pi / 6)]), atol=1e-6)


def test_slerp_uses_one_global_angle_not_per_row():
    # Per-row slerp would keep each row's norm; a global angle treats the tensor as one vector.
    p0 = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    p1 = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    out = slerp(p0, p1, 0.5)
    a, b = p0.flatten().double(), p1.flatten().double()
    theta = torch.arccos(a @ b / (a.norm() * b.norm()))
    expected = (torch.sin(0.5 * theta) / torch.sin(theta)) * (a + b)
    assert torch.allclose(out.flatten().double(), expected, atol=1e-6)


@hsettings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=3, max_size=3),
       st.lists(st.floats(-5, 5), min_size=3, max_size=3), st.floats(0, 1))
def test_slerp_properties(a, b, w):
    p0, p1 = _vec(a), _vec(b)
    if p0.norm() < 1e-2 or p1.norm() < 1e-2:
        return
    assert torch.allclose(slerp(p0, p1, 0.0), p0, atol=1e-4)
    assert torch.allclose(slerp(p0, p1, 1.0), p1, atol=1e-4)
    out = slerp(p0, p1, w)
    assert torch.isfinite(out).all()
    # For unit vectors the result stays on the unit sphere (unless nearly antipodal).
    u0, u1 = p0 / p0.norm(), p1 / p1.norm()
    if (u0 @ u1) > -0.99:
        assert abs(slerp(u0, u1, w).norm().item() - 1.0) < 1e-4


def test_slerp_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="equal shapes"):
        slerp(torch.zeros(2), torch.zeros(3), 0.5)


def test_derived_seeds_are_stable_and_distinct():
    assert derive_seed(0, 8, 0) == derive_seed(0, 8, 0)
    seeds = {derive_seed(0, f, c) for f in range(17) for c in range(8)}
    assert len(seeds) == 17 * 8
    assert all(0 <= s < 2**63 for s in seeds)


def test_generators_do_not_touch_global_rng():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    randn((4,), make_generator(5), "cpu")
    assert torch.equal(before, torch.random.get_rng_state())


@pytest.fixture(scope="module")
def scheduler():
    from diffusers import DDIMScheduler
    s = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                      clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    s.set_timesteps(200)
    return s


def test_add_noise_matches_paper_coefficients(scheduler):
    z0, eps = torch.ones(1, 4, 2, 2), torch.zeros(1, 4, 2, 2)
    # method.md: t = 551 -> sqrt(abar) = 0.461; 301 -> 0.767
    assert add_noise(scheduler, z0, eps, 551)[0, 0, 0, 0].item() == pytest.approx(0.461, abs=1e-3)
    assert add_noise(scheduler, z0, eps, 301)[0, 0, 0, 0].item() == pytest.approx(0.767, abs=1e-3)


def test_noised_slerp_shares_noise_between_parents(scheduler):
    g = make_generator(1)
    z = randn((1, 4, 4, 4), g, "cpu")
    eps = randn((3, 4, 4, 4), g, "cpu")
    out = noised_slerp(scheduler, z, z, 0.3, eps, 551)
    # Equal parents + shared noise: the slerp of two equal noisy latents is that latent.
    for k in range(3):
        assert torch.allclose(out[k:k + 1], add_noise(scheduler, z, eps[k:k + 1], 551), atol=1e-5)
    assert not torch.allclose(out[0], out[1])  # candidates differ only by their noise


@pytest.fixture(scope="module")
def bundle():
    from interp.models.load import load_bundle
    return load_bundle("tiny-sd15")


def _guidance(bundle, scale=7.5):
    g = make_generator(2)
    cond = randn((1, 77, bundle.text_encoder.config.hidden_size), g, "cpu")
    return Guidance(cond, torch.zeros_like(cond), scale)


def test_denoise_runs_exactly_start_index_plus_one_steps_in_one_batch(bundle, scheduler):
    sched = bundle.make_scheduler(20)
    x = torch.randn(3, 4, 8, 8, generator=make_generator(0))
    before = bundle.counter.snapshot()
    steps = []
    denoise(bundle, sched, x, 5, _guidance(bundle), [make_generator(i) for i in range(3)],
            eta=0.1, on_step=lambda n, total: steps.append((n, total)))
    after = bundle.counter.snapshot()
    assert after["calls"]["unet"] - before["calls"]["unet"] == 6  # indices 5..0
    assert after["rows"]["unet"] - before["rows"]["unet"] == 6 * 3 * 2  # candidates x CFG in one batch
    assert steps[-1] == (6, 6)


def test_denoise_first_step_is_at_the_start_level(bundle):
    sched = bundle.make_scheduler(20)
    seen = []
    bundle.unet.register_forward_pre_hook(lambda m, args, kw: seen.append(int(args[1])),
                                          with_kwargs=True)
    try:
        denoise(bundle, sched, torch.zeros(1, 4, 8, 8), 7, _guidance(bundle, 1.0),
                [make_generator(0)])
    finally:
        bundle.unet._forward_pre_hooks.clear()
    expected = list(reversed(sched.timesteps.flip(0)[:8].tolist()))
    assert seen == expected  # starts exactly at index 7, no skipped steps


def test_denoise_candidates_follow_their_own_generators(bundle):
    sched = bundle.make_scheduler(10)
    x = torch.randn(1, 4, 8, 8, generator=make_generator(0)).repeat(2, 1, 1, 1)
    out = denoise(bundle, sched, x, 4, _guidance(bundle), [make_generator(1), make_generator(2)],
                  eta=1.0)
    solo = denoise(bundle, sched, x[:1], 4, _guidance(bundle), [make_generator(2)], eta=1.0)
    assert not torch.allclose(out[0], out[1])
    assert torch.allclose(out[1:2], solo, atol=1e-4)  # batching does not change a candidate


def test_controlnet_scale_zero_equals_no_control(bundle):
    x = torch.randn(2, 4, 8, 8, generator=make_generator(3))
    images = torch.rand(1, 3, 64, 64, generator=make_generator(4))
    guidance = _guidance(bundle)
    off = predict(bundle, x, 500, guidance)
    zero = predict(bundle, x, 500, guidance, Control(images, torch.zeros(2)))
    on = predict(bundle, x, 500, guidance, Control(images, torch.tensor([0.0, 2.0])))
    assert torch.allclose(off, zero, atol=1e-5)
    assert torch.allclose(on[0], off[0], atol=1e-5)
    assert not torch.allclose(on[1], off[1], atol=1e-4)
