"""``missed_part="seed"`` / ``"seed_ball"`` (opt-in; under ``click_rule="ball"``): a positive
click in a missed part of the object seeds that part on its slice and propagates it both ways
(``seed_ball``: united with the guarded ball made from the masks before the click).

The CVPR 2025 protocol clicks at the centre of the largest 3D error component; for a long,
curved organ (colon) or a lobed one that is often a whole *part* the mask never reached, lying
apart from the mask on the clicked slice. The guarded ball (:mod:`.ball`) paints a disk there of
radius = the distance to the mask, only as far along the slices as that radius. Here instead:

1. **Is the click in a separate part?** The click's tissue (the pixels like the click's 5x5
   patch, :func:`~.ball_guard.click_tolerance`, connected to the click) inside the ball's own
   disk grown by 2 px (radius ``r + 2``, ``r`` = distance from the click to the mask) does not
   touch the mask (dilated by one pixel), and ``r >= 2`` (not adjacent). A click whose tissue
   runs into the mask is a missed rim: the guarded ball handles it. ``missed_part_test="either"``
   (default): also a click farther from the mask than the slice's mask is thick (its largest
   inner distance to its edge). The tests use only the object's own geometry and the image.
2. **Seed the slice**: the points-only box search (:func:`~.seeding.scan_box`) around the click,
   then the slice decoded from that box with the click (:meth:`slice_with_clicks`); the part is
   the decoded component containing the click, minus the mask. It is refused (the ball is used)
   when the model does not cover the click, or the part is larger than the object's largest
   cross-section so far (a part is not bigger than the whole).
3. **Propagate the part** slice by slice both ways (the engine's rules: the previous part's box
   + ``margin`` within the 3D box's in-plane bound, an empty decode or a predicted IoU below
   ``iou_stop`` stops, a growth past 1.5x the previous part stops, a mean intensity unlike the
   seed part's (``point_intensity_stop``) stops), keeping the decoded components that overlap
   the previous part. It stops where the part *meets the existing mask* (half of it or more is
   already mask there) or fades, at the object's slice range, and before a slice with a click of
   its own. Each slice gets ``mask | part``: nothing is removed.

Slices are ``(H, W)`` planes of the object's slicing axis; clicks ``(x, y)`` plane px.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..planes import PlaneGeometry, component_at, mask_bbox
from .clicks import clicks_on
from .propagation import base_box, departs, intensity_stats
from .seeding import scan_box
from .state import ObjectState, SliceOut

__all__ = ["is_separate_part", "seed_part_click", "union_slices"]

_EIGHT = np.ones((3, 3), bool)


def is_separate_part(img: np.ndarray, mask: np.ndarray, x: int, y: int, n_sd: float, test: str = "tissue") -> bool:
    """True when a positive click at ``(x, y)`` (outside ``mask``, both ``(H, W)``; ``img`` the
    slice on the model's 0..255 scale) lies in tissue that does not reach the mask within the
    ball's disk grown by 2 px (see the module docstring, step 1). ``test="either"``: also when
    the click is farther from the mask than the mask's own half-thickness on the slice (the
    largest distance from a mask pixel to the mask's edge): farther than the object is thick."""
    from .ball_guard import click_tolerance

    if mask[y, x] or not mask.any():
        return False
    r = float(ndimage.distance_transform_edt(~mask)[y, x])
    if r < 2:
        return False
    if test == "either" and r > float(ndimage.distance_transform_edt(mask).max()):
        return True
    m, tol = click_tolerance(img, x, y, r, n_sd)
    h, w = mask.shape
    yy, xx = np.ogrid[:h, :w]
    like = (np.abs(img.astype(np.float64) - m) <= tol) & ((xx - x) ** 2 + (yy - y) ** 2 <= (r + 2) ** 2)
    like[y, x] = True
    part = component_at(like, x, y)
    return not (part & ndimage.binary_dilation(mask, _EIGHT)).any()


def _parts_touching(mask: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """The components of ``mask`` that overlap ``prev`` dilated by 2 px."""
    lab, n = ndimage.label(mask, structure=_EIGHT)
    if not n:
        return mask
    hit = np.unique(lab[ndimage.binary_dilation(prev, _EIGHT, 2) & mask])
    return np.isin(lab, hit[hit > 0])


def _commit(st: ObjectState, z: int, part: np.ndarray, geo: PlaneGeometry) -> None:
    cur = st.slices.get(z)
    m = cur.mask if cur is not None else np.zeros(geo.hw, bool)
    new = m | part
    st.slices[z] = SliceOut(new, None, mask_bbox(new), 0.0 if cur is None else cur.score)


def _propagate_part(pred, st: ObjectState, geo: PlaneGeometry, k: int, seed: np.ndarray, step: int,
                    stats: tuple[float, float]) -> list[int]:
    """Carry the part ``seed`` of slice ``k`` in direction ``step`` (module docstring, step 3)."""
    o = pred.options
    s0, s1 = st.srange
    prev = seed
    z = k + step
    done: list[int] = []
    while s0 <= z <= s1:
        if clicks_on(st.prompts.points, geo, z):
            break  # a slice the user clicked on is an anchor
        base = base_box(st, geo, SliceOut(prev, None, mask_bbox(prev)), o.margin)
        if base is None:
            break
        emb = pred.prefetch(st, geo, z, step)
        out = pred.decode_slice(geo, z, st.view, emb, base)
        if not out.mask.any() or out.score < o.iou_stop:
            break  # the part vanished
        part = _parts_touching(out.mask, prev)
        cur = st.slices.get(z)
        have = cur.mask if cur is not None else np.zeros(geo.hw, bool)
        if (part & have).sum() * 2 >= part.sum():
            break  # met the existing mask (or faded: nothing touches the previous part)
        if part.sum() > 1.5 * max(prev.sum(), 1):
            break  # a leak
        if departs(stats, pred.slice_image(geo, z), part, o.point_intensity_stop):
            break  # another tissue
        _commit(st, z, part, geo)
        done.append(z)
        prev = part
        z += step
    return done


def seed_part_click(pred, st: ObjectState, geo: PlaneGeometry, k: int, x: int, y: int) -> list[int] | None:
    """A positive click at plane ``(x, y)`` of slice ``k`` (which has a mask) under
    ``missed_part="seed"``: the slices changed (``k`` first), or None when the click is not in a
    separate part or the model gave no acceptable part (the caller then uses the ball)."""
    o = pred.options
    cur = st.slices[k]
    img = pred.slice_image(geo, k)
    if not is_separate_part(img, cur.mask, x, y, o.ball_guard_sd, o.missed_part_test):
        return None
    emb = pred.view_embeddings(st, geo, [k])[k]

    def decode(box):
        return pred.decode_slice(geo, k, st.view, emb, box)

    clicks = [(x, y, True)]
    bb = scan_box(decode, geo.hw, clicks, o.margin)
    if bb is None:
        return None
    out = pred.slice_with_clicks(st, geo, k, emb, bb, None, clicks)
    comp = component_at(out.mask, x, y)
    if comp is None:
        return None
    part = comp & ~cur.mask
    largest = max((int(s.mask.sum()) for s in st.slices.values()), default=0)
    if not part[y, x] or part.sum() > largest:
        return None
    _commit(st, k, part, geo)
    stats = intensity_stats(img, part)
    changed = [k]
    for step in (+1, -1):
        changed += _propagate_part(pred, st, geo, k, part, step, stats)
    return changed


def union_slices(st: ObjectState, other: dict[int, SliceOut], zs: list[int]) -> list[int]:
    """``missed_part="seed_ball"``: slice ``z`` of ``st`` becomes ``st``'s mask | ``other``'s,
    for each ``z`` of ``zs``; returns ``zs`` without repeats, in order."""
    out: list[int] = []
    for z in zs:
        if z in out:
            continue
        out.append(z)
        a, b = st.slices.get(z), other.get(z)
        if a is None or b is None:
            st.slices[z] = a if b is None else b
            continue
        new = a.mask | b.mask
        st.slices[z] = SliceOut(new, None, mask_bbox(new), a.score)
    return out
