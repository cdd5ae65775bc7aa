"""A refinement click on the current masks (``click_rule`` "ball", "edit" or "model").

* The clicked slice has a mask: "ball" paints or cuts the guarded disk on the slice
  and continues it through the neighbours as a ball (:mod:`.ball`); "edit" the disk on the
  clicked slice only (:func:`~.clicks.local_edit`). No decoder call. "model": the click-trained
  decoder's bounded correction, carried through the neighbours (:mod:`.model_clicks`).
* The clicked slice has no mask and the click is positive: the object is seeded there
  (:func:`seed_slice`): the slice is decoded from the nearest segmented slice's box grown to
  the click (or the box searched around the click), and the decoded part containing the click
  is added; when the model does not cover the click, a disk around it.
* A negative click on an empty slice agrees already: nothing changes.

Clicks are plane pixels ``(x, y)`` of slice ``k``; the slices a click changes are returned so
that :meth:`~.predictor.SliceWisePredictor.propagate` can yield them.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..planes import PlaneGeometry, clip_box, component_at, mask_bbox, union_box
from .ball import ball_click
from .clicks import local_edit, nearest_box
from .constants import MARGIN, MAX_CHANGE
from .model_clicks import model_click
from .seeding import scan_box
from .state import SliceOut

__all__ = ["correct_slice", "seed_slice", "apply_click"]


def correct_slice(decode: Callable, mask: np.ndarray, box, x: int, y: int) -> np.ndarray | None:
    """The ``(H, W)`` bool region to add so that pixel ``(x, y)`` of ``mask`` becomes part of
    the object (None when it already is). ``decode(box) -> SliceOut`` decodes this slice; ``box``
    the slice's current box or a neighbour's (None: searched around the click). The model's
    added part containing the click is used unless it is larger than ``MAX_CHANGE`` x the
    slice's mask (a correction, not a re-drawing); otherwise the disk edit."""
    if mask[y, x]:
        return None
    hw = mask.shape
    m = max(MARGIN, 2)
    area = int(mask.sum())
    box = scan_box(decode, hw, [(x, y, True)], MARGIN) if box is None else \
        union_box(np.asarray(box), np.array([x - m, y - m, x + m, y + m]))
    if box is not None:
        delta = component_at(decode(clip_box(box, hw)).mask & ~mask, x, y)
        if delta is not None and not (area and delta.sum() > MAX_CHANGE * area):
            return delta
    if not area:  # no mask to reach to: the click's own box, as a disk of its half-size
        yy, xx = np.ogrid[: hw[0], : hw[1]]
        return (xx - x) ** 2 + (yy - y) ** 2 <= m * m
    return local_edit(mask, [(x, y, True)]) & ~mask


def seed_slice(pred, st, geo: PlaneGeometry, z: int, x: int, y: int) -> list[int]:
    """A positive click at plane ``(x, y)`` of slice ``z`` where the object has no mask (see
    the module docstring); returns ``[z]`` when the slice changed."""
    cur = st.slices.get(z)
    m = cur.mask if cur is not None else np.zeros(geo.hw, bool)
    box = mask_bbox(m) if m.any() else (nearest_box(st.slices, z) if st.bound2d is not None else None)
    emb = pred.view_embeddings(st, geo, [z])[z]
    delta = correct_slice(lambda b: pred.decode_slice(geo, z, st.view, emb, b), m, box, x, y)
    if delta is None:
        return []
    new = m | delta
    st.slices[z] = SliceOut(new, None, mask_bbox(new), 0.0 if cur is None else cur.score)
    st.srange = (min(st.srange[0], z), max(st.srange[1], z))
    return [z]


def apply_click(pred, st, geo: PlaneGeometry, p, k: int) -> list[int]:
    """Refinement click ``p`` (a voxel :class:`~sam_med.prompts.Point`, already in
    ``st.prompts``) on slice ``k`` under ``pred.options.click_rule``; returns the slices it
    changed (``k`` first)."""
    _, fx, fy = geo.to_plane(p.ijk)
    x, y = int(round(fx)), int(round(fy))
    cur = st.slices.get(k)
    changed: list[int] = []
    if cur is not None and cur.mask.any():
        if pred.options.click_rule == "ball":
            changed = ball_click(pred, st, geo, k, x, y, p.positive)
        elif pred.options.click_rule == "model":
            changed = model_click(pred, st, geo, k, x, y, p.positive)
        else:
            new = local_edit(cur.mask, [(x, y, p.positive)])
            if not np.array_equal(new, cur.mask):
                st.slices[k] = SliceOut(new, None, mask_bbox(new) if new.any() else None, cur.score)
                changed = [k]
    elif p.positive:
        changed = seed_slice(pred, st, geo, k, x, y)
    if k not in st.slices:  # the click agreed with an empty slice: nothing to change
        st.slices[k] = SliceOut(np.zeros(geo.hw, bool), None, None)
    return changed
