"""Encode the slices a prompt needs, through the embedding cache and a worker pool.

Keys inside the bound volume's namespace (``VolumeBinding.namespace(axis)``):
``("s", k, crop)`` for the model's own input size, ``("s", k, crop, res)`` for a
reduced ``res x res`` input. Only missing keys are encoded, in batches of
``batch_size``; on CPU each batch is split over ``workers`` threads with one intra-op
thread each (independent single-threaded encodes do not stall each other under load).
"""

from __future__ import annotations

import time
from typing import Any, Iterable

import torch

from ..base import ProgressFn
from ..embedding_cache import EmbeddingCache
from ..planes import PlaneGeometry
from .volume_binding import VolumeBinding

__all__ = ["SliceEncoder", "worker_pool"]

_POOLS: dict[int, Any] = {}


def worker_pool(n: int):
    """A process-wide pool of ``n`` encoder threads, each with one intra-op thread."""
    if n not in _POOLS:
        from concurrent.futures import ThreadPoolExecutor

        _POOLS[n] = ThreadPoolExecutor(n, thread_name_prefix="sam-med-encode",
                                       initializer=torch.set_num_threads, initargs=(1,))
    return _POOLS[n]


class SliceEncoder:
    """Embeddings ``(256, 64, 64)`` of slices of the bound volume, cached.

    ``timings``: a dict whose ``"encode"`` entry accumulates encoder seconds."""

    def __init__(self, loaded, binding: VolumeBinding, cache: EmbeddingCache, *, batch_size: int,
                 workers: int, timings: dict[str, float]) -> None:
        self.loaded = loaded
        self.binding = binding
        self.cache = cache
        self.batch_size = int(batch_size)
        self.workers = int(workers or 1)
        self.timings = timings
        self.size = int(loaded.image_size)

    def transform(self, res: int | None):
        """The slice preprocessing for encoder input size ``res`` (None: the model's S)."""
        return self.loaded.preprocess if res is None or res == self.size else self.loaded.preprocess_at(res)

    def _encode(self, batch: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        if self.workers > 1 and len(batch) > 1:
            out = torch.cat(list(worker_pool(self.workers).map(self.loaded.encode, batch.split(1))))
        else:
            with torch.inference_mode():
                out = self.loaded.encode(batch)
        self.timings["encode"] = self.timings.get("encode", 0.0) + time.perf_counter() - t0
        return out

    def _key(self, k: int, crop, res: int | None) -> tuple:
        """The cache key of slice ``k`` in view ``(crop, res)`` (``res`` S or None: the model's size)."""
        return ("s", int(k), crop) if res is None or res == self.size else ("s", int(k), crop, res)

    def ahead(self, geo: PlaneGeometry, ks: list[int], crop=None, res: int | None = None) -> torch.Tensor:
        """The embedding of slice ``ks[0]``; when it is not cached it is encoded in one batch
        with the next uncached slices of ``ks`` (the slices propagation reaches next), up to
        ``batch_size``: a window that slides one slice at a time would leave one new slice,
        a batch of one, at every step."""
        ns = self.binding.namespace(geo.axis)
        z = int(ks[0])
        take = [z]
        if not self.cache.contains(ns, self._key(z, crop, res)):
            rest = [int(k) for k in ks[1:] if not self.cache.contains(ns, self._key(k, crop, res))]
            take += rest[: max(0, self.batch_size - 1)]
        return self.embeddings(geo, take, crop, None, res)[z]

    def embeddings(self, geo: PlaneGeometry, ks: Iterable[int], crop=None, progress: ProgressFn | None = None,
                   res: int | None = None) -> dict[int, torch.Tensor]:
        """``{k: embedding}`` of slices ``ks`` along ``geo.axis`` in the view ``(crop, res)``."""
        ks = [int(k) for k in ks]
        ns = self.binding.namespace(geo.axis)
        pre = self.transform(res)

        def make_input(key):
            x, _meta = pre(self.binding.slice_image(geo, key[1], key[2]))
            return x

        keys = [self._key(k, crop, res) for k in ks]
        embs = self.cache.get_many(ns, keys, make_input, self._encode, self.batch_size, progress)
        return dict(zip(ks, embs))
