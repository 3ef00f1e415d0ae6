"""Full-size random models: the real SD 1.5, SD 2.1 (768, v-prediction) and SDXL base architectures, each
with its OpenPose ControlNet, built from their public configs (interp/models/configs) with random weights.

They have the real shapes, memory and speed, so they prove the real-model path and time it on a GPU;
their images are noise. Weights are deterministic (one fixed seed; the global RNG is untouched) and
sane: every norm weight 1, every bias 0, every other tensor N(0, 1/fan_in) (unit-scale activations, so
outputs stay finite through the whole pipeline, also in float16). Building is fast: modules are made
with empty (meta) parameters, then each tensor is filled from one shared pool of normal values at an
offset of its own, directly in the target dtype and on the target device (no per-tensor RNG).
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from interp.models.tokenizer import EOS, OPEN_CLIP_PAD, build_tokenizer
from interp.scheduler import ddim_config

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).with_name("configs")
RANDOM_VERSION = "v1"  # bump when the fill below changes in a way the configs do not show
RANDOM_SEED = 0  # the seed of the pool every random model's weights are drawn from
POOL_SIZE = 1_000_003  # a prime: rows of a tensor never line up with the pool's period
WEIGHTS = ("unet", "controlnet", "vae", "text_encoder", "text_encoder_2")


@dataclass(frozen=True)
class RandomSpec:
    """One full-size architecture: its config folder, ControlNet config and tokenizer padding."""

    label: str  # for people: "SD 1.5"
    family: str  # folder under configs/: its unet, vae, text_encoder(_2) and scheduler configs
    controlnet: str  # folder under configs/ holding the OpenPose ControlNet's config.json
    pad_token: str  # the tokenizer's pad: "<|endoftext|>" (SD 1.x) or "!" (SD 2.x)
    sdxl: bool = False  # two text encoders, pooled embeddings and time ids

    def configs(self) -> dict:
        """Every component's config as plain data (what the identity hashes)."""
        out = {name: read_config(f"{self.family}/{name}/config.json") for name in ("unet", "vae", "text_encoder")}
        if self.sdxl:
            out["text_encoder_2"] = read_config(f"{self.family}/text_encoder_2/config.json")
        out["controlnet"] = read_config(f"{self.controlnet}/config.json")
        out["scheduler"] = read_config(f"{self.family}/scheduler/scheduler_config.json")
        return out


RANDOM_SPECS = {
    "random-sd15": RandomSpec("SD 1.5", "sd15", "controlnet_sd15_openpose", EOS),
    "random-sd21": RandomSpec("SD 2.1 (768, v-prediction)", "sd21", "controlnet_sd21_openpose", OPEN_CLIP_PAD),
    "random-sdxl": RandomSpec("SDXL base 1.0", "sdxl", "controlnet_sdxl_openpose", EOS, sdxl=True),
}


@functools.lru_cache(maxsize=32)
def _read(relative: str) -> str:
    path = CONFIG_DIR / relative
    if not path.is_file():
        raise FileNotFoundError(f"config {relative!r} is missing from {CONFIG_DIR}; reinstall interp")
    return path.read_text()


def read_config(relative: str) -> dict:
    """A config under interp/models/configs as a fresh dict (keys starting with "_" dropped)."""
    return {k: v for k, v in json.loads(_read(relative)).items() if not k.startswith("_")}


def random_identity(name: str) -> str:
    """Identity of a random model: its name, builder version and a hash of its configs and seed."""
    spec = _spec(name)
    blob = json.dumps({"configs": spec.configs(), "seed": RANDOM_SEED, "pool": POOL_SIZE},
                      sort_keys=True).encode()
    return f"{name}:{RANDOM_VERSION}:{hashlib.sha256(blob).hexdigest()[:16]}"


def _spec(name: str) -> RandomSpec:
    if name not in RANDOM_SPECS:
        raise ValueError(f"model={name!r} is not a full-size random model; expected one of {sorted(RANDOM_SPECS)}")
    return RANDOM_SPECS[name]


def empty_networks(name: str, components: tuple[str, ...] | None = None) -> dict:
    """The networks of `name` with parameters on the meta device (no memory, no values); buffers are real."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    spec = _spec(name)
    configs = copy.deepcopy(spec.configs())
    unknown = sorted(set(components or ()) - set(WEIGHTS))
    if unknown:
        raise ValueError(f"components={components!r}: {unknown} are not networks; choose from {WEIGHTS}")
    wanted = [c for c in WEIGHTS if c in configs and (components is None or c in components)]
    out: dict = {}
    with init_empty_weights(include_buffers=False):
        unet = UNet2DConditionModel.from_config(configs["unet"])
        if "unet" in wanted:
            out["unet"] = unet
        if "controlnet" in wanted:
            cn = configs["controlnet"]
            out["controlnet"] = ControlNetModel.from_unet(
                unet, controlnet_conditioning_channel_order=cn["controlnet_conditioning_channel_order"],
                conditioning_embedding_out_channels=tuple(cn["conditioning_embedding_out_channels"]),
                conditioning_channels=cn.get("conditioning_channels", 3), load_weights_from_unet=False)
        if "vae" in wanted:
            out["vae"] = AutoencoderKL.from_config(configs["vae"])
        if "text_encoder" in wanted:
            out["text_encoder"] = CLIPTextModel(CLIPTextConfig(**configs["text_encoder"]))
        if "text_encoder_2" in wanted:
            out["text_encoder_2"] = CLIPTextModelWithProjection(CLIPTextConfig(**configs["text_encoder_2"]))
    return out


def _pool(device: torch.device, dtype: torch.dtype, longest: int) -> torch.Tensor:
    """POOL_SIZE standard normal values from RANDOM_SEED, tiled to cover any window of `longest` values
    (one slice per tensor: a single copy is ~5x faster here than copying period by period)."""
    values = torch.randn(POOL_SIZE, generator=torch.Generator().manual_seed(RANDOM_SEED))
    repeats = -(-(longest + POOL_SIZE) // POOL_SIZE)
    return values.to(device=device, dtype=dtype).repeat(repeats)


def _offset(key: str) -> int:
    return zlib.crc32(key.encode()) % POOL_SIZE


def _pooled(pool: torch.Tensor, shape: torch.Size, key: str, scale: float) -> torch.Tensor:
    """A tensor of `shape` taken from the pool at the offset of `key`, times scale."""
    start, n = _offset(key), shape.numel()
    return torch.mul(pool[start:start + n], scale).view(shape)


@torch.no_grad()
def fill_random(module: torch.nn.Module, pool: torch.Tensor, prefix: str) -> torch.nn.Module:
    """Give every parameter of `module` its value: 1-D weights (norms) 1, biases 0, others N(0, 1/fan_in)."""
    for module_name, sub in module.named_modules():
        for name, param in list(sub.named_parameters(recurse=False)):
            key = f"{prefix}.{module_name}.{name}"
            if param.ndim == 1:
                value = torch.full(param.shape, 1.0 if name == "weight" else 0.0, dtype=pool.dtype, device=pool.device)
            else:
                value = _pooled(pool, param.shape, key, param[0].numel() ** -0.5)
            setattr(sub, name, torch.nn.Parameter(value, requires_grad=False))
    return module


def build_random(
    name: str,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    components: tuple[str, ...] | None = None,
) -> dict:
    """Random-weight networks of the full-size model `name` (see RANDOM_SPECS), the same on every call.

    Returns a parts dict: unet, controlnet, vae, text_encoder (+ text_encoder_2 and tokenizer_2 for SDXL),
    tokenizer, scheduler_config and identity. components: build only these networks (default: all).
    """
    spec = _spec(name)
    dev = torch.device(device)
    nets = empty_networks(name, components)
    pool = _pool(dev, dtype, max((p.numel() for net in nets.values() for p in net.parameters()), default=0))
    for key, net in nets.items():
        fill_random(net, pool, f"{spec.family}.{key}")
    del pool
    parts = dict(nets)
    parts["tokenizer"] = build_tokenizer(spec.pad_token)
    if spec.sdxl:
        parts["tokenizer_2"] = build_tokenizer(OPEN_CLIP_PAD)
    parts["scheduler_config"] = ddim_config(spec.configs()["scheduler"])
    parts["identity"] = random_identity(name)
    log.info("built %s (%s architecture, random weights) as %s on %s", name, spec.label, dtype, dev)
    return parts


def random_weights_note(name: str) -> str:
    """What to tell a person who loaded a random model."""
    return (f"{name}: the real {_spec(name).label} architecture with RANDOM weights (real shapes, memory and "
            f"speed; its images are noise): for checks and benchmarks, not for pictures")


def parameter_count(module: torch.nn.Module) -> int:
    """Number of parameters (works on meta modules)."""
    return sum(p.numel() for p in module.parameters())
