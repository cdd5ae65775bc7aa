"""The CVPR 2025 click rule and metrics on synthetic volumes (fast, no model)."""

import os
import sys

import numpy as np
import pytest
from scipy import ndimage

from sam_med.evaluation.cvpr25 import clicks as C
from sam_med.evaluation.cvpr25.metrics import auc, step_metrics, surface_dice

OFFICIAL = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "cvpr25", "official")


def blobs(shape, n, rng):
    a = np.zeros(shape, bool)
    zz, yy, xx = np.ogrid[tuple(slice(0, s) for s in shape)]
    for _ in range(n):
        c, r = rng.integers(0, shape), rng.uniform(1, 5)
        a |= (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 < r * r
    return a


def test_cc3d_and_scipy_label_alike():
    pytest.importorskip("cc3d")
    rng = np.random.default_rng(1)
    for _ in range(10):
        m = rng.random((12, 14, 16)) > 0.7  # many diagonal-only contacts: 26-connectivity matters
        a, na = C.label_components(m, "cc3d")
        b, nb = C.label_components(m, "scipy")
        assert na == nb and np.array_equal(a, b)


def test_click_at_centre_of_largest_error_fg_and_bg():
    gt = np.zeros((20, 20, 20), bool)
    gt[2:15, 2:15, 2:15] = True
    pred = gt.copy()
    pred[4:13, 4:13, 4:13] = False  # a 9^3 hole: under-segmentation, centre (8, 8, 8)
    pred[17:19, 17:19, 17:19] = True  # a small leak elsewhere
    click = C.next_click(pred, gt)
    assert click == C.Click((8, 8, 8), "fg")
    pred2 = gt.copy()
    pred2[15:20, 0:5, 0:5] = True  # only a leak: background click inside it
    click = C.next_click(pred2, gt)
    assert click.kind == "bg" and pred2[click.zyx] and not gt[click.zyx]
    assert C.next_click(gt, gt) is None


def test_tie_broken_by_seed_42_like_the_global_generator():
    edt = np.zeros((5, 5, 5))
    edt[1, 1, 1] = edt[3, 2, 4] = edt[0, 4, 2] = 2.0
    np.random.seed(42)
    top = np.argwhere(edt == edt.max())
    expect = tuple(int(c) for c in top[np.random.choice(len(top))])
    assert C.pick_maximum(edt) == expect


def test_edt_is_voxel_units_on_padded_box_and_downsampled_path(monkeypatch):
    comp = np.zeros((30, 30, 30), bool)
    comp[5:20, 8:12, 10:25] = True
    full = ndimage.distance_transform_edt(comp)
    assert np.allclose(C.component_edt(comp)[comp], full[comp])  # padding >= 1 voxel: same as the full EDT
    monkeypatch.setattr(C, "MAX_EDT_VOXELS", 10)
    down = C.component_edt(comp)  # on the 2x max-pooled box, in pooled voxels, repeated back
    block_reduce = pytest.importorskip("skimage.measure").block_reduce
    box = np.zeros((21, 6, 21), np.uint8)  # bbox (15, 4, 15) padded by (3, 1, 3) on each side
    box[3:18, 1:5, 3:18] = 1
    ref = ndimage.distance_transform_edt(block_reduce(box, (2, 2, 2), np.max))
    ref = ref.repeat(2, 0).repeat(2, 1).repeat(2, 2)[3:18, 1:5, 3:18]
    assert np.array_equal(down[5:20, 8:12, 10:25], ref) and not down[~comp].any()


def test_single_voxel_error_uses_the_component():
    gt = np.zeros((6, 6, 6), bool)
    pred = gt.copy()
    pred[0, 0, 0] = True
    assert C.next_click(pred, gt) == C.Click((0, 0, 0), "bg")


def test_metrics_rules():
    gts = np.zeros((10, 12, 14), np.uint8)
    gts[2:6, 2:8, 2:8] = 1
    gts[6:9, 5:10, 5:12] = 2
    m = step_metrics(gts, gts, (2.0, 1.0, 1.0))
    assert m["dsc"] == 1.0 and abs(m["nsd"] - 1.0) < 1e-9
    low = np.zeros_like(gts)
    low[2:3, 2:3, 2:3] = 1
    m = step_metrics(gts, low, (2.0, 1.0, 1.0))
    assert m["dsc"] < 0.2 and m["nsd"] == 0.0 and m["per_class"][1]["nsd"] is None
    assert auc([9, 1, 1, 1, 1, 1]) == 4.0 and auc([0, 0.5, 0.5, 0.5, 0.5, 1.0]) == pytest.approx(2.25)


def test_nsd_matches_official_surface_dice():
    if not os.path.isdir(OFFICIAL):
        pytest.skip("official evaluator not found")
    np.Inf, np.NaN = np.inf, np.nan  # aliases removed in NumPy 2 that SurfaceDice.py names
    sys.path.insert(0, OFFICIAL)
    try:
        import SurfaceDice as SD
    finally:
        sys.path.remove(OFFICIAL)
    rng = np.random.default_rng(0)
    for _ in range(12):
        shape = tuple(int(s) for s in rng.integers(8, 24, 3))
        g = blobs(shape, 3, rng)
        p = ndimage.binary_dilation(g, iterations=int(rng.integers(0, 2))) ^ blobs(shape, 2, rng)
        if not g.any():
            continue
        sp = tuple(float(s) for s in rng.uniform(0.5, 3.0, 3))
        ref = SD.compute_surface_dice_at_tolerance(SD.compute_surface_distances(g, p, sp), 2.0)
        assert abs(surface_dice(g, p, sp) - ref) < 1e-4
    g = np.zeros((8, 8, 8), bool)
    g[:3, :4, :] = True  # touching the border, empty prediction
    assert surface_dice(g, np.zeros_like(g), (1, 2, 3)) == 0.0
