"""Slices as they are decoded: a predictor's streaming API behind one generator.

:func:`stream_prediction` drives a predictor that has the SAM 2 style API
(``init_state`` / ``add_prompts`` / ``propagate`` / ``volume_mask``, e.g. the
slice-wise predictor) and yields each slice's mask as it is decoded, the prompted
slice first; at the end it returns the object's :class:`PredictionResult`, as
``predict`` would. A predictor without that API is run through ``predict`` and
yields once, the whole mask. :meth:`sam_med.session.Session.stream` uses it.

Each yield is ``(axis, k, plane)``: ``plane`` is slice ``k`` along voxel axis ``axis``
in the volume's own index order (``np.take(mask3d, k, axis)``, bool), so
``mask3d[(slice(None),) * axis + (k,)] = plane`` paints it; the fallback yields
``(None, None, mask3d)`` with the whole ``volume.shape`` bool mask.
"""

from __future__ import annotations

import time
from typing import Generator

import numpy as np

from ..prompts import ObjectPrompts
from .base import PredictionResult, ProgressFn

__all__ = ["STREAMING_API", "supports_streaming", "stream_prediction", "paint"]

STREAMING_API = ("init_state", "add_prompts", "propagate", "volume_mask")

Update = tuple  # (axis | None, k | None, bool plane or whole mask)


def supports_streaming(predictor) -> bool:
    """True when ``predictor`` has the streaming API (:data:`STREAMING_API`)."""
    return all(callable(getattr(predictor, n, None)) for n in STREAMING_API)


def paint(mask3d: np.ndarray, update: Update, value=True, background=False) -> None:
    """Write one update into ``mask3d`` (any dtype, the volume's shape): ``value`` where the
    update's mask is set, ``background`` where it is not but ``mask3d`` held ``value``."""
    axis, k, m = update
    target = mask3d if axis is None else mask3d[(slice(None),) * axis + (k,)]
    target[~m & (target == value)] = background
    target[m] = value


def _extends(state, prompts: ObjectPrompts) -> bool:
    """``prompts`` = the run ``state``'s prompts + appended clicks (same boxes)."""
    old = getattr(state, "prompts", None)
    if old is None or getattr(state, "key", None) is None or not callable(getattr(state, "branch", None)):
        return False
    return (old.box == prompts.box and old.key_box == prompts.key_box
            and len(prompts.points) > len(old.points) and prompts.points[: len(old.points)] == old.points)


def stream_prediction(predictor, volume, prompts: ObjectPrompts, previous: PredictionResult | None = None,
                      progress: ProgressFn | None = None) -> Generator[Update, None, PredictionResult]:
    """Segment one object, yielding slices as they are decoded; returns the result.

    A ``previous`` result whose prompts ``prompts`` extend by clicks is refined (its state
    branched, never modified), as ``predict`` does. Closing the generator early stops the
    predictor after the slice being decoded."""
    t0 = time.perf_counter()
    if not supports_streaming(predictor):
        result = predictor.predict(volume, prompts, previous, progress)
        yield None, None, np.asarray(result.mask, dtype=bool)
        return result
    prev = previous.state if previous is not None else None
    if _extends(prev, prompts):
        st = prev.branch(prev.prompts)
        st.volume = volume
        first = predictor.add_prompts(st, prompts.points[len(prev.prompts.points):], progress=progress)
        mode = "refine"
    else:
        st = predictor.init_state(volume, prompts)
        first = predictor.add_prompts(st, progress=progress)
        mode = "full"
    axis = int(st.axis)
    if not st.pending:  # else propagate yields the prompted slice first
        yield axis, int(first[0]), np.asarray(first[1], dtype=bool).T
    for k, m in predictor.propagate(st, progress):  # (H, W) planes: the volume's slice is .T
        yield axis, int(k), np.asarray(m, dtype=bool).T
    info = {"mode": mode, "axis": axis, "streamed": True, "seconds": time.perf_counter() - t0,
            "slices": st.mask_slices() if callable(getattr(st, "mask_slices", None)) else None}
    return PredictionResult(mask=np.asarray(predictor.volume_mask(st), dtype=bool), state=st, info=info)
