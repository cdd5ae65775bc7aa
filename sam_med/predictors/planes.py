"""Planes of a volume seen by a 2D model, and small 2D box/mask helpers.

For slicing axis ``a`` the two in-plane axes are ``(p, q)`` = the other two
axes in increasing order. Slice ``k`` is shown to the model as a 2D image of
shape ``(H, W) = (n_q, n_p)``: columns (x) follow axis ``p`` and rows (y)
follow axis ``q``. For the usual ``a = 2`` this is ``array[:, :, k].T``, i.e.
rows = j (y), columns = i (x), the layout of the research npz ``imgs[k]``.

2D boxes are ``(x0, y0, x1, y1)`` in plane pixels with inclusive bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class PlaneGeometry:
    axis: int
    shape3d: tuple[int, int, int]

    @property
    def inplane(self) -> tuple[int, int]:
        return tuple(a for a in range(3) if a != self.axis)  # (p, q)

    @property
    def n_slices(self) -> int:
        return self.shape3d[self.axis]

    @property
    def hw(self) -> tuple[int, int]:
        p, q = self.inplane
        return self.shape3d[q], self.shape3d[p]

    def slice_of(self, array3d: np.ndarray, k: int) -> np.ndarray:
        """The (H, W) image of slice k (a view)."""
        return np.take(array3d, k, axis=self.axis).T

    def set_slice(self, array3d: np.ndarray, k: int, plane: np.ndarray) -> None:
        idx = [slice(None)] * 3
        idx[self.axis] = k
        array3d[tuple(idx)] = plane.T

    def to_plane(self, ijk) -> tuple[float, float, float]:
        """Voxel (i, j, k) → (slice index, x, y)."""
        p, q = self.inplane
        return float(ijk[self.axis]), float(ijk[p]), float(ijk[q])

    def box_to_plane(self, lo, hi) -> tuple[tuple[int, int], np.ndarray]:
        """3D inclusive voxel box → ((s0, s1) slice range, 2D box (x0, y0, x1, y1))."""
        p, q = self.inplane
        lo = np.rint(lo).astype(int)
        hi = np.rint(hi).astype(int)
        return (int(lo[self.axis]), int(hi[self.axis])), np.array([lo[p], lo[q], hi[p], hi[q]])


def mask_bbox(mask2d: np.ndarray) -> np.ndarray | None:
    """Tight inclusive (x0, y0, x1, y1) box of a 2D mask, None when empty."""
    rows = np.flatnonzero(mask2d.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask2d.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1], rows[-1]])


def clip_box(box: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    h, w = hw
    return np.array([np.clip(box[0], 0, w - 1), np.clip(box[1], 0, h - 1),
                     np.clip(box[2], 0, w - 1), np.clip(box[3], 0, h - 1)])


def expand_box(box: np.ndarray, margin: float, hw: tuple[int, int]) -> np.ndarray:
    b = np.asarray(box, dtype=float) + np.array([-margin, -margin, margin, margin])
    return clip_box(np.rint(b).astype(int), hw)


def intersect_box(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    out = np.array([max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])])
    if out[2] < out[0] or out[3] < out[1]:
        return None
    return out


def union_box(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])])


def box_mask(box: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    m = np.zeros(hw, dtype=bool)
    m[box[1] : box[3] + 1, box[0] : box[2] + 1] = True
    return m


def component_at(mask2d: np.ndarray, x: int, y: int) -> np.ndarray | None:
    """The 8-connected component of ``mask2d`` containing pixel (x, y), or None."""
    if not mask2d[y, x]:
        return None
    lab, _ = ndimage.label(mask2d, structure=np.ones((3, 3), bool))
    return lab == lab[y, x]


def dice2d(a: np.ndarray, b: np.ndarray) -> float:
    sa, sb = int(a.sum()), int(b.sum())
    if sa + sb == 0:
        return 1.0
    return 2.0 * int(np.logical_and(a, b).sum()) / (sa + sb)
