"""Small helpers on boolean masks, shared by the engine, evaluation and training.

Masks are numpy boolean (or 0/1) arrays of any dimension: 2D slices ``(H, W)`` or
volumes ``(X, Y, Z)``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from .transforms import longest_side_size, resize_area

__all__ = ["dice", "largest_component", "mask_logits"]


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

def mask_logits(mask: np.ndarray, pre, emb_hw, value: float = 4.0) -> torch.Tensor:
    """A bool ``(H, W)`` mask of a view's crop as a dense prompt ``(1, 1, 4h, 4w)`` for an
    ``h x w`` embedding: resized as the image (``pre``: the view's preprocessing, longest side
    to its S, padded bottom/right with background), +``value`` inside, -``value`` outside."""
    s = int(pre.image_size)
    h, w = longest_side_size(tuple(int(v) for v in mask.shape), s)
    grid = np.zeros((s, s), dtype=np.float32)
    grid[:h, :w] = resize_area(np.asarray(mask, dtype=np.float64), (h, w), False) > 0.5
    t = torch.from_numpy(grid)[None, None]
    size = (4 * int(emb_hw[0]), 4 * int(emb_hw[1]))
    if tuple(t.shape[-2:]) != size:
        t = F.interpolate(t, size=size, mode="nearest")
    return (t * 2.0 - 1.0) * value
