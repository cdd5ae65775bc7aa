"""Metrics against values computed by hand on small synthetic masks."""

import math

import numpy as np
import pytest

from sam_med.evaluation.metrics import all_metrics, crop_to_union, dice, hd95, nsd


def _blank(shape=(12, 12, 12)):
    return np.zeros(shape, dtype=bool)


def test_dice_hand_computed():
    a, b = _blank(), _blank()
    a[2:4, 2:4, 2:4] = True  # 8 voxels
    b[2:4, 2:4, 2:6] = True  # 16 voxels, 8 shared
    assert dice(a, b) == pytest.approx(2 * 8 / 24)
    assert dice(a, a) == 1.0


def test_empty_conventions():
    e, a = _blank(), _blank()
    a[3, 3, 3] = True
    assert (dice(e, e), nsd(e, e, (1, 1, 1)), hd95(e, e, (1, 1, 1))) == (1.0, 1.0, 0.0)
    assert dice(e, a) == 0.0 and nsd(a, e, (1, 1, 1)) == 0.0
    assert math.isnan(hd95(e, a, (1, 1, 1)))


def test_hd95_and_nsd_use_physical_spacing():
    a, b = _blank(), _blank()
    a[2, 2, 2] = True
    b[2, 2, 4] = True  # 2 voxels apart along k, 2.5 mm per voxel -> 5 mm
    sp = (1.0, 1.0, 2.5)
    assert hd95(a, b, sp) == pytest.approx(5.0)
    assert hd95(a, b, (1, 1, 1)) == pytest.approx(2.0)
    assert nsd(a, b, sp, tolerance_mm=2.0) == 0.0
    assert nsd(a, b, sp, tolerance_mm=5.0) == 1.0


def test_parallel_planes():
    # two 5x5 plates 3 slices apart at 2 mm: every surface voxel is 6 mm from the other plate
    a, b = _blank(), _blank()
    a[3:8, 3:8, 2] = True
    b[3:8, 3:8, 5] = True
    sp = (0.8, 0.8, 2.0)
    assert hd95(a, b, sp) == pytest.approx(6.0)
    assert nsd(a, b, sp, 5.9) == 0.0
    assert nsd(a, b, sp, 6.0) == 1.0
    assert dice(a, b) == 0.0


def test_nsd_partial_overlap_hand_computed():
    # ref: plate of 4 voxels in a row; pred: same row shifted by 4 voxels along i with 1 shared.
    # Every voxel of a 1-voxel-thick plate is surface. ref i=2..5, pred i=5..8 (j=k=5), spacing 1.
    a, b = _blank((14, 12, 12)), _blank((14, 12, 12))
    b[2:6, 5, 5] = True
    a[5:9, 5, 5] = True
    # pred surface voxel i -> distance to ref: i=5:0, 6:1, 7:2, 8:3 ; ref i=2:3, 3:2, 4:1, 5:0
    # within 1.5 mm: pred {5,6}, ref {4,5} -> NSD = 4 / 8
    assert nsd(a, b, (1, 1, 1), 1.5) == pytest.approx(0.5)
    # HD95 of the pooled distances {0,1,2,3,3,2,1,0}: monai takes the 95th percentile of each
    # direction and then the max: percentile([0,1,2,3], 95) = 2.85
    assert hd95(a, b, (1, 1, 1)) == pytest.approx(2.85)


def test_cropping_is_exact_against_monai_on_the_full_grid():
    import torch
    from monai.metrics import compute_hausdorff_distance, compute_surface_dice

    rng = np.random.default_rng(3)
    a = np.zeros((40, 30, 12), bool)
    b = np.zeros_like(a)
    a[10:25, 8:20, 3:9] = True
    b[12:28, 6:18, 4:10] = True
    a &= rng.random(a.shape) > 0.1
    sp = (0.7, 0.9, 3.0)
    t = lambda m: torch.from_numpy(m.astype(np.float64))[None, None]
    ref_nsd = float(compute_surface_dice(t(a), t(b), [2.0], include_background=True, spacing=list(sp))[0, 0])
    ref_hd = float(compute_hausdorff_distance(t(a), t(b), include_background=True, percentile=95,
                                              spacing=list(sp))[0, 0])
    assert nsd(a, b, sp, 2.0) == pytest.approx(ref_nsd, abs=1e-9)
    assert hd95(a, b, sp) == pytest.approx(ref_hd, abs=1e-9)
    ca, cb = crop_to_union(a, b)
    assert ca.sum() == a.sum() and cb.sum() == b.sum() and ca.shape < a.shape


def test_all_metrics_keys():
    a = _blank()
    a[2:5, 2:5, 2:5] = True
    m = all_metrics(a, a, (1, 1, 1))
    assert m == {"dice": 1.0, "nsd": 1.0, "hd95": 0.0, "pred_voxels": 27, "ref_voxels": 27}
