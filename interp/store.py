"""The frame cache: a bounded in-memory LRU over an atomic, optionally size-limited on-disk store.

Layout on disk: ``<dir>/<key[:2]>/<key>/`` holding ``tensors.safetensors``, ``image_000.png`` ...
and ``meta.json`` (format version, image count, tensor names, sha256 of every file, the caller's
meta). An entry is written into a temporary sibling ``.tmp-*`` directory and renamed into place,
so a reader sees a complete entry or none; a broken entry is logged, removed and reported as a miss.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import safetensors.torch
import torch
from PIL import Image

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_TMP_PREFIX = ".tmp-"
_STALE_TMP_SECONDS = 3600.0
_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{1,199}")
_TENSOR_FILE = "tensors.safetensors"
_META_FILE = "meta.json"
_IMAGE_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA"})  # modes PNG stores losslessly
_TENSOR_DTYPES = frozenset({torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
                            torch.float16, torch.bfloat16, torch.float32, torch.float64})


@dataclass(frozen=True, eq=False)
class Record:
    """One cache entry: named tensors (safetensors), images (PNG) and JSON-serialisable metadata."""
    tensors: dict[str, torch.Tensor]
    images: tuple[Image.Image, ...] = ()
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.tensors, dict):
            raise TypeError(f"Record.tensors must be a dict, got {type(self.tensors).__qualname__}")
        for name, t in self.tensors.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"Record.tensors keys must be non-empty str, got {name!r}")
            if not isinstance(t, torch.Tensor) or t.layout != torch.strided or t.dtype not in _TENSOR_DTYPES:
                raise TypeError(f"Record.tensors[{name!r}] must be a dense tensor of a safetensors dtype, "
                                f"got {type(t).__qualname__} {getattr(t, 'dtype', '')}")
        object.__setattr__(self, "images", tuple(self.images))
        for i, im in enumerate(self.images):
            if not isinstance(im, Image.Image) or im.mode not in _IMAGE_MODES:
                raise TypeError(f"Record.images[{i}] must be a PIL image in mode {sorted(_IMAGE_MODES)}, "
                                f"got {type(im).__qualname__} {getattr(im, 'mode', '')}")
        if not isinstance(self.meta, dict):
            raise TypeError(f"Record.meta must be a dict, got {type(self.meta).__qualname__}")
        try:
            json.dumps(self.meta)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"Record.meta must be JSON-serialisable: {exc}") from exc

    def nbytes(self) -> int:
        """Approximate memory held: tensor bytes + image pixel bytes + the JSON size of meta."""
        n = sum(t.element_size() * t.numel() for t in self.tensors.values())
        n += sum(im.width * im.height * len(im.getbands()) for im in self.images)
        return n + (len(json.dumps(self.meta)) if self.meta else 0)

    def copy(self) -> Record:
        """An independent deep copy: contiguous CPU tensors, copied images, meta via a JSON round trip."""
        return Record({k: t.detach().to("cpu").clone(memory_format=torch.contiguous_format)
                       for k, t in self.tensors.items()},
                      tuple(im.copy() for im in self.images), json.loads(json.dumps(self.meta)))


def default_store_dir() -> Path:
    """The frame cache directory: ``$XDG_CACHE_HOME`` (if absolute) or ``~/.cache``, then interp/frames."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "interp" / "frames"


class FrameStore:
    """get / put / contains over a bounded in-memory LRU (by bytes) and an optional disk directory.

    Thread-safe. Tensors come back on the CPU. Records are copied on put and on get, so mutating
    what was put or what was returned never changes the cache. With disk_bytes, the directory is
    kept under that size: when a write goes over it, the least recently used entries (by the time
    their meta.json was last written or read) are removed down to 90% of it.
    """

    def __init__(self, directory: str | Path | None = None, memory_bytes: int = 1 << 30,
                 disk_bytes: int | None = None) -> None:
        for name, value in (("memory_bytes", memory_bytes), ("disk_bytes", disk_bytes)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if memory_bytes is None:
            raise ValueError("memory_bytes must be an int >= 0, got None")
        if directory is not None and not isinstance(directory, (str, PurePath)):
            raise TypeError(f"directory must be a str, Path or None, got {type(directory).__qualname__}")
        self.directory = Path(directory) if directory is not None else None
        self.memory_limit = memory_bytes
        self._lock = threading.Lock()
        self._trim_lock = threading.Lock()
        self._lru: OrderedDict[str, tuple[Record, int]] = OrderedDict()
        self._used = 0
        self._stats = {"hits": 0, "disk_hits": 0, "misses": 0, "corrupt": 0, "evicted": 0}
        self.disk_limit = disk_bytes
        self._disk_used = 0
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._remove_stale_temps()
            if disk_bytes is not None:
                self._disk_used = sum(size for _, size, _ in self._disk_entries())
                self._trim_disk()

    def get(self, key: str) -> Record | None:
        """The record stored under ``key`` (memory, then disk, promoted to memory), or None."""
        _check_key(key)
        with self._lock:
            entry = self._lru.get(key)
            if entry is not None:
                self._lru.move_to_end(key)
                self._stats["hits"] += 1
        if entry is not None:
            return entry[0].copy()
        record = self._read_entry(key) if self.directory is not None else None
        with self._lock:
            self._stats["misses" if record is None else "disk_hits"] += 1
            if record is not None:
                self._stats["hits"] += 1
                self._remember(key, record, record.nbytes())
        return record.copy() if record is not None else None

    def put(self, key: str, record: Record) -> None:
        """Store ``record`` under ``key`` in memory and, atomically, on disk (a disk failure only warns)."""
        _check_key(key)
        if not isinstance(record, Record):
            raise TypeError(f"record must be a Record, got {type(record).__qualname__}")
        stored = record.copy()
        if self.directory is not None:
            try:
                self._write_entry(key, stored)
            except OSError as exc:
                logger.warning("frame cache: could not write entry %s to %s: %s", key, self.directory, exc)
            else:
                self._trim_disk()
        with self._lock:
            self._remember(key, stored, stored.nbytes())

    def contains(self, key: str) -> bool:
        """Cheap check: in memory, or an entry's meta.json exists on disk (not verified)."""
        _check_key(key)
        with self._lock:
            if key in self._lru:
                return True
        return self.directory is not None and (self._entry_dir(key) / _META_FILE).is_file()

    def stats(self) -> dict:
        """Counters: hits (memory + disk), disk_hits, misses, corrupt, evicted (from disk),
        memory_bytes, entries, disk_bytes (tracked only with a disk limit)."""
        with self._lock:
            return dict(self._stats, memory_bytes=self._used, entries=len(self._lru),
                        disk_bytes=self._disk_used)

    def _disk_entries(self) -> list:
        """(last use, bytes, path) of every complete entry on disk."""
        out = []
        for shard in os.scandir(self.directory):
            if not shard.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(shard.path):
                meta = Path(entry.path) / _META_FILE
                if entry.name.startswith(_TMP_PREFIX) or not meta.is_file():
                    continue
                with contextlib.suppress(OSError):
                    files = list(os.scandir(entry.path))
                    out.append((meta.stat().st_mtime, sum(f.stat().st_size for f in files),
                                Path(entry.path)))
        return out

    def _trim_disk(self) -> None:
        """Over the disk limit: remove least recently used entries down to 90% of it."""
        if self.disk_limit is None or self._disk_used <= self.disk_limit:
            return
        with self._trim_lock:
            entries = sorted(self._disk_entries())
            used = sum(size for _, size, _ in entries)   # other processes may share the directory
            evicted = 0
            for _, size, path in entries[:-1]:           # never the newest one
                if used <= 0.9 * self.disk_limit:
                    break
                self._remove_dir(path)
                used, evicted = used - size, evicted + 1
            with self._lock:
                self._disk_used = used
                self._stats["evicted"] += evicted

    def _remember(self, key: str, record: Record, size: int) -> None:
        """Insert into the LRU (lock held); an entry larger than the whole budget is not kept."""
        old = self._lru.pop(key, None)
        if old is not None:
            self._used -= old[1]
        if size > self.memory_limit:
            return
        self._lru[key] = (record, size)
        self._used += size
        while self._used > self.memory_limit:
            _, (_, evicted) = self._lru.popitem(last=False)
            self._used -= evicted

    def _entry_dir(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / key[:2] / key

    def _write_entry(self, key: str, record: Record) -> None:
        final = self._entry_dir(key)
        if final.is_dir():
            return  # same key, same content: already stored (get() replaces a broken one)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{key}-", dir=final.parent))
        try:
            _write_files(tmp, key, record)
            try:
                os.rename(tmp, final)
            except OSError:
                if not final.is_dir():
                    raise
                logger.debug("frame cache: another writer stored %s first", key)
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                _fsync_dir(final.parent)
                if self.disk_limit is not None:
                    size = sum(f.stat().st_size for f in os.scandir(final))
                    with self._lock:
                        self._disk_used += size
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _read_entry(self, key: str) -> Record | None:
        final = self._entry_dir(key)
        if not final.is_dir():
            return None
        try:
            record = _read_files(final, key)
            with contextlib.suppress(OSError):
                os.utime(final / _META_FILE)   # last use, for the disk limit's LRU order
            return record
        except Exception as exc:  # any failure to read means a broken entry: drop it, caller recomputes
            logger.warning("frame cache: entry %s in %s is unreadable (%s: %s); removing it",
                           key, final, type(exc).__name__, exc)
            with self._lock:
                self._stats["corrupt"] += 1
            self._remove_dir(final)
            return None

    def _remove_dir(self, path: Path) -> None:
        """Rename out of the way first, so no reader sees a half-deleted entry; then delete."""
        trash = path.parent / f"{_TMP_PREFIX}del-{uuid.uuid4().hex}"
        try:
            os.rename(path, trash)
        except OSError:
            return  # already gone (another reader removed it)
        shutil.rmtree(trash, ignore_errors=True)

    def _remove_stale_temps(self) -> None:
        """Delete temporary dirs left by killed writers (older than an hour; younger may be live)."""
        assert self.directory is not None
        cutoff = time.time() - _STALE_TMP_SECONDS
        for shard in os.scandir(self.directory):
            if not shard.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(shard.path):
                if entry.name.startswith(_TMP_PREFIX) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    logger.info("frame cache: removing stale temporary %s", entry.path)
                    shutil.rmtree(entry.path, ignore_errors=True)


def _check_key(key: Any) -> None:
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise ValueError(f"key must be 2-200 characters of [A-Za-z0-9_-] starting alphanumeric, got {key!r}")


def _write_synced(path: Path, data: bytes) -> str:
    """Write ``data`` to ``path``, fsync it and return its sha256."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # platforms without directory fds skip this
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_files(tmp: Path, key: str, record: Record) -> None:
    files = {_TENSOR_FILE: _write_synced(tmp / _TENSOR_FILE, safetensors.torch.save(record.tensors))}
    for i, im in enumerate(record.images):
        buf = io.BytesIO()
        im.save(buf, format="PNG", compress_level=1)
        files[f"image_{i:03d}.png"] = _write_synced(tmp / f"image_{i:03d}.png", buf.getvalue())
    doc = {"format": FORMAT_VERSION, "key": key, "images": len(record.images),
           "tensors": sorted(record.tensors), "files": files, "meta": record.meta}
    _write_synced(tmp / _META_FILE, json.dumps(doc, sort_keys=True).encode())
    _fsync_dir(tmp)


def _read_verified(path: Path, digest: str) -> bytes:
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != digest:
        raise ValueError(f"checksum mismatch in {path.name}")
    return data


def _read_files(final: Path, key: str) -> Record:
    doc = json.loads((final / _META_FILE).read_text("utf-8"))
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_VERSION:
        raise ValueError(f"meta.json is not format {FORMAT_VERSION}")
    if doc["key"] != key:
        raise ValueError(f"meta.json belongs to key {doc['key']!r}")
    count, files = doc["images"], doc["files"]
    names = [f"image_{i:03d}.png" for i in range(count)]
    if set(files) != {_TENSOR_FILE, *names}:
        raise ValueError(f"meta.json lists files {sorted(files)} but records {count} images")
    tensors = safetensors.torch.load(_read_verified(final / _TENSOR_FILE, files[_TENSOR_FILE]))
    if sorted(tensors) != doc["tensors"]:
        raise ValueError(f"tensors {sorted(tensors)} differ from meta.json's {doc['tensors']}")
    images = []
    for name in names:
        with Image.open(io.BytesIO(_read_verified(final / name, files[name])), formats=["PNG"]) as im:
            im.load()
            images.append(im.copy())
    return Record(tensors, tuple(images), doc["meta"])
