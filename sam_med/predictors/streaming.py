"""Slices as they are decoded: any predictor behind one generator.

:func:`stream_prediction` runs a predictor's own driver when it has one (``segment``: the
slice-wise predictor's, which ``predict`` also runs, so a streamed result and a predicted one
are the same computation) and yields each changed slice as it is decoded, the prompted slice
first; at the end it returns the object's :class:`PredictionResult`. A predictor without a
driver is run through ``predict`` and yields once, the whole mask.
:meth:`sam_med.session.Session.stream` uses it.

Each yield is ``(axis, k, plane)``: ``plane`` is slice ``k`` along voxel axis ``axis`` in the
volume's own index order (``np.take(mask3d, k, axis)``, bool), so
``mask3d[(slice(None),) * axis + (k,)] = plane`` paints it (:func:`paint`); the fallback yields
``(None, None, mask3d)`` with the whole ``volume.shape`` bool mask.
"""

from __future__ import annotations

from typing import Generator

import numpy as np

from ..prompts import ObjectPrompts
from .base import PredictionResult, ProgressFn

__all__ = ["supports_streaming", "stream_prediction", "paint"]

Update = tuple  # (axis | None, k | None, bool plane or whole mask)


def supports_streaming(predictor) -> bool:
    """True when ``predictor`` has a streaming driver (``segment``)."""
    return callable(getattr(predictor, "segment", None))


def paint(mask3d: np.ndarray, update: Update, value=True, background=False) -> None:
    """Write one update into ``mask3d`` (any dtype, the volume's shape): ``value`` where the
    update's mask is set, ``background`` where it is not but ``mask3d`` held ``value``."""
    axis, k, m = update
    target = mask3d if axis is None else mask3d[(slice(None),) * axis + (k,)]
    target[~m & (target == value)] = background
    target[m] = value


def stream_prediction(predictor, volume, prompts: ObjectPrompts, previous: PredictionResult | None = None,
                      progress: ProgressFn | None = None) -> Generator[Update, None, PredictionResult]:
    """Segment one object, yielding slices as they change; returns the result (see the module
    docstring). Closing the generator early stops the predictor after the slice being decoded."""
    if supports_streaming(predictor):
        return (yield from predictor.segment(volume, prompts, previous, progress))
    result = predictor.predict(volume, prompts, previous, progress)
    yield None, None, np.asarray(result.mask, dtype=bool)
    return result
