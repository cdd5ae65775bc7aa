"""``click_rule="extend"``: a positive click where the mask never reached brings the object in there.

Under the CVPR 2025 protocol a click lands at the centre of the largest 3D error component,
often on a slice the mask never reached (propagation stopped early, or a key-slice box's
first run missed the object's ends). The ``edit`` rule seeds that one slice only; here:

1. the clicked slice is seeded from the click (the box search around it, as
   :func:`~.corrections.carry_correction` does: the nearest segmented slice's box grown to
   the click, or :func:`~.seeding.scan_box` when the object has no mask at all);
2. when the model honoured the click, the seed is *propagated* both ways with the normal
   machinery (neighbour-mask boxes + ``margin``, the clicks on each slice, ``iou_stop``,
   the points-only growth and intensity stops) into the slices where the object is still
   missing: outwards until it vanishes, towards the existing mask until it meets it. A
   slice that already has a mask is never changed (the pass stops there), and nothing is
   cleared, so a click never loses what earlier steps got right.

Every other click (on a slice that has a mask, negative clicks) is handled as ``edit``.
Slices are ``(H, W)`` planes of the object's slicing axis; clicks ``(x, y)`` plane px.
"""

from __future__ import annotations

import numpy as np

from ..planes import PlaneGeometry
from .clicks import clicks_on
from .corrections import apply_click, apply_correction
from .propagation import base_box, unlike_seed
from .state import ObjectState, SliceOut

__all__ = ["extend_click", "fill_missing"]


def _has_mask(st: ObjectState, z: int) -> bool:
    cur = st.slices.get(z)
    return cur is not None and bool(cur.mask.any())


def fill_missing(pred, st: ObjectState, geo: PlaneGeometry, k: int, step: int) -> list[int]:
    """Propagate from slice ``k`` (already segmented) in direction ``step`` (+1/-1) through
    the slices that have no mask, within ``st.srange``; stop before a slice with a mask, or
    where the object vanishes (an empty decode, predicted IoU below ``iou_stop``; points only
    also a growth > 1.5x, or an intensity unlike the seed's). Returns the slices set, in
    order. ``pred``: the :class:`~.predictor.SliceWisePredictor` (public methods, options)."""
    o = pred.options
    s0, s1 = st.srange
    prev = st.slices[k]
    z = k + step
    done: list[int] = []
    while s0 <= z <= s1 and not _has_mask(st, z):
        base = base_box(st, geo, prev, o.margin)
        if base is None:
            break
        clicks = clicks_on(st.prompts.points, geo, z)
        emb = pred.prefetch(st, geo, z, step)
        mask_in = prev.logits if o.mask_prompt else None
        new = pred.slice_with_clicks(st, geo, z, emb, base, mask_in, clicks)
        if not new.mask.any() or new.score < o.iou_stop:
            break
        if st.bound2d is None and not clicks and new.mask.sum() > 1.5 * max(prev.mask.sum(), 1):
            break  # no box: a sudden growth is a leak
        if not clicks and unlike_seed(st, pred.slice_image(geo, z), new.mask, o.point_intensity_stop):
            break  # no box: another tissue
        st.slices[z] = new
        done.append(z)
        prev = new
        z += step
    return done


def extend_click(pred, st: ObjectState, geo: PlaneGeometry, p, k: int) -> list[int]:
    """Refinement click ``p`` (a voxel :class:`~sam_med.prompts.Point`, already in
    ``st.prompts``) on slice ``k`` under ``click_rule="extend"`` (see the module docstring).
    Returns the slices the seed + propagation set (empty when the click went to ``edit``)."""
    if not p.positive or _has_mask(st, k):
        apply_click(pred, st, geo, p, k, "edit")
        return []
    _, fx, fy = geo.to_plane(p.ijk)
    x, y = int(round(fx)), int(round(fy))
    got = apply_correction(pred, st, geo, k, x, y, True)
    if k not in st.slices:
        st.slices[k] = SliceOut(np.zeros(geo.hw, bool), None, None)
    if got is None or not got[1] or not st.slices[k].mask.any():
        return [k] if got is not None else []  # a disk edit (the model did not see it) stays put
    changed = [k]
    for step in (+1, -1):
        changed += fill_missing(pred, st, geo, k, step)
    return changed
