"""Tests of interp.store: Record, and FrameStore (LRU, disk, corruption, threads)."""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import random_image
from interp.hashing import content_hash
from interp.store import FrameStore, Record, default_store_dir

# ------------------------------------------------------------------------------------- helpers


def _record(seed: int, n: int = 16, images: int = 1) -> Record:
    g = torch.Generator().manual_seed(seed)
    return Record({"latents": torch.randn(n, generator=g), "scores": torch.arange(3) + seed},
                  tuple(random_image(seed * 10 + i) for i in range(images)), {"seed": seed, "name": f"r{seed}"})


def _same(a: Record, b: Record) -> bool:
    return (a.tensors.keys() == b.tensors.keys()
            and all(a.tensors[k].dtype == b.tensors[k].dtype and torch.equal(a.tensors[k], b.tensors[k])
                    for k in a.tensors)
            and len(a.images) == len(b.images)
            and all(x.mode == y.mode and x.size == y.size and x.tobytes() == y.tobytes()
                    for x, y in zip(a.images, b.images))
            and a.meta == b.meta)


def _entry(root: Path, key: str) -> Path:
    return root / key[:2] / key


KEY = content_hash("the key")


def test_record_nbytes_and_validation():
    r = Record({"a": torch.zeros(2, 3), "b": torch.zeros(4, dtype=torch.float16)},
               [Image.new("RGB", (4, 5))], {"a": 1})
    assert isinstance(r.images, tuple)
    assert r.nbytes() == 24 + 8 + 60 + len('{"a": 1}')
    assert Record({}).nbytes() == 0
    with pytest.raises(TypeError, match="meta"):
        Record({}, meta={"p": Path("x")})
    with pytest.raises(TypeError, match="tensors"):
        Record({"a": np.zeros(2)})
    with pytest.raises(TypeError, match="images"):
        Record({}, (Image.new("CMYK", (2, 2)),))


# -------------------------------------------------------------------------------- memory store

@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.bool])
@pytest.mark.parametrize("on_disk", [False, True])
def test_round_trip_is_exact(tmp_path, dtype, on_disk):
    g = torch.Generator().manual_seed(0)
    t = (torch.randn(2, 3, 5, generator=g) * 100).to(dtype)
    rec = Record({"x": t, "strided": t.transpose(0, 2)},
                 (random_image(1), random_image(2, (5, 7), "RGBA"), random_image(3, (3, 2), "L")),
                 {"list": [1, 2.5, None], "text": "é", "nested": {"k": True}})
    store = FrameStore(tmp_path if on_disk else None)
    store.put(KEY, rec)
    got = (FrameStore(tmp_path) if on_disk else store).get(KEY)
    assert got is not None and _same(got, rec)
    assert got.tensors["strided"].is_contiguous()


def test_meta_is_json_normalised_in_memory_and_on_disk(tmp_path):
    store = FrameStore(tmp_path)
    store.put(KEY, Record({}, meta={"pair": (1, 2)}))
    assert store.get(KEY).meta == {"pair": [1, 2]}
    assert FrameStore(tmp_path).get(KEY).meta == {"pair": [1, 2]}


def test_returned_and_put_records_are_independent_copies():
    store = FrameStore()
    rec = _record(1)
    store.put(KEY, rec)
    rec.tensors["latents"].fill_(0)
    rec.images[0].putpixel((0, 0), (1, 2, 3))
    rec.meta["seed"] = 99
    got = store.get(KEY)
    assert _same(got, _record(1))
    got.tensors["latents"].add_(1)
    got.images[0].paste((9, 9, 9), (0, 0, 8, 6))
    got.meta["name"] = "changed"
    assert _same(store.get(KEY), _record(1))


def test_lru_evicts_least_recently_used_by_bytes():
    size = Record({"x": torch.zeros(256)}).nbytes()
    assert size == 1024
    store = FrameStore(memory_bytes=2500)
    keys = [content_hash(i) for i in range(3)]
    store.put(keys[0], Record({"x": torch.full((256,), 0.0)}))
    store.put(keys[1], Record({"x": torch.full((256,), 1.0)}))
    assert store.get(keys[0]) is not None  # keys[0] now most recent
    store.put(keys[2], Record({"x": torch.full((256,), 2.0)}))
    assert store.contains(keys[0]) and not store.contains(keys[1]) and store.contains(keys[2])
    assert store.get(keys[1]) is None
    assert float(store.get(keys[2]).tensors["x"][0]) == 2.0
    s = store.stats()
    assert (s["entries"], s["memory_bytes"], s["hits"], s["misses"]) == (2, 2048, 2, 1)


def test_entry_bigger_than_budget_skips_memory_but_reaches_disk(tmp_path):
    store = FrameStore(tmp_path, memory_bytes=100)
    small = content_hash("small")
    store.put(small, Record({"x": torch.ones(16)}))  # 64 bytes
    store.put(KEY, Record({"x": torch.ones(64)}))  # 256 bytes: evicts nothing, is not kept
    assert store.stats()["entries"] == 1 and store.stats()["memory_bytes"] == 64
    (tmp_path / small[:2] / small / "meta.json").unlink()
    assert torch.equal(store.get(small).tensors["x"], torch.ones(16))  # still served from memory
    assert torch.equal(store.get(KEY).tensors["x"], torch.ones(64))
    assert store.stats()["disk_hits"] == 1 and store.stats()["entries"] == 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="memory_bytes"):
        FrameStore(memory_bytes=-1)
    store = FrameStore()
    for bad in ("", "a", "../etc", ".tmp-x", "a/b", 12):
        with pytest.raises(ValueError, match="key"):
            store.get(bad)
    with pytest.raises(TypeError, match="Record"):
        store.put(KEY, {"x": torch.zeros(1)})


# ---------------------------------------------------------------------------------- disk store

def test_disk_persists_across_instances_and_promotes_to_memory(tmp_path):
    FrameStore(tmp_path).put(KEY, _record(5, images=2))
    entry = _entry(tmp_path, KEY)
    assert sorted(p.name for p in entry.iterdir()) == ["image_000.png", "image_001.png", "meta.json",
                                                      "tensors.safetensors"]
    doc = json.loads((entry / "meta.json").read_text())
    assert (doc["format"], doc["images"], doc["meta"]) == (1, 2, {"seed": 5, "name": "r5"})
    store = FrameStore(tmp_path)
    assert store.contains(KEY) and not store.contains(content_hash("other"))
    assert _same(store.get(KEY), _record(5, images=2))
    assert store.stats()["entries"] == 1
    for p in entry.iterdir():
        p.unlink()
    entry.rmdir()
    assert _same(store.get(KEY), _record(5, images=2))  # served from memory now


def _truncate_tensors(entry: Path) -> None:
    p = entry / "tensors.safetensors"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _flip_tensor_byte(entry: Path) -> None:
    p = entry / "tensors.safetensors"
    data = bytearray(p.read_bytes())
    data[-1] ^= 1
    p.write_bytes(bytes(data))


def _set_image_count(entry: Path) -> None:
    doc = json.loads((entry / "meta.json").read_text())
    doc["images"] = 3
    (entry / "meta.json").write_text(json.dumps(doc))


@pytest.mark.parametrize("damage", [
    _truncate_tensors,
    _flip_tensor_byte,
    lambda e: (e / "image_001.png").unlink(),
    lambda e: (e / "image_000.png").write_bytes(b"\x89PNG garbage"),
    lambda e: (e / "meta.json").write_text("{not json"),
    lambda e: (e / "meta.json").write_text("[]"),
    lambda e: (e / "meta.json").unlink(),
    _set_image_count,
], ids=["truncated", "bitflip", "png-deleted", "png-garbage", "meta-garbage", "meta-list", "meta-deleted",
        "count-mismatch"])
def test_broken_entry_warns_returns_none_and_can_be_rewritten(tmp_path, caplog, damage):
    FrameStore(tmp_path).put(KEY, _record(2, images=2))
    damage(_entry(tmp_path, KEY))
    store = FrameStore(tmp_path)
    with caplog.at_level(logging.WARNING, logger="interp.store"):
        assert store.get(KEY) is None
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert KEY in caplog.records[0].getMessage()
    assert not _entry(tmp_path, KEY).exists() and not store.contains(KEY)
    assert store.stats()["corrupt"] == 1
    store.put(KEY, _record(2, images=2))
    assert _same(FrameStore(tmp_path).get(KEY), _record(2, images=2))
    assert [p.name for p in _entry(tmp_path, KEY).parent.iterdir()] == [KEY]  # no temp or trash left


def test_leftover_temp_dirs_ignored_and_stale_ones_removed(tmp_path):
    shard = tmp_path / KEY[:2]
    fresh, stale = shard / f".tmp-{KEY}-fresh", shard / f".tmp-{KEY}-stale"
    for d in (fresh, stale):
        d.mkdir(parents=True)
        (d / "tensors.safetensors").write_bytes(b"partial")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    store = FrameStore(tmp_path)
    assert not stale.exists() and fresh.exists()  # a young temp may belong to a live writer
    assert store.get(KEY) is None and not store.contains(KEY)
    store.put(KEY, _record(3))
    assert _same(FrameStore(tmp_path).get(KEY), _record(3))


def test_second_writer_of_an_existing_key_discards_its_temp(tmp_path):
    FrameStore(tmp_path).put(KEY, _record(4))
    store = FrameStore(tmp_path)
    store._write_entry(KEY, _record(4))  # the final exists: nothing is written
    assert [p.name for p in (tmp_path / KEY[:2]).iterdir()] == [KEY]


def test_rename_race_loser_discards_temp(tmp_path, monkeypatch):
    store = FrameStore(tmp_path)
    winner = FrameStore(tmp_path)
    real_rename = os.rename

    def rename_after_winner(src, dst):
        if ".tmp-" in str(src) and "del-" not in str(src) and not Path(dst).exists():
            monkeypatch.setattr(os, "rename", real_rename)
            winner.put(KEY, _record(6))  # the other writer finishes first
        return os.rename(src, dst)
    monkeypatch.setattr(os, "rename", rename_after_winner)
    store.put(KEY, _record(6))
    assert [p.name for p in (tmp_path / KEY[:2]).iterdir()] == [KEY]
    assert _same(FrameStore(tmp_path).get(KEY), _record(6))


def test_disk_write_failure_warns_and_keeps_memory(tmp_path, caplog):
    (tmp_path / KEY[:2]).write_text("a file where the shard directory should be")
    store = FrameStore(tmp_path)
    with caplog.at_level(logging.WARNING, logger="interp.store"):
        store.put(KEY, _record(7))
    assert KEY in caplog.text
    assert _same(store.get(KEY), _record(7))


def test_default_store_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_store_dir() == tmp_path / "interp" / "frames"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")
    assert default_store_dir() == Path.home() / ".cache" / "interp" / "frames"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_store_dir() == Path.home() / ".cache" / "interp" / "frames"


# ---------------------------------------------------------------------------------- threads

def _run_threads(n: int, target) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def wrapped(i: int) -> None:
        try:
            barrier.wait()
            target(i)
        except BaseException as exc:  # collected and asserted on below
            errors.append(exc)
    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return errors


def test_concurrent_puts_and_gets_on_overlapping_keys(tmp_path):
    store = FrameStore(tmp_path, memory_bytes=3 * _record(0).nbytes())  # forces eviction and disk reads
    keys = [content_hash(["k", i]) for i in range(5)]

    def work(i: int) -> None:
        for step in range(20):
            k = (i + step) % len(keys)
            if step % 3 == 0:
                store.put(keys[k], _record(k))
            got = store.get(keys[k])
            assert got is None or _same(got, _record(k))
    assert _run_threads(8, work) == []
    assert store.stats()["corrupt"] == 0
    fresh = FrameStore(tmp_path)
    assert all(_same(fresh.get(k), _record(i)) for i, k in enumerate(keys))
    assert not [p for p in tmp_path.rglob(".tmp-*")]


def test_concurrent_writers_of_the_same_key(tmp_path):
    stores = [FrameStore(tmp_path, memory_bytes=0) for _ in range(8)]
    assert _run_threads(8, lambda i: stores[i].put(KEY, _record(8, images=2))) == []
    assert [p.name for p in (tmp_path / KEY[:2]).iterdir()] == [KEY]
    assert all(_same(s.get(KEY), _record(8, images=2)) for s in stores)


def _disk_size(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def test_disk_limit_evicts_least_recently_used_entries(tmp_path):
    one = FrameStore(tmp_path, memory_bytes=0)
    one.put(content_hash("probe"), _record(0, n=1000))
    entry = _disk_size(tmp_path)                       # one entry's bytes on disk
    one_entry_dir = _entry(tmp_path, content_hash("probe"))
    import shutil
    shutil.rmtree(one_entry_dir)
    store = FrameStore(tmp_path, memory_bytes=0, disk_bytes=int(3.5 * entry))
    keys = [content_hash(f"k{i}") for i in range(5)]
    for i, key in enumerate(keys[:3]):
        store.put(key, _record(i, n=1000))
        os.utime(_entry(tmp_path, key) / "meta.json", (1000 + i, 1000 + i))   # written in order
    assert store.get(keys[0]) is not None              # reading marks keys[0] as just used
    store.put(keys[3], _record(3, n=1000))             # 4 entries > 3.5: evict down to <= 3.15
    present = [store.contains(k) for k in keys[:4]]
    assert present == [True, False, True, True]        # keys[1] was the least recently used
    assert store.stats()["evicted"] == 1 and _disk_size(tmp_path) <= 3.5 * entry
    assert store.stats()["disk_bytes"] == _disk_size(tmp_path)
    again = FrameStore(tmp_path, memory_bytes=0, disk_bytes=int(1.5 * entry))   # a smaller limit
    assert sum(again.contains(k) for k in keys) == 1 and _disk_size(tmp_path) <= 1.5 * entry
    with pytest.raises(ValueError, match="disk_bytes"):
        FrameStore(tmp_path, disk_bytes=-5)


def test_store_flags_give_a_size_limited_cache_by_default(tmp_path):
    import argparse
    from interp.models.startup import DEFAULT_STORE_GB, add_store_flags, load_store
    parser = argparse.ArgumentParser()
    add_store_flags(parser)
    args = parser.parse_args(["--store", str(tmp_path)])
    assert load_store(args.store, args.store_max_gb).disk_limit == int(DEFAULT_STORE_GB * 1e9)
    args = parser.parse_args(["--store", str(tmp_path), "--store-max-gb", "0"])
    assert load_store(args.store, args.store_max_gb).disk_limit is None
    assert load_store(Path("none"), 1.0).directory is None
    with pytest.raises(ValueError, match="store_max_gb"):
        load_store(tmp_path, -1.0)
