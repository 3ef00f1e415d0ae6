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

    pad_token: EOS (49407) as SD 1.x and SDXL's first tokenizer; "!" (id 0) as OpenCLIP, i.e. SD 2.x's
    tokenizer and SDXL's second one."""
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
