"""Shape-based interpolation of 2D masks between two slices (signed distance).

For masks ``a`` (slice ``z``) and ``b`` (slice ``z + n + 1``), the ``n`` slices between get
``(1 - w) * d_a + w * d_b < 0`` with ``w = i / (n + 1)``, ``i = 1..n``, where ``d`` is the
signed Euclidean distance to the mask's boundary (negative inside, in plane pixels). The
result moves and morphs from ``a`` to ``b``: identical masks give that mask back, a shape
shrinking to nothing thins out (an empty end is treated as a point-free far field).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["signed_distance", "interpolate_masks"]


def signed_distance(mask: np.ndarray) -> np.ndarray:
    """Signed distance ``(H, W)`` float32 of a 2D bool mask: for a pixel inside, minus its
    distance to the nearest outside pixel; outside, its distance to the nearest inside
    pixel (half a pixel shifted, so the boundary sits between the two). An empty mask
    gives a large positive constant, a full one a large negative constant."""
    m = np.asarray(mask, dtype=bool)
    big = float(sum(m.shape))
    if not m.any():
        return np.full(m.shape, big, np.float32)
    if m.all():
        return np.full(m.shape, -big, np.float32)
    out = ndimage.distance_transform_edt(~m) - 0.5
    inside = ndimage.distance_transform_edt(m) - 0.5
    out[m] = -inside[m]
    return out.astype(np.float32)


def interpolate_masks(a: np.ndarray, b: np.ndarray, n: int) -> list[np.ndarray]:
    """The ``n`` masks ``(H, W)`` bool between ``a`` and ``b`` (in order from ``a``). Only
    the union box of the two masks (+ 1 px) is computed; outside it every mask is empty."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"masks of different shapes {a.shape} and {b.shape}")
    if n <= 0:
        return []
    u = a | b
    if not u.any():
        return [np.zeros_like(a) for _ in range(n)]
    rows, cols = np.flatnonzero(u.any(1)), np.flatnonzero(u.any(0))
    y0, y1 = max(rows[0] - 1, 0), min(rows[-1] + 2, a.shape[0])
    x0, x1 = max(cols[0] - 1, 0), min(cols[-1] + 2, a.shape[1])
    da = signed_distance(a[y0:y1, x0:x1])
    db = signed_distance(b[y0:y1, x0:x1])
    out = []
    for i in range(1, n + 1):
        w = i / (n + 1)
        m = np.zeros_like(a)
        m[y0:y1, x0:x1] = (1.0 - w) * da + w * db < 0
        out.append(m)
    return out
