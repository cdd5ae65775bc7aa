"""Small helpers on boolean masks, shared by the engine, evaluation and training.

Masks are numpy boolean (or 0/1) arrays of any dimension: 2D slices ``(H, W)`` or
volumes ``(X, Y, Z)``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["dice", "largest_component"]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient ``2|A∩B| / (|A| + |B|)`` of two same-shape masks; 1.0 when both are
    empty (nothing to find, nothing found), 0.0 when exactly one is."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    sa, sb = int(a.sum()), int(b.sum())
    if sa + sb == 0:
        return 1.0
    return 2.0 * int(np.logical_and(a, b).sum()) / (sa + sb)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest fully connected component of a mask (8-connected in 2D, 26-connected in
    3D); ties go to the lowest label (first in C order). Empty in, empty out."""
    m = np.asarray(mask, dtype=bool)
    lab, n = ndimage.label(m, structure=ndimage.generate_binary_structure(m.ndim, m.ndim))
    if n <= 1:
        return lab > 0
    sizes = np.bincount(lab.ravel())[1:]
    return lab == (int(np.argmax(sizes)) + 1)
