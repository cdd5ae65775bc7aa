"""Refinement clicks that fix the error they land in, carried through the neighbouring slices.

``click_rule="carry"`` (default). A click says "this voxel is wrong". On its slice the model
is asked for the corrected mask, and only the *change that contains the click* is applied:

* positive click outside the mask: the slice is decoded with the box grown to include the
  click (or, on a slice the object never reached, the box found by the points-only box
  search around the click); the added region is the connected part of ``decoded & ~mask``
  that contains the click (the model's idea of the missed part), falling back to the disk
  edit (:func:`~.clicks.local_edit`) when the model does not cover the click;
* negative click inside the mask: the slice is decoded with the box side nearest to the click
  moved past it; the removed region is the connected part of ``mask & ~decoded`` that
  contains the click (a leak, not the object), falling back to the disk edit.

The change is then *carried*: on the next slice outwards the same correction is made at the
change's centre (its pixel nearest to the centroid), while the next change still overlaps the
previous one, stays no larger than ``carry_growth`` x it (a correction fades, it does not
leak), and the slice has no click of its own. A disk edit (the model did not honour the
click) stays on its slice. Everything else stays as it was, so a click
never loses what earlier steps got right. Both directions are carried (an error component
extends both ways from its centre, where the CVPR 2025 protocol clicks).

``click_rule="repropagate"``: the earlier rule (disk edit, then the model re-propagates the
slices downstream while they change), kept for comparison.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import ndimage

from ..planes import PlaneGeometry, clip_box, component_at, mask_bbox, union_box
from .clicks import local_edit, nearest_box, shrink_past
from .seeding import scan_box
from .state import SliceOut

__all__ = ["correct_slice", "carry_correction", "apply_correction", "apply_click"]

_EIGHT = np.ones((3, 3), bool)


def correct_slice(decode: Callable, mask: np.ndarray, box, x: int, y: int, positive: bool,
                  margin: int, max_change: float = 0.5) -> tuple[np.ndarray, bool] | None:
    """``(change, by_model)``: the ``(H, W)`` bool region that makes pixel ``(x, y)`` of
    ``mask`` agree with the click (pixels to add when ``positive``, else to remove), and
    whether the model made it (False: the disk edit); None when the pixel already agrees.
    A model change larger than ``max_change`` x the slice's mask area is refused (the disk
    edit is used instead): a click corrects a part of the object, it does not re-draw it.
    ``decode(box) -> SliceOut`` decodes this slice; ``box`` the slice's current box (None:
    the object has no box near here; the box is then searched around the click)."""
    if bool(mask[y, x]) == positive:
        return None
    hw = mask.shape
    m = max(margin, 2)
    delta = None
    area = int(mask.sum())
    if positive:
        click_box = np.array([x - m, y - m, x + m, y + m])
        if box is None:
            box = scan_box(decode, hw, [(x, y, True)], margin)
        else:
            box = union_box(np.asarray(box), click_box)
        if box is not None:
            out = decode(clip_box(box, hw)).mask
            delta = component_at(out & ~mask, x, y)
            if delta is not None and area and delta.sum() > max_change * area:
                delta = None  # the model re-drew far more than the slice's object: not a correction
    elif box is not None:
        shrunk = shrink_past(np.asarray(box), x, y)
        kept = decode(shrunk).mask & mask if shrunk is not None else np.zeros_like(mask)
        delta = component_at(mask & ~kept, x, y)
        if delta is not None and delta.sum() > max_change * area:
            delta = None  # the model dropped the object, not the part under the click
    if delta is not None:
        return delta, True
    # the model does not honour the click: the smallest edit that does (not carried: only
    # a change the model makes is evidence about the neighbouring slices)
    if positive and not area:
        # no mask to reach to (the disk edit would cover the whole slice): the click's own
        # box, as a disk of its half-size
        yy, xx = np.ogrid[: hw[0], : hw[1]]
        return (xx - x) ** 2 + (yy - y) ** 2 <= m * m, False
    edited = local_edit(mask, [(x, y, positive)])
    return ((edited & ~mask) if positive else (mask & ~edited)), False


def _anchor(delta: np.ndarray, mask: np.ndarray, positive: bool) -> tuple[int, int] | None:
    """Where to carry a change to the next slice: the pixel of ``delta`` nearest to its
    centroid among those still wrong there (outside ``mask`` for a positive change, inside
    it for a negative one); None when there is none."""
    cand = delta & (~mask if positive else mask)
    if not cand.any():
        return None
    ys, xs = np.nonzero(cand)
    cy, cx = np.nonzero(delta)
    i = int(np.argmin((ys - cy.mean()) ** 2 + (xs - cx.mean()) ** 2))
    return int(xs[i]), int(ys[i])


def carry_correction(pred, st, geo: PlaneGeometry, k: int, x: int, y: int, positive: bool,
                     clicked: set[int], carry: bool = True) -> list[int]:
    """Apply a click at plane ``(x, y)`` of slice ``k`` (see the module docstring), then
    carry it outwards (unless not ``carry``); returns the slices it changed, in order.
    ``clicked``: slices with clicks of their own (the carry stops before them).
    ``pred``: the :class:`~.predictor.SliceWisePredictor` (public methods and options)."""
    o = pred.options
    n = geo.n_slices
    first = apply_correction(pred, st, geo, k, x, y, positive)
    if first is None:
        return []
    changed = [k]
    if not first[1] or not carry:
        return changed  # a disk edit stays on its slice
    for step in (+1, -1):
        prev = first[0]
        z = k + step
        while 0 <= z < n and z not in clicked:
            cur = st.slices.get(z)
            m = cur.mask if cur is not None else np.zeros(geo.hw, bool)
            at = _anchor(prev, m, positive)
            if at is None:
                break
            got = apply_correction(pred, st, geo, z, at[0], at[1], positive, dry=True)
            delta = None if got is None or not got[1] else got[0]
            if (delta is None or not delta.any() or not (delta & ndimage.binary_dilation(prev, _EIGHT, 2)).any()
                    or delta.sum() > o.carry_growth * prev.sum() + 4):
                break
            _commit(st, z, m, delta, positive)
            changed.append(z)
            prev = delta
            z += step
    return changed


def apply_correction(pred, st, geo: PlaneGeometry, z: int, x: int, y: int, positive: bool, dry: bool = False):
    """The click at plane ``(x, y)`` of slice ``z`` corrected by :func:`correct_slice` (the
    slice's box, else its mask's box, else the nearest segmented slice's box, else the box
    search around the click); committed to ``st.slices`` unless ``dry``. Returns
    ``(change, by_model)`` or None (the slice already agrees, or nothing to remove)."""
    cur = st.slices.get(z)
    m = cur.mask if cur is not None else np.zeros(geo.hw, bool)
    box = cur.box if cur is not None and cur.box is not None and cur.mask.any() else None
    if box is None and positive and m.any():
        box = mask_bbox(m)
    if box is None and not positive:
        return None
    if box is None:
        box = nearest_box(st.slices, z) if st.bound2d is not None else None
    emb = pred.view_embeddings(st, geo, [z])[z]

    def decode(b):
        return pred.decode_slice(geo, z, st.view, emb, b)

    got = correct_slice(decode, m, box, x, y, positive, pred.options.margin, pred.options.carry_max_change)
    if got is None or dry:
        return got
    _commit(st, z, m, got[0], positive)
    return got


def _commit(st, z: int, m: np.ndarray, delta: np.ndarray, positive: bool) -> None:
    new = (m | delta) if positive else (m & ~delta)
    cur = st.slices.get(z)
    score = 0.0 if cur is None else cur.score
    st.slices[z] = SliceOut(new, None, mask_bbox(new), score)
    if positive:
        st.srange = (min(st.srange[0], z), max(st.srange[1], z))


def apply_click(pred, st, geo: PlaneGeometry, p, k: int, rule: str = "edit") -> None:
    """Refinement click ``p`` (a voxel :class:`~sam_med.prompts.Point`, already in
    ``st.prompts``) on slice ``k`` under ``click_rule`` "edit" (the disk edit on the clicked
    slice; a slice the object has not reached is seeded there by the model, not carried) or
    "carry" (see the module docstring) or "extend" (:mod:`.extend`: a positive click on a
    slice with no mask is seeded there and propagated into the unreached slices) or "ball"
    (:mod:`.ball`: "edit" with the disk continued through the neighbouring slices)."""
    if rule == "extend":
        from .extend import extend_click  # extend handles its other clicks as "edit"

        extend_click(pred, st, geo, p, k)
        return
    _, fx, fy = geo.to_plane(p.ijk)
    x, y = int(round(fx)), int(round(fy))
    if rule in ("edit", "ball"):
        cur = st.slices.get(k)
        from .refine import refine_slice  # refine_model: the click decoded by that model

        got = refine_slice(pred, st, geo, k, cur) if pred.options.refine_model else None
        if got is not None:
            old = cur.mask if cur is not None else np.zeros(geo.hw, bool)
            _commit(st, k, np.zeros(geo.hw, bool), got.mask, True)
            if pred.options.refine_carry:
                from .refine import refine_carry
                refine_carry(pred, st, geo, k, x, y, p.positive, got.mask ^ old)
        elif cur is not None and cur.mask.any():
            if rule == "ball":  # the (guarded) disk continued through the neighbours (.ball)
                from .ball import ball_click

                ball_click(pred, st, geo, k, x, y, p.positive)
            else:
                new = local_edit(cur.mask, [(x, y, p.positive)])
                st.slices[k] = SliceOut(new, None, mask_bbox(new) if new.any() else None, cur.score)
        elif p.positive:
            carry_correction(pred, st, geo, k, x, y, True, set(), carry=False)
    else:
        i = max(j for j, q in enumerate(st.prompts.points) if q is p)
        earlier = {int(round(geo.to_plane(q.ijk)[0])) for q in st.prompts.points[:i]}  # anchors
        carry_correction(pred, st, geo, k, x, y, p.positive, earlier)
    if k not in st.slices:  # the click agreed with an empty slice: nothing to change
        st.slices[k] = SliceOut(np.zeros(geo.hw, bool), None, None)
