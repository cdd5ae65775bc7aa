"""The widget's predictor cache: one loaded model at a time, keyed by the widget's choices.

No Qt. :meth:`PredictorCache.get` runs inside a worker (loading a model takes
seconds); the GUI thread only reads :attr:`PredictorCache.current`. A key is
``(model, device, cache_dir, modality)``, read from the widget on the GUI thread.
"""

from __future__ import annotations

import threading
from typing import Any, Callable


_SHARED_CACHES: dict = {}


def shared_embedding_cache(cache_dir: str | None):
    """One :class:`EmbeddingCache` per ``cache_dir`` (None: in memory) for the whole process:
    switching model keeps it, so a model with the same image encoder (a decoder-only site
    model and its base: same ``encoder_signature``) encodes nothing again."""
    from sam_med.predictors.embedding_cache import EmbeddingCache

    key = None if cache_dir is None else str(cache_dir)
    if key not in _SHARED_CACHES:
        _SHARED_CACHES[key] = EmbeddingCache(cache_dir=key)
    return _SHARED_CACHES[key]


def default_factory(model: str, device: str, cache_dir: str | None, modality: str | None = None):
    """The predictor the CLI would build for ``sam-med segment --model M --device D [--modality]``,
    with the process's shared embedding cache (:func:`shared_embedding_cache`)."""
    from sam_med.predictors.factory import build_predictor, is_volumetric, resolve_device
    from sam_med.predictors.slicewise import SliceWisePredictor

    if is_volumetric(model):
        return build_predictor(model, device)
    opts = {"modality": modality} if modality else {}
    return SliceWisePredictor(model, device=resolve_device(device), cache=shared_embedding_cache(cache_dir), **opts)


class PredictorCache:
    """Builds the predictor for a key once and reuses it while the key stays the same."""

    def __init__(self, factory: Callable[..., Any] = default_factory) -> None:
        #: ``factory(model, device, cache_dir, modality) -> predictor`` (tests may replace it)
        self.factory = factory
        self.current: Any = None
        self.key: tuple | None = None
        self._lock = threading.Lock()

    def loaded(self, key: tuple):
        """The predictor for ``key`` if it is the loaded one, else None (never builds)."""
        with self._lock:
            return self.current if self.current is not None and self.key == key else None

    def get(self, key: tuple, progress: Callable[..., None] | None = None):
        """The predictor for ``key``, built by :attr:`factory` when the key changed."""
        with self._lock:
            if self.current is None or self.key != key:
                if progress is not None:
                    progress(0, 1, f"loading {key[0]}")
                self.current = self.factory(*key)
                self.key = key
            return self.current
