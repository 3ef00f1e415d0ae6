"""Tests of interp.hashing: content_hash's canonical encoding, and file_sha256."""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import struct
from enum import Enum
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from helpers import random_image
from interp.hashing import content_hash, file_sha256
from interp.settings import Scheme, Settings


# ---------------------------------------------------------------------------------- content_hash

def test_hash_matches_the_documented_encoding_for_scalars():
    def ref(tag: bytes, data: bytes) -> str:
        return hashlib.sha256(b"interp.content_hash.v1\0" + tag + struct.pack("<Q", len(data)) + data).hexdigest()
    assert content_hash("ab") == ref(b"s", b"ab")
    assert content_hash(1) == ref(b"i", b"\x01")
    assert content_hash(-1) == ref(b"i", b"\xff")
    assert content_hash(255) == ref(b"i", b"\xff\x00")
    assert content_hash(1.5) == ref(b"f", b"0x1.8000000000000p+0")
    assert content_hash(None) == hashlib.sha256(b"interp.content_hash.v1\0N").hexdigest()


def test_hash_distinguishes_types_that_compare_equal_in_python():
    values = ["1", 1, 1.0, True, [1], {"1": 1}, b"1", None, 0, 0.0, -0.0, False, "", [], {}, b"", [[]], [None]]
    hashes = [content_hash(v) for v in values]
    assert len(set(hashes)) == len(values)


def test_hash_containers_are_unambiguous():
    assert content_hash(["a", "b"]) != content_hash(["ab"])
    assert content_hash([["a"], "b"]) != content_hash([["a", "b"]])
    assert content_hash({"a": "b", "c": "d"}) != content_hash({"a": "bc", "": "d"})


def test_hash_list_and_tuple_alike_and_dict_order_irrelevant():
    assert content_hash((1, (2, 3))) == content_hash([1, [2, 3]])
    assert content_hash({"a": 1, "b": [2.5, None]}) == content_hash({"b": [2.5, None], "a": 1})
    assert content_hash({"a": 1}) != content_hash({"a": 2})


def test_hash_enum_is_its_value_and_dataclass_is_name_and_fields():
    class Color(Enum):
        RED = 3
    assert content_hash(Scheme.DID) == content_hash("did")
    assert content_hash(Color.RED) == content_hash(3)

    @dataclasses.dataclass
    class A:
        x: int
        y: tuple = ()

    @dataclasses.dataclass
    class B:
        x: int
        y: tuple = ()
    assert content_hash(A(1, (2,))) == content_hash(A(1, [2]))
    assert content_hash(A(1)) != content_hash(B(1))
    assert content_hash(A(1)) != content_hash(A(2))
    assert content_hash(A(1)) != content_hash({"x": 1, "y": []})
    assert content_hash(Settings()) == content_hash(Settings())
    assert content_hash(Settings()) != content_hash(dataclasses.replace(Settings(), seed=1))


def test_hash_tensors_by_content():
    a = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    assert content_hash(a) == content_hash(a.clone())
    assert content_hash(a) == content_hash(a.t().contiguous().t())  # same values, other strides
    b = a.clone()
    b[2, 3] = 11.000001
    assert content_hash(a) != content_hash(b)
    assert content_hash(a) != content_hash(a.reshape(4, 3))
    assert content_hash(a) != content_hash(a.double())
    assert content_hash(a.bfloat16()) != content_hash(a.half())
    assert content_hash(torch.tensor(1.0, requires_grad=True)) == content_hash(torch.tensor(1.0))


def test_hash_numpy_and_images_by_content():
    x = np.arange(6, dtype=np.int16).reshape(2, 3)
    assert content_hash(x) == content_hash(x.copy()) == content_hash(x.astype(">i2"))
    assert content_hash(x) != content_hash(x.astype(np.int32))
    assert content_hash(np.float32(2.0)) == content_hash(2.0)
    assert content_hash(np.int64(2)) == content_hash(2)
    im = random_image(1)
    assert content_hash(im) == content_hash(random_image(1))
    assert content_hash(im) != content_hash(im.convert("RGBA"))
    changed = im.copy()
    changed.putpixel((0, 0), (0, 0, 0) if im.getpixel((0, 0)) != (0, 0, 0) else (1, 0, 0))
    assert content_hash(im) != content_hash(changed)


def test_hash_rejects_paths_unknown_objects_bad_keys_and_cycles():
    with pytest.raises(TypeError, match="never paths"):
        content_hash(Path("/tmp/a.png"))
    with pytest.raises(TypeError, match="never paths"):
        content_hash({"image": Path("a.png")})
    with pytest.raises(TypeError, match="object"):
        content_hash(object())
    with pytest.raises(TypeError, match="set"):
        content_hash({1, 2})
    with pytest.raises(TypeError, match="keys must be str"):
        content_hash({1: "a"})
    with pytest.raises(TypeError, match="dtype object"):
        content_hash(np.array([None]))
    loop: list = []
    loop.append(loop)
    with pytest.raises(ValueError, match="self-referencing"):
        content_hash(loop)
    shared = [1]
    assert content_hash([shared, shared]) == content_hash([[1], [1]])  # shared is not a cycle


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(_json, _json)
def test_hash_equal_exactly_when_json_equal(a, b):
    assert content_hash(a) == content_hash(copy.deepcopy(a)) == content_hash(json.loads(json.dumps(a)))
    same = json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert (content_hash(a) == content_hash(b)) == same


# ---------------------------------------------------------------------------------------- Record


def test_file_sha256_is_the_sha256_of_the_bytes_and_follows_changes(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"abc")
    assert file_sha256(path) == hashlib.sha256(b"abc").hexdigest()
    path.write_bytes(b"abcd")   # another size: the per-process cache must not answer
    assert file_sha256(str(path)) == hashlib.sha256(b"abcd").hexdigest()
