"""``click_rule="ball"``: the edit rule's disk continued through the neighbouring slices as a ball.

A corrective click under the CVPR 2025 protocol (and a user's, mostly) lands in the middle of a
3D error, which extends through the slices around the clicked one. The edit rule fixes a disk on
the clicked slice only: its radius ``r`` reaches from the click to the mask's edge
(:func:`~.clicks.local_edit`). Here the same edit continues on slice ``k ± j`` as the disk of
radius ``sqrt(r² - j²)`` around the same in-plane pixel (a ball of radius ``r`` in voxel units)
and stops, in each direction, at the first slice that has no mask or where the click's pixel
is already right (the error does not reach that slice there). No decoder call.

The guard (:mod:`.ball_guard`) keeps the painted part of each slice's disk to what the image
says is the clicked tissue: the part of the disk whose intensity (the model-range image, 0..255)
is within ``BALL_SD`` robust SDs of the click's patch, connected to the click on each slice; the
ball stops on a slice where the click's own pixel is not like that.

The radius: for a positive click ``r`` as above (its paint is bounded by the guard); for a
negative click the largest 3D ball on the click's side of the mask (:func:`ball_radius_3d`: a
cut is bounded by where the mask ends, also along the slices). Units are voxels (one slice
step = one pixel). Measured under the CVPR25 protocol on the six shared cases (tag
``experiments-2026-12``, ``benchmarks/clicks_ball.md``): edit -> guarded ball, final 0.8076 ->
0.8297, no class ends more than 0.02 below its box step.
"""

from __future__ import annotations

import numpy as np

from ..planes import PlaneGeometry, mask_bbox
from .ball_guard import make_guard
from .clicks import edit_radius
from .state import SliceOut

__all__ = ["ball_radius", "ball_radius_3d", "edited", "continue_ball", "ball_click"]


ball_radius = edit_radius  # the edit rule's disk radius: the ball's in-plane radius


def ball_radius_3d(st, geo: PlaneGeometry, k: int, x: int, y: int, positive: bool, r: float) -> float:
    """The largest ball around the click (slice ``k``, plane ``(x, y)``) on the click's side of
    the 3D mask: the distance, in voxels, to the nearest voxel of the other kind over the slices
    ``k ± r`` (``r`` the in-plane radius, an upper bound; a slice
    with no mask is all "outside"), at least 1.5. The 3D form of the edit rule's "from the click
    to the mask's edge": a negative click near the end of the object's slices cuts a ball that
    stops there, not one as wide as the slice's mask."""
    w = int(np.ceil(r))
    y0, y1, x0, x1 = max(0, y - w), y + w + 1, max(0, x - w), x + w + 1
    yy, xx = np.ogrid[y0:min(y1, geo.hw[0]), x0:min(x1, geo.hw[1])]
    d2 = (xx - x) ** 2 + (yy - y) ** 2
    best = r * r
    nz = int(np.ceil(r))
    for z in range(max(0, k - nz), min(geo.n_slices, k + nz + 1)):
        dz2 = (z - k) ** 2
        if dz2 >= best:
            continue
        cur = st.slices.get(z)
        m = cur.mask[y0:y1, x0:x1] if cur is not None else None
        other = (m if positive else ~m) if m is not None else (None if positive else np.ones(d2.shape, bool))
        if other is not None and other.any():
            best = min(best, dz2 + float(d2[other].min()))
    return max(float(np.sqrt(best)), 1.5)


def edited(cur: SliceOut, region: np.ndarray, positive: bool) -> SliceOut:
    """``cur`` with ``region`` painted (positive) or cut; no logits, the same score."""
    new = (cur.mask | region) if positive else (cur.mask & ~region)
    return SliceOut(new, None, mask_bbox(new) if new.any() else None, cur.score)


def continue_ball(st, geo: PlaneGeometry, k: int, x: int, y: int, positive: bool, r: float,
                  guard=None) -> list[int]:
    """Continue a disk edit of radius ``r`` made on slice ``k`` at ``(x, y)`` through the
    neighbouring slices of ``st.slices`` (see the module docstring); returns the slices changed.
    ``guard(z, mask, disk) -> region | None``: the part of ``disk`` to paint (positive) or cut
    on slice ``z`` (None: the ball stops there); None: the raw disk."""
    h, w = geo.hw
    yy, xx = np.ogrid[:h, :w]
    changed = []
    for step in (-1, 1):
        for j in range(1, int(r) + 1):
            rr2 = r * r - j * j
            z = k + step * j
            cur = st.slices.get(z)
            if rr2 < 1 or cur is None or not cur.mask.any() or bool(cur.mask[y, x]) == positive:
                break  # the error does not reach this slice at the click
            disk = (xx - x) ** 2 + (yy - y) ** 2 <= rr2
            if guard is not None:
                disk = guard(z, cur.mask, disk)
                if disk is None:
                    break  # the clicked tissue is not at the click's pixel here
            st.slices[z] = edited(cur, disk, positive)
            changed.append(z)
    return changed


def ball_click(pred, st, geo: PlaneGeometry, k: int, x: int, y: int, positive: bool) -> list[int]:
    """A click at plane ``(x, y)`` of slice ``k`` (which has a mask): the guarded disk on slice
    ``k`` (the click's pixel always honoured), then the ball through the neighbours; returns the
    slices changed (``k`` first; empty when the click agrees)."""
    cur = st.slices[k]
    r = ball_radius(cur.mask, x, y, positive)
    if r is None:
        return []
    if not positive:
        r = ball_radius_3d(st, geo, k, x, y, positive, r)
    guard = make_guard(pred, geo, k, x, y, positive, r)
    h, w = geo.hw
    yy, xx = np.ogrid[:h, :w]
    disk = guard(k, cur.mask, (xx - x) ** 2 + (yy - y) ** 2 <= r * r, first=True)
    disk[y, x] = True
    st.slices[k] = edited(cur, disk, positive)
    return [k] + continue_ball(st, geo, k, x, y, positive, r, guard)
