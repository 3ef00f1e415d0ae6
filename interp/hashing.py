"""content_hash: the sha256 of a canonical, type-tagged serialisation that every cache key is made of."""
from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import os
import struct
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch
from PIL import Image

_HASH_HEADER = b"interp.content_hash.v1\0"


def content_hash(obj: Any) -> str:
    """Sha256 hex of a canonical, type-tagged serialisation of ``obj`` (cache keys hash content).

    Distinguishes str/int/float/bool (``"1"``, ``1``, ``1.0``, ``True`` all differ; floats by
    ``float.hex``, so ``-0.0 != 0.0``). Lists and tuples hash alike (JSON turns tuples into lists);
    dict keys must be str and their order is irrelevant; an Enum hashes as its value (``Scheme.METHOD``
    like ``"method"``); a dataclass as its class name and fields; tensors and arrays as dtype, shape
    and bytes; PIL images as mode, size, palette and pixels. Paths and anything else: TypeError.
    """
    h = hashlib.sha256(_HASH_HEADER)
    _feed(h, obj, set())
    return h.hexdigest()


def _blob(h: Any, tag: bytes, data: bytes) -> None:
    h.update(tag + struct.pack("<Q", len(data)) + data)


def _feed(h: Any, obj: Any, active: set[int]) -> None:
    if obj is None:
        h.update(b"N")
    elif isinstance(obj, bool):
        h.update(b"T" if obj else b"F")
    elif isinstance(obj, enum.Enum):
        _feed(h, obj.value, active)
    elif isinstance(obj, np.generic):  # numpy scalars hash as the Python scalar they convert to
        _feed(h, obj.item(), active)
    elif isinstance(obj, int):
        _blob(h, b"i", obj.to_bytes(obj.bit_length() // 8 + 1, "little", signed=True))
    elif isinstance(obj, float):
        _blob(h, b"f", float.hex(obj).encode())
    elif isinstance(obj, str):
        _blob(h, b"s", obj.encode("utf-8", "surrogatepass"))
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        _blob(h, b"b", bytes(obj))
    elif isinstance(obj, (PurePath, os.PathLike)):
        raise TypeError(f"cannot hash path {str(obj)!r}: content must be hashed, never paths "
                        "(read the file and hash its content)")
    elif isinstance(obj, (torch.Tensor, np.ndarray, Image.Image)):
        _feed_array(h, obj)
    else:
        _feed_container(h, obj, active)


def _feed_container(h: Any, obj: Any, active: set[int]) -> None:
    is_dataclass = dataclasses.is_dataclass(obj) and not isinstance(obj, type)
    if not (is_dataclass or isinstance(obj, (dict, list, tuple))):
        raise TypeError(f"cannot hash {type(obj).__qualname__}; content must be JSON-like data, "
                        "tensors, arrays, PIL images, enums or dataclasses, never paths")
    if id(obj) in active:
        raise ValueError(f"cannot hash a self-referencing {type(obj).__qualname__}")
    active.add(id(obj))
    if is_dataclass:
        _blob(h, b"D", type(obj).__qualname__.encode())
        _feed_dict(h, {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}, active)
    elif isinstance(obj, dict):
        _feed_dict(h, obj, active)
    else:
        h.update(b"l" + struct.pack("<Q", len(obj)))
        for item in obj:
            _feed(h, item, active)
    active.discard(id(obj))


def _feed_dict(h: Any, obj: dict, active: set[int]) -> None:
    items = []
    for k, v in obj.items():
        key = k.value if isinstance(k, enum.Enum) else k
        if not isinstance(key, str):
            raise TypeError(f"cannot hash a dict with a {type(k).__qualname__} key {k!r}; keys must be str")
        items.append((str.__str__(key), v))
    h.update(b"d" + struct.pack("<Q", len(items)))
    for key, value in sorted(items, key=lambda kv: kv[0]):
        _blob(h, b"s", key.encode("utf-8", "surrogatepass"))
        _feed(h, value, active)


def _feed_array(h: Any, obj: Any) -> None:
    if isinstance(obj, Image.Image):
        _blob(h, b"p", obj.mode.encode())
        h.update(struct.pack("<QQ", *obj.size))
        palette = obj.getpalette() if obj.mode in ("P", "PA") else None
        _blob(h, b"b", bytes(palette or ()))
        _blob(h, b"b", obj.tobytes())
    elif isinstance(obj, torch.Tensor):
        if obj.layout != torch.strided or obj.is_meta:
            raise TypeError(f"cannot hash a {obj.layout} / meta tensor; only dense tensors with data")
        t = obj.detach().resolve_conj().resolve_neg().cpu().contiguous()
        _blob(h, b"t", str(t.dtype).encode())
        h.update(struct.pack(f"<Q{t.dim()}Q", t.dim(), *t.shape))
        _blob(h, b"b", t.reshape(-1).view(torch.uint8).numpy().tobytes())
    else:
        a = np.asarray(obj)
        if a.dtype.hasobject or a.dtype.fields is not None:
            raise TypeError(f"cannot hash a numpy array of dtype {a.dtype}; only plain numeric dtypes")
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype)
        _blob(h, b"a", a.dtype.str.encode())
        h.update(struct.pack(f"<Q{a.ndim}Q", a.ndim, *a.shape))
        _blob(h, b"b", a.tobytes())


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 hex digest of a file's bytes, streamed; cached per process by (path, size, mtime)."""
    resolved = Path(path).resolve()
    st = resolved.stat()
    return _file_sha256(str(resolved), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()
