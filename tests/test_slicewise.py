"""Slice-wise 3D segmentation with the real LiteMedSAM on the real CT-lesion cases.

Embeddings go through the suite's on-disk cache (conftest.embedding_cache), so every
slice is encoded once per machine; the numbers asserted are the issue's targets.
"""

from __future__ import annotations

import numpy as np
import pytest

from sam_med import io
from sam_med.evaluation.metrics import dice, nsd
from sam_med.evaluation.protocols import corrective_click
from sam_med.predictors.embedding_cache import EmbeddingCache
from sam_med.predictors.planes import PlaneGeometry
from sam_med.predictors.slicewise import SliceWisePredictor
from sam_med.prompts import ObjectPrompts, box_from_mask, box_from_world
from sam_med.session import Session

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cases(data_dir):
    files = sorted((data_dir / "ct_lesion").glob("*.npz"))
    assert len(files) == 4
    return [io.read_npz(f) for f in files]


@pytest.fixture(scope="module")
def predictor(lite_medsam, embedding_cache):
    return SliceWisePredictor(loaded=lite_medsam, cache=embedding_cache)


@pytest.fixture(scope="module")
def box_results(cases, predictor):
    out = []
    for c in cases:
        g = c.label.array > 0
        r = predictor.predict(c.image, ObjectPrompts(box=box_from_mask(g)))
        out.append((dice(r.mask, g), nsd(r.mask, g, c.image.spacing), r))
    return out


def test_ct_lesion_box_accuracy(box_results):
    d = [x[0] for x in box_results]
    n = [x[1] for x in box_results]
    print("Dice", np.round(d, 3), "NSD", np.round(n, 3))
    assert np.mean(d) >= 0.80
    assert np.mean(n) >= 0.66


def test_mask_stays_in_box_and_on_prompted_axis(cases, box_results):
    for c, (_, _, r) in zip(cases, box_results):
        g = c.label.array > 0
        lo, hi = box_from_mask(g).int_bounds()
        outside = r.mask.copy()
        outside[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1] = False
        assert not outside.any()
        assert r.info.axis == 2


def test_cache_reuse_and_disk_store(cases, lite_medsam, embedding_cache_dir, predictor):
    c = cases[0]
    g = c.label.array > 0
    before = predictor.cache.encoded
    predictor.predict(c.image, ObjectPrompts(box=box_from_mask(g)))
    assert predictor.cache.encoded == before, "a second object/prompt must not re-encode"
    fresh = EmbeddingCache(cache_dir=embedding_cache_dir)  # "reopening the scan" in a new process
    p2 = SliceWisePredictor(loaded=lite_medsam, cache=fresh)
    p2.predict(c.image, ObjectPrompts(box=box_from_mask(g)))
    assert fresh.encoded == 0 and fresh.disk_hits > 0


def test_world_box_equals_voxel_box(cases, predictor):
    c = cases[1]
    g = c.label.array > 0
    vb = box_from_mask(g)
    lo = c.image.voxel_to_world(vb.lo)
    hi = c.image.voxel_to_world(vb.hi)
    wb = box_from_world([*lo, *hi], c.image)
    assert np.allclose(wb.to_json(), vb.to_json(), atol=1e-6)
    r1 = predictor.predict(c.image, ObjectPrompts(box=vb))
    r2 = predictor.predict(c.image, ObjectPrompts(box=wb))
    np.testing.assert_array_equal(r1.mask, r2.mask)


def test_corrective_clicks_do_not_hurt(cases, predictor):
    """Box + 3 simulated corrective clicks (centre of the largest error component):
    mean Dice per click is non-decreasing, and each click is honoured on its voxel. A full
    re-run of the final prompts (box + clicks at once, as a re-run or a CLI call with
    --point does) is as good as the interactive result."""
    curves, reruns = [], []
    for c in cases:
        g = c.label.array > 0
        s = Session(c.image, predictor)
        o = s.add_object("lesion")
        s.set_box(o.id, box_from_mask(g))
        curve = [dice(s.mask(o.id), g)]
        for _ in range(3):
            click = corrective_click(s.mask(o.id), g, c.image.spacing)
            if click is None:
                break
            s.add_point(o.id, click.ijk, click.positive)
            assert s.get(o.id).result.info.mode == "refine"
            assert s.mask(o.id)[click.ijk] == click.positive
            curve.append(dice(s.mask(o.id), g))
        curves.append(curve + [curve[-1]] * (4 - len(curve)))
        s.run(o.id)
        assert s.get(o.id).result.info.mode == "full"
        reruns.append(dice(s.mask(o.id), g))
    mean = np.mean(curves, axis=0)
    print("Dice per click", np.round(mean, 4), "full re-run", round(float(np.mean(reruns)), 4))
    assert np.all(np.diff(mean) >= -1e-3)
    assert mean[-1] > mean[0]
    assert np.mean(reruns) >= mean[-1] - 0.01


def test_refinement_is_local_and_undoable(cases, predictor):
    """The default click rule (the guarded ball) changes voxels only within the click's ball:
    no farther from the click (voxel units) than the in-plane distance from the click to the
    mask's edge, which bounds both of its radii; the clicked voxel then agrees; undo restores."""
    from scipy import ndimage

    c = cases[2]
    g = c.label.array > 0
    s = Session(c.image, predictor)
    o = s.add_object("lesion")
    s.set_box(o.id, box_from_mask(g))
    before = s.mask(o.id).copy()
    click = corrective_click(before, g, c.image.spacing)
    s.add_point(o.id, click.ijk, click.positive)
    after = s.mask(o.id)
    i, j, k = (int(round(v)) for v in click.ijk)
    assert bool(after[i, j, k]) == click.positive
    plane = before[:, :, k]
    r = float(ndimage.distance_transform_edt(~plane if click.positive else plane)[i, j])
    ii, jj, kk = np.nonzero(before != after)
    assert len(ii) > 0
    dist = np.sqrt((ii - i) ** 2 + (jj - j) ** 2 + (kk - k) ** 2)
    assert dist.max() <= r + 1.5
    s.undo()
    np.testing.assert_array_equal(s.mask(o.id), before)


def test_points_only_prompt(cases, predictor):
    """One positive click and no box: the box is searched on the clicked slice (the model is
    box-trained), the click is honoured and the lesion is found; without a box, propagation
    stops where the mask's intensity leaves the seed's (else it ran 5 slices past the lesion)."""
    from sam_med.evaluation.protocols import center_point

    c = cases[0]
    g = c.label.array > 0
    ctr = center_point(g, c.image.spacing)
    r = predictor.predict(c.image, ObjectPrompts.from_json({"points": [[*ctr, 1]]}, c.image))
    assert r.mask[ctr]
    assert dice(r.mask, g) >= 0.8  # measured 0.89 (no intensity stop: 0.83; SAM's point decode as the seed: 0.03)
    zg = np.flatnonzero(g.any(axis=(0, 1)))
    outside = r.mask.copy()
    outside[..., zg.min():zg.max() + 1] = False
    assert outside.sum() < 0.05 * r.mask.sum()
