"""The real CLIP tokenizer (as used by Stable Diffusion), built offline from open_clip's bundled BPE file."""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path

from transformers import CLIPTokenizer

from interp.errors import ModelUnavailable

BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
VOCAB_SIZE = 49408
MODEL_MAX_LENGTH = 77
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
OPEN_CLIP_PAD = "!"  # id 0: SD 2.x's and SDXL's tokenizer_2 (OpenCLIP) pad with it
PADS = (EOS, OPEN_CLIP_PAD)
MAX_USABLE_LENGTH = 1024  # a longer model_max_length means "no limit configured" (transformers: 1e30)


def bpe_path() -> Path:
    """Path of open_clip's bundled BPE merges file, found without importing open_clip."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            "CLIP tokenizer: the package open-clip-torch is not installed (it ships the BPE vocabulary); "
            "install it with `pip install open-clip-torch`"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / BPE_FILE
    if not path.is_file():
        raise ModelUnavailable(f"CLIP tokenizer: {path} is missing; reinstall open-clip-torch")
    return path


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's (GPT-2's) reversible map from the 256 byte values to printable unicode symbols."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def clip_vocab_and_merges(path: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's vocabulary (bytes, bytes+</w>, one token per merge, then bos/eos) and its merge list."""
    lines = gzip.open(path).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [BOS, EOS]
    if len(tokens) != VOCAB_SIZE:
        raise ModelUnavailable(f"CLIP tokenizer: {path} gives {len(tokens)} tokens, expected {VOCAB_SIZE}")
    return {tok: i for i, tok in enumerate(tokens)}, merges


@functools.lru_cache(maxsize=2)
def build_tokenizer(pad_token: str = EOS) -> CLIPTokenizer:
    """Stable Diffusion's CLIP tokenizer (49,408 tokens, bos 49406, eos 49407, length 77), offline.

    pad_token: "<|endoftext|>" (49407; SD 1.x, SDXL's first tokenizer) or "!" (0; SD 2.x and SDXL's
    tokenizer_2, as OpenCLIP pads).
    """
    if pad_token not in PADS:
        raise ValueError(f"pad_token={pad_token!r} is not one of {PADS}: Stable Diffusion's tokenizers pad "
                         f"with {EOS!r} (SD 1.x) or {OPEN_CLIP_PAD!r} (SD 2.x, SDXL tokenizer_2)")
    vocab, merges = clip_vocab_and_merges(bpe_path())
    return CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=EOS,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=pad_token,
        model_max_length=MODEL_MAX_LENGTH,
    )


def pad_for(text_encoder_config) -> str:
    """The pad token a text encoder was trained with: "!" for OpenCLIP towers (gelu), else eos."""
    act = getattr(text_encoder_config, "hidden_act", None)
    if isinstance(text_encoder_config, dict):
        act = text_encoder_config.get("hidden_act")
    return OPEN_CLIP_PAD if act == "gelu" else EOS


def tokenizer_problem(tokenizer) -> str | None:
    """Why a loaded tokenizer cannot encode prompts (None when it can).

    A config directory without vocabulary files loads silently as a 2-3 token vocabulary, with
    model_max_length 1e30 (prompt encoding then overflows) or 77 with garbage ids.
    """
    if tokenizer is None:
        return "no tokenizer was loaded"
    length = getattr(tokenizer, "model_max_length", None)
    if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= MAX_USABLE_LENGTH:
        return f"its model_max_length is {length!r} (not a window of at most {MAX_USABLE_LENGTH} tokens)"
    if len(tokenizer) < VOCAB_SIZE // 2:
        return f"its vocabulary has {len(tokenizer)} tokens (CLIP has {VOCAB_SIZE}): the vocabulary files are missing"
    return None
