"""Segmentation metrics on physical spacing, computed with ``monai.metrics``.

All functions take two boolean masks of the same shape (a prediction and the
reference) and the voxel spacing in mm **in the masks' axis order** (for a
:class:`~sam_med.volume.Volume` that is ``volume.spacing``, (i, j, k)).

Conventions for empty masks (MONAI leaves these undefined or NaN; we fix them
so every object gets a number and means stay comparable):

==================  ======  ======  =========
case                Dice    NSD     HD95 (mm)
==================  ======  ======  =========
both empty          1.0     1.0     0.0
one of them empty   0.0     0.0     nan
==================  ======  ======  =========

Surface metrics are computed on the bounding box of ``pred | ref`` padded by
two voxels: the surfaces and their Euclidean distance transforms are exactly
the same as on the full grid (every surface voxel lies inside the crop), but a
512x512x100 CT with a 2 cm lesion costs milliseconds instead of seconds.
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np

from .. import masks

DEFAULT_NSD_TOLERANCE_MM = 2.0


def _as_tensors(pred: np.ndarray, ref: np.ndarray):
    import torch

    p = torch.from_numpy(np.ascontiguousarray(pred, dtype=np.float64))[None, None]
    r = torch.from_numpy(np.ascontiguousarray(ref, dtype=np.float64))[None, None]
    return p, r


def _check(pred, ref):
    pred = np.asarray(pred).astype(bool, copy=False)
    ref = np.asarray(ref).astype(bool, copy=False)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    return pred, ref


def crop_to_union(pred: np.ndarray, ref: np.ndarray, margin: int = 2):
    """Crop both masks to the bounding box of their union, padded with ``margin`` zero voxels."""
    union = pred | ref
    idx = np.argwhere(union)
    if idx.size == 0:
        return pred, ref
    lo = idx.min(0)
    hi = idx.max(0) + 1
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    pad = [(margin, margin)] * pred.ndim
    return np.pad(pred[sl], pad), np.pad(ref[sl], pad)


def dice(pred, ref) -> float:
    """Dice coefficient 2|P∩R| / (|P| + |R|) (:func:`sam_med.masks.dice`: 1.0 when both are
    empty, 0.0 when one is)."""
    pred, ref = _check(pred, ref)
    return masks.dice(pred, ref)


def nsd(pred, ref, spacing: Sequence[float], tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM) -> float:
    """Normalised surface Dice at ``tolerance_mm`` (``monai.metrics.compute_surface_dice``)."""
    pred, ref = _check(pred, ref)
    np_, nr = bool(pred.any()), bool(ref.any())
    if not np_ and not nr:
        return 1.0
    if not np_ or not nr:
        return 0.0
    from monai.metrics import compute_surface_dice

    p, r = _as_tensors(*crop_to_union(pred, ref))
    with warnings.catch_warnings():  # MONAI 1.5+ warns about its own internal argument
        warnings.simplefilter("ignore", FutureWarning)
        val = compute_surface_dice(
            p, r, class_thresholds=[float(tolerance_mm)], include_background=True,
            spacing=[float(s) for s in spacing],
        )
    return float(val[0, 0])


def hd95(pred, ref, spacing: Sequence[float]) -> float:
    """Symmetric 95th-percentile Hausdorff distance in mm (``compute_hausdorff_distance``)."""
    pred, ref = _check(pred, ref)
    np_, nr = bool(pred.any()), bool(ref.any())
    if not np_ and not nr:
        return 0.0
    if not np_ or not nr:
        return math.nan
    from monai.metrics import compute_hausdorff_distance

    p, r = _as_tensors(*crop_to_union(pred, ref))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        val = compute_hausdorff_distance(
            p, r, include_background=True, percentile=95, spacing=[float(s) for s in spacing],
        )
    return float(val[0, 0])


def all_metrics(pred, ref, spacing: Sequence[float],
                tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM) -> dict[str, float]:
    """``{"dice", "nsd", "hd95", "pred_voxels", "ref_voxels"}`` for one object."""
    pred, ref = _check(pred, ref)
    return {
        "dice": dice(pred, ref),
        "nsd": nsd(pred, ref, spacing, tolerance_mm),
        "hd95": hd95(pred, ref, spacing),
        "pred_voxels": int(pred.sum()),
        "ref_voxels": int(ref.sum()),
    }
