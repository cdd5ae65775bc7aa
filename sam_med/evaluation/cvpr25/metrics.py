"""The CVPR 2025 challenge's metrics (our implementation; parity-tested against the official
evaluator). Arrays are (D, H, W); ``spacing`` is in the same array order (z, y, x) mm.

- DSC per class present in the ground truth (label values > 0), averaged over those classes.
- NSD at ``tolerance`` mm (2 by default) per class with surface elements weighted by area
  (monai's ``compute_surface_dice(use_subvoxels=True)``, which equals the evaluator's
  ``SurfaceDice.py`` to < 1e-6, tested), averaged; computed only when the case's mean DSC
  exceeds 0.2, else 0.
- DSC_AUC / NSD_AUC: trapezoid over the last 5 steps (the click steps), x = 0..4, max 4.
"""

from __future__ import annotations

import warnings

import numpy as np

NSD_TOLERANCE_MM = 2.0
NSD_MIN_DSC = 0.2


def gt_classes(gts: np.ndarray) -> list[int]:
    return [int(v) for v in np.unique(gts) if v != 0]


def dice(gt: np.ndarray, pred: np.ndarray) -> float:
    s = int(gt.sum()) + int(pred.sum())
    return float("nan") if s == 0 else 2.0 * int(np.logical_and(gt, pred).sum()) / s


def surface_dice(gt: np.ndarray, pred: np.ndarray, spacing, tolerance: float = NSD_TOLERANCE_MM) -> float:
    """Area-weighted surface Dice at ``tolerance`` mm of two bool (D, H, W) masks; cropped to
    their union's bounding box (+ 1 voxel) first, which leaves the value unchanged."""
    import torch
    from monai.metrics import compute_surface_dice

    union = gt | pred
    if not union.any():
        return float("nan")
    idx = np.argwhere(union)
    lo, hi = np.maximum(idx.min(0) - 1, 0), idx.max(0) + 2
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    g = torch.from_numpy(np.ascontiguousarray(gt[sl], dtype=np.float32))[None, None]
    p = torch.from_numpy(np.ascontiguousarray(pred[sl], dtype=np.float32))[None, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v = compute_surface_dice(p, g, [float(tolerance)], include_background=True,
                                 spacing=[float(s) for s in spacing], use_subvoxels=True)
    return float(v.item())


def step_metrics(gts: np.ndarray, segs: np.ndarray, spacing_zyx, tolerance: float = NSD_TOLERANCE_MM) -> dict:
    """{"dsc", "nsd", "per_class": {c: {"dsc", "nsd"}}} for one step's label map."""
    per = {}
    for c in gt_classes(gts):
        g, p = gts == c, segs == c
        per[c] = {"dsc": dice(g, p), "g": g, "p": p}
    dsc = float(np.mean([v["dsc"] for v in per.values()])) if per else float("nan")
    compute_nsd = dsc > NSD_MIN_DSC
    for c, v in per.items():
        v["nsd"] = surface_dice(v.pop("g"), v.pop("p"), spacing_zyx, tolerance) if compute_nsd else None
    nsd = float(np.mean([v["nsd"] for v in per.values()])) if compute_nsd else 0.0
    return {"dsc": dsc, "nsd": nsd, "per_class": per}


def auc(values) -> float:
    """Trapezoid area over the last 5 values at x = 0, 1, ..., 4 (the click steps)."""
    v = np.asarray(list(values)[-5:], dtype=np.float64)
    return float(((v[1:] + v[:-1]) / 2).sum())
