"""Propagation from a decoded slice to its neighbours, one direction at a time (a generator).

Each next slice is prompted with the previous slice's mask box (+ ``MARGIN`` px) clipped to the
3D box's in-plane extent. Stop rules:

* the box's slice range ends (``srange``);
* the object vanishes: an empty mask; without a box also a sudden growth (> 1.5x the previous
  slice: a leak) or a mean intensity that departs from the seed slice's
  (``POINT_INTENSITY_STOP``); the rest of the range is cleared, unless a positive click lies
  beyond (a click there re-seeds the object).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from ..planes import PlaneGeometry, expand_box, intersect_box, mask_bbox
from .clicks import clicks_on
from .constants import MARGIN, POINT_INTENSITY_STOP
from .state import ObjectState, Propagation, SliceOut

__all__ = ["propagate_pass", "base_box", "unlike_seed", "clicks_beyond"]


def base_box(st: ObjectState, geo: PlaneGeometry, prev: SliceOut, margin: int) -> np.ndarray | None:
    """The prompt box for the slice after ``prev``: its mask box + margin, within the 3D
    box's in-plane extent (a key-slice box's rectangle bounds only its own slice: organs
    are wider off their middle slice)."""
    bb = mask_bbox(prev.mask)
    if bb is None:
        return None
    bb = expand_box(bb, margin, geo.hw)
    if st.bound2d is not None and not st.key_only:
        inter = intersect_box(bb, st.bound2d)
        bb = inter if inter is not None else bb
    return bb


def intensity_stats(plane_image: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(mean, sd) of ``plane_image`` (the slice on the model's 0-255 scale) under ``mask``."""
    v = plane_image[mask].astype(np.float64)
    return float(v.mean()), float(v.std())


def departs(stats: tuple[float, float] | None, plane_image: np.ndarray, mask: np.ndarray, k: float | None) -> bool:
    """True when ``mask``'s mean intensity departs from ``stats`` (mean, sd) by more than
    ``k`` x the sd, and at least 30 on the 0-255 scale (False when ``stats`` or ``k`` is None
    or the mask is empty)."""
    if stats is None or k is None or not mask.any():
        return False
    return abs(float(plane_image[mask].mean()) - stats[0]) > max(k * stats[1], 30.0)


def unlike_seed(st: ObjectState, plane_image: np.ndarray, mask: np.ndarray, k: float | None) -> bool:
    """Points only (no box bounds the slices): the mask has left the object when its mean
    intensity departs from the seed slice's (:func:`departs` with ``st.seed_stats``)."""
    return departs(st.seed_stats, plane_image, mask, k)


def clicks_beyond(st: ObjectState, geo: PlaneGeometry, z: int, step: int) -> bool:
    """A positive click lies beyond slice ``z`` in direction ``step``."""
    for p in st.prompts.points:
        s = int(round(geo.to_plane(p.ijk)[0]))
        if p.positive and (s - z) * step > 0:
            return True
    return False


def _empty(geo: PlaneGeometry) -> SliceOut:
    return SliceOut(np.zeros(geo.hw, bool), None, None)


def propagate_pass(pred, st: ObjectState, geo: PlaneGeometry, job: Propagation) -> Iterator[tuple[int, SliceOut]]:
    """Run one pass (see the module docstring); yields ``(z, SliceOut)`` for every slice
    it sets in ``st.slices``, as it goes. ``pred``: the
    :class:`~.predictor.SliceWisePredictor` (its public methods and options)."""
    step = job.step
    s0, s1 = st.srange
    prev = st.slices[job.start]
    last_box = prev.box if prev.mask.any() else None
    z = job.start + step
    while s0 <= z <= s1:
        clicks = clicks_on(st.prompts.points, geo, z)
        positive = any(p for _, _, p in clicks)
        base = base_box(st, geo, prev, MARGIN) if prev.mask.any() else None
        if base is None and positive and last_box is not None:
            base = last_box  # a click where the object had vanished re-seeds it
        if base is None and not positive:
            new = _empty(geo)
        else:
            emb = pred.prefetch(st, geo, z, step)
            new = pred.slice_with_clicks(st, geo, z, emb, base, None, clicks)
            if st.bound2d is None and not clicks and new.mask.sum() > 1.5 * max(prev.mask.sum(), 1):
                new = _empty(geo)  # no box: a sudden growth is a leak
            elif (not clicks and st.seed_stats is not None
                  and unlike_seed(st, pred.slice_image(geo, z), new.mask, POINT_INTENSITY_STOP)):
                new = _empty(geo)  # no box: another tissue
        st.slices[z] = new
        vanished = not new.mask.any() and not clicks_beyond(st, geo, z, step)
        if vanished:
            # the object vanished: clear the rest of the range, then stop
            zz = z + step
            while s0 <= zz <= s1:
                st.slices.pop(zz, None)
                zz += step
        yield z, new
        if vanished:
            break
        if new.mask.any():
            last_box = new.box
        prev = new
        z += step
