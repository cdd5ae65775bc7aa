"""``click_rule="ball"``: the edit rule's disk continued through the neighbouring slices as a ball.

A corrective click under the CVPR 2025 protocol (and a user's, mostly) lands in the middle of a
3D error, which extends through the slices around the clicked one. The edit rule fixes a disk on
the clicked slice only: its radius ``r`` reaches from the click to the mask's edge
(:func:`~.clicks.local_edit`). Here the same edit continues on slice ``k ± j`` as the disk of
radius ``sqrt(r² - j²)`` around the same in-plane pixel (a ball of radius ``r`` in voxel units)
and stops, in each direction, at the first slice that has no mask or where the click's pixel
is already right (the error does not reach that slice there). No decoder call.

``ball_guard`` (:mod:`.ball_guard`) keeps the painted part of each slice's disk to what the image
says is the clicked tissue: ``"none"`` the raw disk; ``"connected"`` the part connected to the
click (negative clicks: of the mask inside the disk); ``"intensity"`` the part of the disk whose
intensity (the model-range image the predictor holds, 0..255) is within ``ball_guard_sd``
robust SDs of the click's patch, connected to the click on each slice; the ball stops on a
slice where the click's own pixel is not like that.

``ball_radius``: ``"plane"`` ``r`` as above; ``"volume"`` the largest 3D ball on the click's
side of the mask (:func:`ball_radius_3d`); ``"volume_negative"`` volume for negative clicks
(a cut is bounded by where the mask ends, also along the slices: the intensity guard cannot
tell a mask continued past the object's end in the same tissue), plane for positive ones
(their paint is already bounded by the guard).

``ball_units``: ``"voxel"`` a ball in voxel units (one slice = one pixel); ``"mm"`` a ball in
millimetres: one slice step counts ``a`` pixels, ``a`` = the slice spacing over the mean in-plane
spacing of the object's volume (:func:`slice_scale`; 5 mm slices with 0.8 mm pixels: a = 6.25,
so a ball of radius 10 px reaches one slice, not ten).

``missed_part="seed"``: a positive click in a separate missed part is seeded and propagated
instead (:mod:`.seed_part`); the ball is the fallback.
"""

from __future__ import annotations

import numpy as np

from ..planes import PlaneGeometry, mask_bbox
from .clicks import edit_radius
from .state import SliceOut

__all__ = ["ball_radius", "ball_radius_3d", "continue_ball", "ball_click", "slice_scale"]


def slice_scale(pred, st, geo: PlaneGeometry) -> float:
    """Pixels per slice step of the ball: 1 (``ball_units="voxel"``, or no volume), else the
    volume's spacing along the slicing axis over its mean in-plane spacing."""
    if pred.options.ball_units != "mm" or st.volume is None:
        return 1.0
    vol = st.volume
    sp = np.asarray(vol.spacing, dtype=float)
    p, q = geo.inplane
    return float(sp[geo.axis] / (0.5 * (sp[p] + sp[q])))


ball_radius = edit_radius  # the edit rule's disk radius: the ball's in-plane radius


def ball_radius_3d(st, geo: PlaneGeometry, k: int, x: int, y: int, positive: bool, r: float,
                   a: float = 1.0) -> float:
    """The largest ball around the click (slice ``k``, plane ``(x, y)``) on the click's side of
    the 3D mask: the distance, in pixels (a slice step = ``a`` px), to the nearest voxel of the
    other kind over the slices ``k ± r / a`` (``r`` the in-plane radius, an upper bound; a slice
    with no mask is all "outside"), at least 1.5. The 3D form of the edit rule's "from the click
    to the mask's edge": a negative click near the end of the object's slices cuts a ball that
    stops there, not one as wide as the slice's mask."""
    w = int(np.ceil(r))
    y0, y1, x0, x1 = max(0, y - w), y + w + 1, max(0, x - w), x + w + 1
    yy, xx = np.ogrid[y0:min(y1, geo.hw[0]), x0:min(x1, geo.hw[1])]
    d2 = (xx - x) ** 2 + (yy - y) ** 2
    best = r * r
    nz = int(np.ceil(r / a))
    for z in range(max(0, k - nz), min(geo.n_slices, k + nz + 1)):
        dz2 = ((z - k) * a) ** 2
        if dz2 >= best:
            continue
        cur = st.slices.get(z)
        m = cur.mask[y0:y1, x0:x1] if cur is not None else None
        other = (m if positive else ~m) if m is not None else (None if positive else np.ones(d2.shape, bool))
        if other is not None and other.any():
            best = min(best, dz2 + float(d2[other].min()))
    return max(float(np.sqrt(best)), 1.5)


def _edited(cur: SliceOut, region: np.ndarray, positive: bool) -> SliceOut:
    """``cur`` with ``region`` painted (positive) or cut; no logits, the same score."""
    new = (cur.mask | region) if positive else (cur.mask & ~region)
    return SliceOut(new, None, mask_bbox(new) if new.any() else None, cur.score)


def continue_ball(st, geo: PlaneGeometry, k: int, x: int, y: int, positive: bool, r: float,
                  guard=None, a: float = 1.0) -> list[int]:
    """Continue a disk edit of radius ``r`` made on slice ``k`` at ``(x, y)`` through the
    neighbouring slices of ``st.slices`` (see the module docstring); returns the slices changed.
    ``guard(z, mask, disk) -> region | None``: the part of ``disk`` to paint (positive) or cut
    on slice ``z`` (None: the ball stops there); None: the raw disk. ``a``: pixels per slice
    step (1: voxel units)."""
    h, w = geo.hw
    yy, xx = np.ogrid[:h, :w]
    changed = []
    for step in (-1, 1):
        for j in range(1, int(r / a) + 1):
            rr2 = r * r - (j * a) ** 2
            z = k + step * j
            cur = st.slices.get(z)
            if rr2 < 1 or cur is None or not cur.mask.any() or bool(cur.mask[y, x]) == positive:
                break  # the error does not reach this slice at the click
            disk = (xx - x) ** 2 + (yy - y) ** 2 <= rr2
            if guard is not None:
                disk = guard(z, cur.mask, disk)
                if disk is None:
                    break  # the clicked tissue is not at the click's pixel here
            st.slices[z] = _edited(cur, disk, positive)
            changed.append(z)
    return changed


def ball_click(pred, st, geo: PlaneGeometry, k: int, x: int, y: int, positive: bool) -> list[int]:
    """A click at plane ``(x, y)`` of slice ``k`` (which has a mask) under ``click_rule="ball"``:
    the guarded disk on slice ``k`` (the click's pixel always honoured), then the ball through
    the neighbours; returns the slices changed (``k`` first; empty when the click agrees).
    ``missed_part`` "seed" / "seed_ball": a positive click in a separate missed part is seeded
    and propagated instead of / as well as the ball (:mod:`.seed_part`)."""
    cur = st.slices[k]
    r = ball_radius(cur.mask, x, y, positive)
    if r is None:
        return []
    part = pred.options.missed_part
    if positive and part in ("seed", "seed_ball"):
        from .seed_part import seed_part_click, union_slices

        before = dict(st.slices)
        got = seed_part_click(pred, st, geo, k, x, y)
        if got is not None:
            if part == "seed":
                return got
            seeded = dict(st.slices)  # seed_ball: the ball from the masks before, then both
            st.slices.clear()
            st.slices.update(before)
            return union_slices(st, seeded, got + _ball(pred, st, geo, k, x, y, positive, r))
    return _ball(pred, st, geo, k, x, y, positive, r)


def _ball(pred, st, geo: PlaneGeometry, k: int, x: int, y: int, positive: bool, r: float) -> list[int]:
    """:func:`ball_click` once the radius ``r`` (in-plane) is known: the guarded ball."""
    from .ball_guard import make_guard

    cur = st.slices[k]
    a = slice_scale(pred, st, geo)
    h, w = geo.hw
    yy, xx = np.ogrid[:h, :w]
    mode = pred.options.ball_radius
    if mode == "volume" or (mode == "volume_negative" and not positive):
        r = ball_radius_3d(st, geo, k, x, y, positive, r, a)
    guard = make_guard(pred, st, geo, k, x, y, positive, r)
    if guard is not None:
        r = guard.radius  # "intensity_cap": capped by the clicked tissue's extent
    disk = (xx - x) ** 2 + (yy - y) ** 2 <= r * r
    if guard is not None:
        disk = guard(k, cur.mask, disk, first=True)
    disk[y, x] = True
    st.slices[k] = _edited(cur, disk, positive)
    return [k] + continue_ball(st, geo, k, x, y, positive, r, guard, a)
