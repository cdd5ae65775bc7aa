"""Prompt sampling for training 2D slice models (boxes with jitter, points, corrective clicks).

All randomness comes from the ``numpy.random.Generator`` passed in; the trainer makes one
per (seed, epoch, sample index), so a sample gets the same prompts whichever process of a
DDP run draws it, and after a resume.

Coordinates: ``(x, y)`` pixels of the 2D array they were computed on; boxes XYXY inclusive.
Boxes are drawn on the *source* slice (or zoom crop) and mapped to the model with the
model's own rule (``LoadedModel.box_to_model``), exactly as at inference; corrective clicks
are drawn on the model grid (where the prediction lives).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["mask_box", "jitter_box", "sample_point", "corrective_click_2d"]


def mask_box(mask: np.ndarray) -> np.ndarray | None:
    """Inclusive XYXY box of a 2D mask, None if empty."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=float)


def jitter_box(box: np.ndarray, hw: tuple[int, int], rng: np.random.Generator,
               outward_px: float = 4.0, inward_px: float = 1.0) -> np.ndarray:
    """Move each face independently by ``U(-inward_px, +outward_px)`` pixels (positive =
    grows the box), round, clip to the image; a face never crosses its opposite.

    The slice-wise predictor prompts propagated slices with the previous mask's box plus a
    3 px margin, so boxes at inference are mostly a little loose: hence the asymmetry."""
    h, w = hw
    off = rng.uniform(-inward_px, outward_px, size=4)
    b = np.asarray(box, dtype=float) + np.rint(off * np.array([-1, -1, 1, 1]))
    b = np.clip(b, 0, [w - 1, h - 1, w - 1, h - 1])
    if b[2] < b[0]:
        b[0] = b[2] = np.floor((b[0] + b[2]) / 2)
    if b[3] < b[1]:
        b[1] = b[3] = np.floor((b[1] + b[3]) / 2)
    return b


def sample_point(mask: np.ndarray, rng: np.random.Generator, center: bool = False) -> tuple[int, int] | None:
    """A pixel of ``mask`` as ``(x, y)``: uniformly random, or its deepest pixel (``center``)."""
    if not mask.any():
        return None
    if center:
        d = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(d)), d.shape)
        return int(x), int(y)
    ys, xs = np.nonzero(mask)
    i = int(rng.integers(xs.size))
    return int(xs[i]), int(ys[i])


def corrective_click_2d(pred: np.ndarray, ref: np.ndarray, rng: np.random.Generator | None = None,
                        center: bool = True) -> tuple[int, int, bool] | None:
    """Simulated corrective click ``(x, y, positive)`` on ``pred`` vs ``ref`` (2D booleans).

    The click goes into the largest connected component of the error ``pred XOR ref``, at
    its deepest pixel (``center=True``, the evaluation protocol's rule in 2D) or at a random
    pixel of it; it is positive when that pixel belongs to ``ref`` (a miss). None when
    ``pred == ref``."""
    err = np.logical_xor(pred, ref)
    if not err.any():
        return None
    lab, n = ndimage.label(err)
    if n > 1:
        sizes = np.bincount(lab.ravel())[1:]
        err = lab == (int(np.argmax(sizes)) + 1)
    p = sample_point(err, rng if rng is not None else np.random.default_rng(0), center=center)
    x, y = p
    return x, y, bool(ref[y, x])
