"""Encode each needed slice once, reuse it for every object, prompt and click.

An :class:`EmbeddingCache` maps a key ``(axis, slice index, crop)`` to the
image encoder's output for that model input. Keys live inside a *namespace*:
a signature of the volume's data + geometry, the intensity mapping and the
model (name + checkpoint sha256 + precision), so two scans or two models can
never share an entry.

* In memory: LRU, bounded in bytes (default 1 GiB).
* On disk (optional ``cache_dir``): one file per entry under
  ``cache_dir/<namespace>/``; reopening the same scan with the same model
  skips the encoder. Entries are saved with ``torch.save`` and read back with
  ``weights_only=True``.
* Only the requested keys are encoded, in batches, with a progress callback.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Hashable, Iterable, Sequence

import numpy as np
import torch

from .base import ProgressFn


def array_signature(array: np.ndarray, *extra) -> str:
    """Stable hex digest of an array's bytes, shape, dtype and any extra items."""
    h = hashlib.blake2b(digest_size=16)
    arr = np.ascontiguousarray(array)
    h.update(str((arr.shape, arr.dtype.str)).encode())
    h.update(memoryview(arr).cast("B"))
    for e in extra:
        h.update(repr(e).encode())
    return h.hexdigest()


class EmbeddingCache:
    """LRU cache of image embeddings with an optional on-disk store."""

    def __init__(self, max_bytes: int = 1 << 30, cache_dir: str | os.PathLike | None = None) -> None:
        self.max_bytes = int(max_bytes)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._mem: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self._lock = threading.RLock()
        self.hits = 0
        self.misses = 0
        self.disk_hits = 0
        self.encoded = 0

    # ------------------------------------------------------------ memory
    def _put(self, key: tuple, value: torch.Tensor) -> None:
        with self._lock:
            if key in self._mem:
                self._bytes -= self._mem.pop(key).nbytes
            self._mem[key] = value
            self._bytes += value.nbytes
            while self._bytes > self.max_bytes and len(self._mem) > 1:
                _, old = self._mem.popitem(last=False)
                self._bytes -= old.nbytes

    def _get(self, key: tuple) -> torch.Tensor | None:
        with self._lock:
            v = self._mem.get(key)
            if v is not None:
                self._mem.move_to_end(key)
            return v

    def __len__(self) -> int:
        return len(self._mem)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        with self._lock:
            self._mem.clear()
            self._bytes = 0

    # ------------------------------------------------------------ disk
    def _path(self, namespace: str, key: Hashable) -> Path | None:
        if self.cache_dir is None:
            return None
        name = hashlib.blake2b(repr(key).encode(), digest_size=12).hexdigest()
        return self.cache_dir / namespace / f"{name}.pt"

    def _load_disk(self, namespace: str, key: Hashable) -> torch.Tensor | None:
        p = self._path(namespace, key)
        if p is None or not p.is_file():
            return None
        try:
            blob = torch.load(p, map_location="cpu", weights_only=True)
        except Exception:  # a corrupt entry is re-encoded, never trusted
            return None
        if not isinstance(blob, dict) or blob.get("key") != repr(key):
            return None
        return blob["embedding"]

    def _save_disk(self, namespace: str, key: Hashable, value: torch.Tensor) -> None:
        p = self._path(namespace, key)
        if p is None:
            return
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, suffix=".tmp")
        os.close(fd)
        try:
            torch.save({"key": repr(key), "embedding": value.contiguous()}, tmp)
            os.replace(tmp, p)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    # ------------------------------------------------------------ main API
    def contains(self, namespace: str, key: Hashable) -> bool:
        return self._get((namespace, key)) is not None

    def get_many(
        self,
        namespace: str,
        keys: Sequence[Hashable],
        make_input: Callable[[Hashable], torch.Tensor],
        encode: Callable[[torch.Tensor], torch.Tensor],
        batch_size: int = 4,
        progress: ProgressFn | None = None,
    ) -> list[torch.Tensor]:
        """Embeddings for ``keys``: cached ones are reused, the rest are encoded.

        ``make_input(key)`` returns the model input (C, H, W) for one key;
        ``encode(batch)`` maps (B, C, H, W) to (B, ...) embeddings.
        ``progress(done, total, "encode")`` is called after each batch.
        """
        out: dict[Hashable, torch.Tensor] = {}
        todo: list[Hashable] = []
        for key in dict.fromkeys(keys):  # unique, order kept
            v = self._get((namespace, key))
            if v is None:
                v = self._load_disk(namespace, key)
                if v is not None:
                    self.disk_hits += 1
                    self._put((namespace, key), v)
            if v is None:
                todo.append(key)
            else:
                self.hits += 1
                out[key] = v
        self.misses += len(todo)
        total = len(todo)
        if progress and total:
            progress(0, total, "encode")
        for start in range(0, total, batch_size):
            chunk = todo[start : start + batch_size]
            batch = torch.stack([make_input(k) for k in chunk])
            emb = encode(batch)
            for k, e in zip(chunk, emb):
                e = e.detach().to("cpu").clone()
                out[k] = e
                self._put((namespace, k), e)
                self._save_disk(namespace, k, e)
            self.encoded += len(chunk)
            if progress:
                progress(min(start + batch_size, total), total, "encode")
        return [out[k] for k in keys]

    def keys(self, namespace: str) -> Iterable[Hashable]:
        return [k for (ns, k) in list(self._mem) if ns == namespace]
