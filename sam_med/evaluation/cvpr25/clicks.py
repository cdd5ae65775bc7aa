"""The CVPR 2025 challenge's click simulation (our implementation of the rule in
../shared/cvpr25/README.md, checked against the official evaluator by tests/test_cvpr25_parity.py).

All arrays here are in the challenge's array order (D, H, W) = (z, y, x). For one class:
the error is ``pred != gt``; its largest 26-connected component is found; a Euclidean
distance transform in voxel units (spacing ignored) is computed on that component's bounding
box padded by max(25 %, 1 voxel) per axis (2x max-downsampled, then 2x repeated, when the
padded box exceeds 60 M voxels), restricted to the component (the component itself when
that is all zero); numpy's legacy generator seeded with 42 picks uniformly among the voxels
of maximal value; the click is foreground where the ground truth is the class, else background.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

SEED = 42
MAX_EDT_VOXELS = 60_000_000


def label_components(mask: np.ndarray, backend: str = "auto") -> tuple[np.ndarray, int]:
    """26-connected components of a 3D bool mask: (labels, count); labels numbered in raster
    order of each component's first voxel. ``backend``: "cc3d", "scipy" or "auto" (cc3d when
    installed; both give the same labelling, see tests/test_cvpr25_clicks.py)."""
    mask = np.asarray(mask, dtype=bool)
    if backend in ("auto", "cc3d"):
        try:
            import cc3d
        except ImportError:
            if backend == "cc3d":
                raise
        else:
            labels, n = cc3d.connected_components(mask.astype(np.uint8), connectivity=26, return_N=True)
            return labels, int(n)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    return labels, int(n)


def largest_error_component(pred: np.ndarray, gt: np.ndarray, backend: str = "auto") -> np.ndarray | None:
    """The largest 26-connected component of ``pred != gt`` (bool (D, H, W)); ties go to the
    lowest label. None when the prediction is perfect."""
    err = np.asarray(pred, bool) != np.asarray(gt, bool)
    if not err.any():
        return None
    labels, _ = label_components(err, backend)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def _max_pool2(a: np.ndarray) -> np.ndarray:
    """2x2x2 max pooling; odd sizes are padded with zeros at the end."""
    pad = [(0, s % 2) for s in a.shape]
    a = np.pad(a, pad)
    d, h, w = (s // 2 for s in a.shape)
    return a.reshape(d, 2, h, 2, w, 2).max(axis=(1, 3, 5))


def component_edt(component: np.ndarray) -> np.ndarray:
    """Voxel-unit EDT of ``component`` computed on its padded bounding box, full-size float64
    array (zero outside the box). See the module docstring for the padding / downsampling."""
    idx = np.argwhere(component)
    lo, hi = idx.min(0), idx.max(0) + 1
    size = hi - lo
    pad = np.maximum((size * 0.25).astype(int), 1)
    box = np.zeros(size + 2 * pad, dtype=np.uint8)
    inner = tuple(slice(p, p + s) for p, s in zip(pad, size))
    box[inner] = component[tuple(slice(a, b) for a, b in zip(lo, hi))]
    if box.size > MAX_EDT_VOXELS:
        dist = ndimage.distance_transform_edt(_max_pool2(box))
        dist = dist.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    else:
        dist = ndimage.distance_transform_edt(box)
    out = np.zeros(component.shape, dtype=dist.dtype)
    out[tuple(slice(a, b) for a, b in zip(lo, hi))] = dist[inner]
    return out


def pick_maximum(values: np.ndarray, seed: int = SEED) -> tuple[int, int, int]:
    """A voxel of maximal value, chosen uniformly with ``RandomState(seed)`` (the same draw as
    seeding numpy's global generator and calling ``np.random.choice``)."""
    top = np.argwhere(values == values.max())
    k = np.random.RandomState(seed).choice(len(top))
    return tuple(int(c) for c in top[k])


@dataclass(frozen=True)
class Click:
    """A simulated click at (z, y, x); ``kind`` "fg" (under-segmentation) or "bg"."""

    zyx: tuple[int, int, int]
    kind: str


def next_click(pred: np.ndarray, gt: np.ndarray, backend: str = "auto") -> Click | None:
    """The challenge's click for one class (bool (D, H, W) masks), or None when perfect."""
    comp = largest_error_component(pred, gt, backend)
    if comp is None:
        return None
    dist = component_edt(comp) * comp
    if not dist.any():
        dist = comp.astype(np.float64)
    zyx = pick_maximum(dist)
    return Click(zyx, "fg" if bool(np.asarray(gt)[zyx]) else "bg")
