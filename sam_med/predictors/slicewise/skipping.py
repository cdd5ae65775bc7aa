"""Slice skipping for first runs from a box: decode every ``slice_step``-th slice, fill the
slices between by shape-based interpolation where the object changes slowly.

One pass (direction ``step``) from the decoded slice ``z``:

1. the slice ``t = z + slice_step x step`` (at most the range end) is decoded from ``z``'s
   mask box grown by ``MARGIN x gap`` px (the object may grow over the gap), within the
   3D box's in-plane extent;
2. if ``t``'s mask is not empty and agrees with ``z``'s (2D Dice >= ``SKIP_DICE``), the
   slices between get the signed-distance interpolation of the two masks
   (:func:`~.interpolation.interpolate_masks`) and no encoder or decoder call;
3. otherwise (the ends disagree: the slices between are the ones the interpolation is
   least sure of; or ``t`` is empty: the object ends in the gap; or a click lies in the
   gap) the gap is decoded slice by slice exactly as with ``slice_step=1``
   (:func:`~.propagation.propagate_pass` rules, ``t`` re-decoded from its neighbour), and
   a vanishing object stops the pass as there.

Interpolated slices are :class:`~.state.SliceOut` with ``logits=None`` (no decoder call),
their mask's box and the lower of the two ends' predicted IoU.
"""

from __future__ import annotations

from typing import Iterator


from ..planes import PlaneGeometry, dice2d, mask_bbox
from .clicks import clicks_on
from .constants import MARGIN, SKIP_DICE
from .interpolation import interpolate_masks
from .propagation import base_box, clicks_beyond, propagate_pass
from .state import ObjectState, Propagation, SliceOut

__all__ = ["skip_pass", "uses_skipping"]


def uses_skipping(options, st: ObjectState, job: Propagation) -> bool:
    """True when ``job`` is a pass of a box prompt with ``slice_step > 1``."""
    return int(options.slice_step) > 1 and st.bound2d is not None


def _has_clicks(st: ObjectState, geo: PlaneGeometry, lo: int, hi: int) -> bool:
    return any(clicks_on(st.prompts.points, geo, z) for z in range(lo, hi + 1))


def skip_pass(pred, st: ObjectState, geo: PlaneGeometry, job: Propagation) -> Iterator[tuple[int, SliceOut]]:
    """One first-run pass with slice skipping (see the module docstring); yields
    ``(z, SliceOut)`` in slice order along ``job.step`` for every slice it sets in
    ``st.slices``. ``pred``: the :class:`~.predictor.SliceWisePredictor`."""
    n = int(pred.options.slice_step)
    step = job.step
    s0, s1 = st.srange
    end = s1 if step > 0 else s0
    z = job.start
    while z != end:
        prev = st.slices[z]
        t = z + n * step
        t = min(t, end) if step > 0 else max(t, end)
        gap = abs(t - z)
        if not prev.mask.any():
            return
        inner = range(z + step, t, step)
        out_t = None
        if gap > 1 and not _has_clicks(st, geo, min(z, t), max(z, t)):
            emb = pred.prefetch(st, geo, t, step, n)
            out_t = pred.slice_with_clicks(st, geo, t, emb, base_box(st, geo, prev, MARGIN * gap), None, [])
            if not out_t.mask.any() or dice2d(prev.mask, out_t.mask) < SKIP_DICE:
                out_t = None
        if out_t is None:  # decode the gap slice by slice, as without skipping
            sub = ObjectState(**{**st.__dict__, "srange": (min(z, t), max(z, t))})
            last = z
            for zz, out in propagate_pass(pred, sub, geo, Propagation(z, step)):
                st.slices[zz] = out
                last = zz
                yield zz, out
            if last != t or not st.slices[t].mask.any():
                # the object vanished in the gap: the rest of the range as without skipping
                if clicks_beyond(st, geo, last, step):
                    yield from propagate_pass(pred, st, geo, Propagation(last, step))
                else:
                    _clear_beyond(st, last, step, s0, s1)
                return
            z = t
            continue
        masks = interpolate_masks(prev.mask, out_t.mask, gap - 1)
        score = min(prev.score, out_t.score)
        for zz, m in zip(inner, masks):
            st.slices[zz] = SliceOut(m, None, mask_bbox(m), score)
            yield zz, st.slices[zz]
        st.slices[t] = out_t
        yield t, out_t
        z = t


def _clear_beyond(st: ObjectState, z: int, step: int, s0: int, s1: int) -> None:
    zz = z + step
    while s0 <= zz <= s1:
        st.slices.pop(zz, None)
        zz += step
