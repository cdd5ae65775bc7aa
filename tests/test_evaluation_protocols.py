"""Prompt protocols: box, jitter, centre point, corrective clicks (placement and sign)."""

import numpy as np
import pytest

from sam_med.evaluation.baselines import ThresholdPredictor
from sam_med.evaluation.protocols import (center_point, corrective_click, deepest_point, jittered_box,
                                          object_rng, run_protocol, tight_box)
from sam_med.session import Session
from sam_med.volume import Volume


def _vol(arr, spacing=(1.0, 1.0, 1.0)):
    return Volume(np.asarray(arr, dtype=np.float32), np.diag([*spacing, 1.0]))


def test_tight_box_inclusive():
    m = np.zeros((10, 10, 10), bool)
    m[2:5, 3:7, 4:5] = True
    b = tight_box(m)
    assert b.to_json() == [2, 3, 4, 4, 6, 4]
    assert tight_box(np.zeros_like(m)) is None


def test_jitter_is_seeded_bounded_and_clipped():
    m = np.zeros((40, 40, 20), bool)
    m[10:20, 12:25, 5:12] = True
    sp = np.array([0.8, 0.8, 2.5])
    a = jittered_box(m, sp, 5.0, object_rng(7, "case", 1))
    b = jittered_box(m, sp, 5.0, object_rng(7, "case", 1))
    c = jittered_box(m, sp, 5.0, object_rng(8, "case", 1))
    assert a == b and a != c
    assert jittered_box(m, sp, 0.0, object_rng(7, "case", 1)) == tight_box(m)
    t = np.asarray(tight_box(m).to_json())
    lim = np.rint(5.0 / np.concatenate([sp, sp]))
    assert np.all(np.abs(np.asarray(a.to_json()) - t) <= lim)
    # a box at the border is clipped to the volume
    m2 = np.zeros((10, 10, 10), bool)
    m2[0:3, 7:10, 0:10] = True
    for s in range(20):
        bx = jittered_box(m2, (1, 1, 1), 3.0, object_rng(s, "x", 1))
        lo, hi = np.asarray(bx.lo), np.asarray(bx.hi)
        assert np.all(lo >= 0) and np.all(hi <= 9) and np.all(lo <= hi)


def test_rng_depends_only_on_seed_case_label():
    x = object_rng(0, "a", 2).uniform(size=3)
    object_rng(0, "b", 2).uniform(size=3)  # other draws do not matter
    assert np.array_equal(x, object_rng(0, "a", 2).uniform(size=3))
    assert not np.array_equal(x, object_rng(0, "a", 3).uniform(size=3))


def test_deepest_point_centre_and_spacing():
    m = np.zeros((12, 12, 12), bool)
    m[1:8, 2:9, 3:10] = True  # 7^3 cube: the unique deepest voxel is its centre
    assert deepest_point(m) == (4, 5, 6)
    m[:] = False
    m[1:6, 2:9, 3:12] = True  # 5 x 7 x 9: a plateau of depth 3; ties -> first in C order
    assert deepest_point(m) == (3, 4, 5)
    # the volume border counts as boundary: a mask touching it is not "deep" there
    full = np.ones((5, 5, 5), bool)
    assert deepest_point(full) == (2, 2, 2)
    # physical spacing: an L-shape whose deepest voxel depends on mm, not on voxels
    l = np.zeros((20, 20, 3), bool)
    l[2:9, 2:17, 1] = True  # wide in i/j, 1 slice thick
    assert deepest_point(l, (1, 1, 10))[2] == 1


def test_center_point_uses_largest_component():
    m = np.zeros((30, 30, 30), bool)
    m[2:5, 2:5, 2:5] = True  # 27 voxels
    m[10:19, 10:19, 12:21] = True  # 9^3: the largest, centre (14, 14, 16)
    assert center_point(m) == (14, 14, 16)


def test_corrective_click_sign_and_placement():
    ref = np.zeros((30, 30, 30), bool)
    ref[2:12, 2:12, 2:12] = True  # A: 1000 voxels
    ref[20:23, 20:23, 20:23] = True  # B: 27 voxels
    pred = np.zeros_like(ref)
    pred[20:23, 20:23, 20:23] = True  # B found
    pred[14:19, 24:29, 2:7] = True  # C: 125 false voxels
    c = corrective_click(pred, ref)
    assert c.positive is True and c.ijk == (6, 6, 6) and c.component_voxels == 1000
    pred[2:12, 2:12, 2:12] = True  # A found: the largest error is now C, a false region
    c = corrective_click(pred, ref)
    assert c.positive is False and c.ijk == (16, 26, 4) and c.component_voxels == 125
    assert corrective_click(ref, ref) is None


def _hole_case():
    """A 10^3 cube whose central 3^3 voxels are dark: the threshold baseline misses them."""
    ref = np.zeros((16, 16, 16), bool)
    ref[3:13, 3:13, 3:13] = True
    img = ref.astype(np.float32)
    img[7:10, 7:10, 7:10] = 0.0
    return img, ref


def test_box_plus_clicks_hand_computed():
    img, ref = _hole_case()
    s = Session(_vol(img), ThresholdPredictor(threshold=0.5, radius=1.0))
    s.add_object("cube", id=1)
    steps = list(run_protocol(s, 1, ref, "box+clicks", 2, spacing=(1, 1, 1)))
    assert [st.step for st in steps] == [0, 1, 2]
    assert steps[0].box == (3, 3, 3, 12, 12, 12)
    assert steps[0].mask.sum() == 973
    # click 1: the hole (27 voxels) is the only error; its centre (8, 8, 8); positive; the
    # radius-1 ball adds 7 voxels
    assert steps[1].click == (8, 8, 8) and steps[1].prompt == "click+"
    assert steps[1].mask.sum() == 980
    # click 2: the 20 remaining voxels form one component, all at depth 1 -> first in C
    # order, the corner (7, 7, 7); its ball adds itself + 3 hole neighbours
    assert steps[2].click == (7, 7, 7) and steps[2].mask.sum() == 984
    # Session recorded the prompts
    assert len(s.get(1).prompts.points) == 2 and s.get(1).prompts.box is not None


def test_negative_click_and_carry_when_perfect():
    ref = np.zeros((16, 16, 16), bool)
    ref[2:8, 2:8, 2:8] = True
    img = ref.astype(np.float32)
    img[9:12, 2:8, 2:8] = 1.0  # a bright false blob inside the box but outside ref
    ref_box = ref.copy()
    ref_box[11, 7, 7] = True  # stretches the box over the blob
    s = Session(_vol(img), ThresholdPredictor(threshold=0.5, radius=1.8))
    s.add_object(id=1)
    steps = list(run_protocol(s, 1, ref_box, "box+clicks", 1, spacing=(1, 1, 1)))
    assert steps[1].prompt == "click-"
    assert steps[1].mask.sum() < steps[0].mask.sum()
    # a perfect result carries forward without prompting
    s2 = Session(_vol(ref.astype(np.float32)), ThresholdPredictor())
    s2.add_object(id=1)
    steps = list(run_protocol(s2, 1, ref, "box+clicks", 2))
    assert [st.carried for st in steps] == [False, True, True]
    assert all(st.mask.sum() == ref.sum() for st in steps)


def test_points_protocol_starts_empty_then_centre():
    img, ref = _hole_case()
    s = Session(_vol(img), ThresholdPredictor(radius=2.0))
    s.add_object(id=1)
    steps = list(run_protocol(s, 1, ref, "points", 2))
    assert steps[0].mask.sum() == 0 and steps[0].prompt == "none"
    assert steps[1].click == center_point(ref) and steps[1].prompt == "click+"
    assert len(steps) == 3


def test_point_protocol_and_unknown():
    img, ref = _hole_case()
    s = Session(_vol(img), ThresholdPredictor(radius=1.0))
    s.add_object(id=1)
    (st,) = run_protocol(s, 1, ref, "point")
    assert st.click == center_point(ref) and st.mask.sum() == 7
    with pytest.raises(ValueError):
        list(run_protocol(s, 1, ref, "scribble"))
