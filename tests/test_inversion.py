"""Textual inversion on the tiny models: it learns, it is cached by content, it cancels cleanly."""
import math

import pytest
import torch
from diffusers import DDIMScheduler

from interp.scheduler import SD_DDIM
from interp.errors import Cancelled
from interp.events import CancelToken, StageProgress
from helpers import denoising_error
from interp.inversion import augment, invert, prediction_target
from interp.keys import engine_identity, inversion_key
from interp.models.load import load_bundle
from interp.settings import Settings
from interp.store import FrameStore
from interp.text import plain_conditions

STEPS = 48
LEARN = Settings(num_inference_steps=30, prompt="a shape", negative_prompt="blurry",
                 invert_steps=STEPS, invert_lr=0.1, size=64, seed=0)
QUICK = LEARN.replace(invert_steps=2)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny models are ~20x faster on one thread than on oversubscribed shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def bundle():
    return load_bundle("tiny-sd15", controlnet=None)


@pytest.fixture(scope="module")
def images():
    """A red disc on dark blue and a pale square on a two-tone ground, 64x64 in [-1, 1]."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    disc = ((xx ** 2 + yy ** 2) < 0.4).float()
    square = ((xx.abs() < 0.5) & (yy.abs() < 0.5)).float()
    a = torch.stack([disc * 1.6 - 0.8, torch.full_like(xx, -0.6), torch.full_like(xx, -0.2)])
    b = torch.stack([torch.full_like(xx, 0.3), square - 0.5, (yy > 0).float() * 1.8 - 0.9])
    return torch.stack([a, b]).clamp(-1, 1)


def _unet_rows(bundle, fn):
    before = bundle.counter.snapshot()["rows"]["unet"]
    out = fn()
    return out, bundle.counter.snapshot()["rows"]["unet"] - before


@pytest.fixture(scope="module")
def learned(bundle, images, tmp_path_factory):
    """One full inversion into a disk store, with its events, UNet rows and global RNG state."""
    store = FrameStore(tmp_path_factory.mktemp("inv"))
    events = []
    rng = torch.random.get_rng_state()
    weights = [p.detach().clone() for p in bundle.unet.parameters()]
    result, rows = _unet_rows(bundle, lambda: invert(bundle, images, LEARN, store, events.append))
    assert torch.equal(rng, torch.random.get_rng_state()), "inversion used the global RNG"
    frozen = all(torch.equal(w, p) and p.grad is None for w, p in zip(weights, bundle.unet.parameters()))
    return dict(result=result, rows=rows, events=events, store=store, frozen=frozen)


def test_inversion_loss_decreases_and_counts_work(learned):
    result, losses = learned["result"], learned["result"].losses
    assert not result.reused and len(losses) == STEPS and all(math.isfinite(v) for v in losses)
    q = STEPS // 4
    assert sum(losses[-q:]) / q < sum(losses[:q]) / q
    # one CFG call (2 rows) per image per iteration, and a progress event per iteration
    assert learned["rows"] == 4 * STEPS
    assert learned["events"] == [StageProgress("invert", i, STEPS) for i in range(1, STEPS + 1)]
    assert learned["frozen"], "UNet weights changed or got gradients"


def test_learned_embedding_denoises_its_image_better(bundle, images, learned):
    conds, plain = learned["result"].conds, plain_conditions(bundle, LEARN)
    with torch.no_grad():
        z = bundle.encode_images(images)
    for k, (before, after) in enumerate([(plain.cond_a, conds.cond_a), (plain.cond_b, conds.cond_b)]):
        err = [denoising_error(bundle, z[k:k + 1], c, u, LEARN, torch.Generator().manual_seed(99), 24)
               for c, u in ((before, plain.uncond), (after, conds.uncond))]
        assert err[1] < err[0], f"image {k}: learned {err[1]:.4f} is not below plain {err[0]:.4f}"


def test_second_run_reuses_the_cached_result(bundle, images, learned):
    events = []
    restarted = FrameStore(learned["store"].directory)  # a new process: the disk copy only
    for store in (learned["store"], restarted):
        again, rows = _unet_rows(bundle, lambda: invert(bundle, images, LEARN, store, events.append))
        assert rows == 0 and events == [] and again.reused
        assert again.losses == pytest.approx(learned["result"].losses)
        for name in ("cond_a", "cond_b", "uncond"):
            assert torch.equal(getattr(again.conds, name), getattr(learned["result"].conds, name))


CHANGES = {
    "steps": lambda s, im: (s.replace(invert_steps=3), im),
    "lr": lambda s, im: (s.replace(invert_lr=0.2), im),
    "prompt": lambda s, im: (s.replace(prompt="a thing"), im),
    "prompt_b": lambda s, im: (s.replace(prompt_b="another"), im),
    "negative": lambda s, im: (s.replace(negative_prompt=""), im),
    "guidance": lambda s, im: (s.replace(guidance_scale=5.0), im),
    "schedule": lambda s, im: (s.replace(num_inference_steps=24), im),
    "seed": lambda s, im: (s.replace(seed=1), im),
    "image": lambda s, im: (s, torch.cat([im[:1], im[1:].flip(-2)])),
    "size": lambda s, im: (s, im[..., :56, :]),
}


def test_keyed_fields_rerun_and_others_do_not(bundle, images):
    store = FrameStore()
    base, rows = _unet_rows(bundle, lambda: invert(bundle, images, QUICK, store))
    assert rows == 4 * QUICK.invert_steps and store.contains(base.key)
    keys = {base.key}
    for name, change in CHANGES.items():
        settings, imgs = change(QUICK, images)
        result, rows = _unet_rows(bundle, lambda: invert(bundle, imgs, settings, store))
        assert not result.reused and rows == 4 * settings.invert_steps, name
        keys.add(result.key)
    assert len(keys) == len(CHANGES) + 1
    for unread in (QUICK.replace(frames=9, eta=0.0, candidates=2, pose=True),):
        result, rows = _unet_rows(bundle, lambda: invert(bundle, images, unread, store))
        assert result.reused and rows == 0


def test_same_seed_same_result_without_store(bundle, images):
    one, two = (invert(bundle, images, QUICK) for _ in range(2))
    assert not two.reused and one.losses == two.losses
    assert torch.equal(one.conds.uncond, two.conds.uncond)


def test_cancel_midway_writes_nothing_and_rerun_completes(bundle, images):
    settings, store, token, seen = QUICK.replace(invert_steps=6), FrameStore(), CancelToken(), []

    def on_event(event):
        seen.append(event)
        if event.step == 3:
            token.cancel()

    with pytest.raises(Cancelled):
        invert(bundle, images, settings, store, on_event, token)
    key = inversion_key(engine_identity(bundle), images, settings)
    assert [e.step for e in seen] == [1, 2, 3] and not store.contains(key)
    result, rows = _unet_rows(bundle, lambda: invert(bundle, images, settings, store, seen.append,
                                                     CancelToken()))
    assert rows == 4 * 6 and len(result.losses) == 6 and store.contains(key)


@pytest.mark.parametrize("model", ["tiny-sd21", "tiny-sd21-v"])
def test_sd21_shapes(model, images):
    other = load_bundle(model, controlnet=None)
    store = FrameStore()
    result = invert(other, images, QUICK, store)
    d = other.text_encoder.config.hidden_size
    for name in ("cond_a", "cond_b", "uncond"):
        tensor = getattr(result.conds, name)
        assert tensor.shape == (1, 77, d) and tensor.dtype == other.dtype
        assert torch.isfinite(tensor).all()
    assert all(math.isfinite(v) for v in result.losses)
    assert invert(other, images, QUICK, store).reused


def test_prediction_target_epsilon_and_velocity():
    z0, eps, t = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8), 501
    eps_sched = DDIMScheduler.from_config(SD_DDIM)
    assert torch.equal(prediction_target(eps_sched, z0, eps, t), eps)
    v_sched = DDIMScheduler.from_config({**SD_DDIM, "prediction_type": "v_prediction"})
    abar = float(v_sched.alphas_cumprod[t])
    expected = math.sqrt(abar) * eps - math.sqrt(1 - abar) * z0
    assert torch.allclose(prediction_target(v_sched, z0, eps, t), expected, atol=1e-6)
    x_sched = DDIMScheduler.from_config({**SD_DDIM, "prediction_type": "sample"})
    assert torch.equal(prediction_target(x_sched, z0, eps, t), z0)


def test_augment_is_seeded_in_range_and_leaves_global_rng(images):
    rng = torch.random.get_rng_state()
    one = augment(images, torch.Generator().manual_seed(5))
    two = augment(images, torch.Generator().manual_seed(5))
    three = augment(images, torch.Generator().manual_seed(6))
    assert torch.equal(rng, torch.random.get_rng_state())
    assert one.shape == images.shape and torch.equal(one, two) and not torch.equal(one, three)
    assert one.min() >= -1 and one.max() <= 1 and not torch.equal(one, images)


def test_bad_inputs_are_rejected(bundle, images):
    with pytest.raises(ValueError, match="images"):
        invert(bundle, images[:1], QUICK)
    with pytest.raises(ValueError, match="images"):
        invert(bundle, images * 3, QUICK)
    with pytest.raises(TypeError, match="images"):
        invert(bundle, images.numpy(), QUICK)
    with torch.no_grad():
        z = bundle.encode_images(images)
    conds = plain_conditions(bundle, QUICK)
    with pytest.raises(ValueError, match="draws"):
        denoising_error(bundle, z, conds.cond_a, conds.uncond, QUICK, torch.Generator(), 0)
