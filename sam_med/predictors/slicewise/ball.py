"""``click_rule="ball"``: the edit rule's disk continued through the neighbouring slices as a ball.

A corrective click under the CVPR 2025 protocol (and a user's, mostly) lands in the middle of a
3D error, which extends through the slices around the clicked one. The edit rule fixes a disk on
the clicked slice only: its radius ``r`` reaches from the click to the mask's edge
(:func:`~.clicks.local_edit`). Here the same edit continues on slice ``k ± j`` as the disk of
radius ``sqrt(r² - j²)`` around the same in-plane pixel (a ball of radius ``r`` in voxel units)
and stops, in each direction, at the first slice that has no mask or where the click's pixel
is already right (the error does not reach that slice there). No decoder call.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..planes import PlaneGeometry, mask_bbox
from .state import SliceOut

__all__ = ["ball_radius", "continue_ball"]


def ball_radius(mask: np.ndarray, x: int, y: int, positive: bool) -> float | None:
    """The edit rule's disk radius for a click at plane pixel ``(x, y)`` of ``mask``
    (distance to the nearest pixel of the other kind, at least 1.5); None when the pixel
    already agrees with the click."""
    if bool(mask[y, x]) == positive:
        return None
    dist = ndimage.distance_transform_edt(~mask if positive else mask)
    return max(float(dist[y, x]), 1.5)


def continue_ball(st, geo: PlaneGeometry, k: int, x: int, y: int, positive: bool, r: float) -> list[int]:
    """Continue a disk edit of radius ``r`` made on slice ``k`` at ``(x, y)`` through the
    neighbouring slices of ``st.slices`` (see the module docstring); returns the slices changed."""
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
            new = (cur.mask | disk) if positive else (cur.mask & ~disk)
            st.slices[z] = SliceOut(new, None, mask_bbox(new) if new.any() else None, cur.score)
            changed.append(z)
    return changed
