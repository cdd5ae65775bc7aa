"""``click_rule="ball"``: the edit rule's disk continued through the neighbouring slices as a
ball, stopping where the click's pixel is already right (tiny random encoder + oracle decoder
on a synthetic blob; no weights, no shared data)."""

from __future__ import annotations

import numpy as np
import pytest

from _helpers import blob_volume, oracle_predictor
from sam_med.predictors.slicewise.ball import ball_radius, continue_ball
from sam_med.predictors.slicewise.state import SliceOut
from sam_med.prompts import KeySliceBox, ObjectPrompts, Point

SHAPE, CENTER, RADII = (48, 40, 20), (24, 20, 10), (9, 7, 4)  # the object spans slices 6..14
KEY = KeySliceBox(axis=2, slice=10, range=(3, 17), rect=(15.0, 13.0, 33.0, 27.0))


class _Geo:
    hw = (30, 30)


class _State:
    def __init__(self, masks):
        self.slices = {z: SliceOut(m, None, None, 0.9) for z, m in masks.items()}


def _square(lo, hi):
    m = np.zeros(_Geo.hw, bool)
    m[lo:hi, lo:hi] = True
    return m


def test_negative_ball_cuts_the_neighbours_and_stops_where_the_click_is_right():
    masks = {z: _square(5, 25) for z in range(0, 9)}
    masks[7] = _square(5, 12)  # the click's pixel (15, 15) is outside the mask here: the ball stops
    st = _State(masks)
    r = ball_radius(masks[4], 15, 15, positive=False)
    assert r == pytest.approx(10.0)
    changed = continue_ball(st, _Geo(), 4, 15, 15, False, 4.5)
    assert changed == [3, 2, 1, 0, 5, 6]  # downwards to slice 0, upwards until slice 7
    for z, j in ((3, 1), (2, 2), (1, 3), (0, 4), (5, 1), (6, 2)):
        cut = masks[z] & ~st.slices[z].mask
        rr = (4.5 ** 2 - j ** 2) ** 0.5
        yy, xx = np.ogrid[:30, :30]
        assert np.array_equal(cut, masks[z] & ((xx - 15) ** 2 + (yy - 15) ** 2 <= rr * rr))
    assert np.array_equal(st.slices[7].mask, masks[7]) and np.array_equal(st.slices[8].mask, masks[8])


def test_positive_ball_adds_a_ball_and_agreeing_clicks_change_nothing():
    masks = {z: _square(5, 12) for z in range(0, 5)}
    st = _State(masks)
    assert ball_radius(masks[2], 8, 8, positive=True) is None  # already inside
    r = ball_radius(masks[2], 20, 8, positive=True)
    assert r == pytest.approx(9.0)
    continue_ball(st, _Geo(), 2, 20, 8, True, r)
    for z in (0, 1, 3, 4):
        assert st.slices[z].mask[8, 20] and (st.slices[z].mask | masks[z]).sum() > masks[z].sum()


def test_ball_rule_in_the_predictor_edits_more_than_edit_and_is_deterministic(tiny):
    from sam_med.predictors.embedding_cache import EmbeddingCache

    vol, ref = blob_volume(SHAPE, CENTER, RADII)
    wrong = ref.copy()
    wrong[:, 15:, :] = False  # the oracle's "object" misses the blob's upper half on every slice
    cache = EmbeddingCache()
    out = {}
    for rule in ("edit", "ball", "ball"):
        pred = oracle_predictor(wrong, tiny, cache, click_rule=rule)
        first = pred.predict(vol, ObjectPrompts(key_box=KEY))
        click = Point((24.0, 19.0, 10.0), True)  # in the missed part, next to the mask's edge
        r = pred.predict(vol, ObjectPrompts(key_box=KEY, points=[click]), previous=first)
        changed = {z for z in range(SHAPE[2]) if not np.array_equal(r.mask[:, :, z], first.mask[:, :, z])}
        out.setdefault(rule, []).append((changed, r.mask))
    assert out["edit"][0][0] == {10}
    ball_changed = out["ball"][0][0]
    assert {9, 10, 11} <= ball_changed and ball_changed <= set(range(6, 15))
    assert np.array_equal(out["ball"][0][1], out["ball"][1][1])


# ---------------------------------------------------------------- the guard (ball_guard.py)
N_Z, SIDE = 9, 40


class _Pred:
    """What the guard needs of the predictor: the model-range slice image."""

    def __init__(self, img_xyz):
        self.img = img_xyz.astype(np.float32)

    def slice_image(self, geo, k, crop=None):
        return np.ascontiguousarray(geo.slice_of(self.img, k))


def _scene(seed=0):
    """(image [x, y, z] 0..255, geometry): a bright object (x 4..19, y 6..33) next to a dark
    neighbour (x >= 20), on slices 1..7 (slices 0 and 8: dark everywhere), noise sd 5."""
    from sam_med.predictors.planes import PlaneGeometry

    rng = np.random.default_rng(seed)
    img = np.full((SIDE, SIDE, N_Z), 60.0)
    img[4:20, 6:34, 1:8] = 200.0
    img += rng.normal(0, 5, img.shape)
    return np.clip(img, 0, 255), PlaneGeometry(2, (SIDE, SIDE, N_Z))


def _plane_masks(x0, x1, y0=6, y1=34, zs=range(N_Z)):
    """{z: (H, W) mask with columns x0..x1-1, rows y0..y1-1} (H = y, W = x)."""
    out = {}
    for z in zs:
        m = np.zeros((SIDE, SIDE), bool)
        m[y0:y1, x0:x1] = True
        out[z] = m
    return out


def test_guarded_positive_ball_does_not_paint_the_dark_neighbour():
    from sam_med.predictors.slicewise.ball import ball_click

    img, geo = _scene()
    masks = _plane_masks(4, 10)  # the mask misses the object's columns 10..19 on every slice
    x, y, k = 17, 20, 4  # a positive click in the missed part: r = 7, the raw disk reaches x = 24
    st = _State(masks)
    changed = ball_click(_Pred(img), st, geo, k, x, y, True)
    painted = {z: st.slices[z].mask & ~masks[z] for z in changed}
    dark = np.zeros((SIDE, SIDE), bool)
    dark[:, 20:] = True
    for z, p in painted.items():
        assert p[y, x] and not (p & dark).any()  # the guard keeps to the bright tissue
        assert 1 <= z <= 7  # ... and stops where the object ends (slices 0 and 8 are dark)
    assert set(painted) >= {3, 4, 5}
    # the clicked slice gains the missed part between the click and the mask, nothing else
    assert painted[k][y, 10:20].all()


def test_guarded_negative_ball_removes_the_leak_not_the_object():
    from sam_med.predictors.slicewise.ball import ball_click

    img, geo = _scene(seed=1)
    masks = _plane_masks(4, 27)  # the object (x 4..19) + a leak into the dark tissue (x 20..26)
    x, y, k = 22, 20, 4  # a negative click in the leak: r = 5, the raw disk reaches x = 17
    st = _State(masks)
    changed = ball_click(_Pred(img), st, geo, k, x, y, False)
    cut = {z: masks[z] & ~st.slices[z].mask for z in changed}
    obj = np.zeros((SIDE, SIDE), bool)
    obj[6:34, 4:20] = True  # the object, on slices 1..7 (slices 0 and 8: the mask is all leak)
    assert cut and all(not (c & obj).any() for z, c in cut.items() if 1 <= z <= 7)
    assert cut[k][y, 20:27].all()  # the leak under the click's row is gone


def test_click_tolerance_follows_the_noise_not_the_scale():
    from sam_med.predictors.slicewise.ball_guard import click_tolerance

    rng = np.random.default_rng(3)
    flat = np.full((40, 40), 100.0)
    m0, t0 = click_tolerance(flat, 20, 20, 5.0, 3.0)
    assert m0 == 100.0 and t0 == 1.0  # no noise: the quantisation floor
    noisy = flat + rng.normal(0, 6, flat.shape)
    m1, t1 = click_tolerance(noisy, 20, 20, 5.0, 3.0)
    assert abs(m1 - 100) < 6 and 10 < t1 < 30  # ~3 x sd 6
    edge = noisy.copy()
    edge[:, 26:] += 120  # a strong edge inside the window does not inflate the noise estimate
    assert click_tolerance(edge, 20, 20, 8.0, 3.0)[1] < 1.5 * t1


def test_guarded_ball_rule_in_the_predictor_stays_in_the_blob(tiny):
    from sam_med.predictors.embedding_cache import EmbeddingCache

    vol, ref = blob_volume(SHAPE, CENTER, RADII)
    wrong = ref.copy()
    wrong[:, 15:, :] = False  # the mask misses the blob's rows y >= 15 (the blob spans 13..27)
    cache = EmbeddingCache()
    click = Point((24.0, 25.0, 10.0), True)  # far from the mask's edge: r = 11 reaches y = 36
    pred = oracle_predictor(wrong, tiny, cache)  # the default: the guarded ball
    first = pred.predict(vol, ObjectPrompts(key_box=KEY))
    r = pred.predict(vol, ObjectPrompts(key_box=KEY, points=[click]), previous=first)
    assert r.mask[24, 25, 10]
    extra = r.mask & ~first.mask
    # the raw ball of radius 11 would paint y up to 36 (the blob ends at 27) on slices 0..20
    print("extra", int(extra.sum()), "outside", int((extra & ~ref).sum()), "in", int((extra & ref).sum()))
    assert (extra & ~ref).sum() < 0.05 * extra.sum() and (extra & ref).sum() > 200


def test_volume_radius_stops_at_the_end_of_the_mask_slices():
    from sam_med.predictors.planes import PlaneGeometry
    from sam_med.predictors.slicewise.ball import ball_radius_3d

    geo = PlaneGeometry(2, (30, 30, 12))
    st = _State({z: _square(2, 28) for z in range(3, 12)})  # the mask starts at slice 3
    r2 = ball_radius(st.slices[5].mask, 15, 15, positive=False)
    assert r2 == pytest.approx(13.0)
    assert ball_radius_3d(st, geo, 5, 15, 15, False, r2) == pytest.approx(3.0)  # slice 2 has no mask
    assert ball_radius_3d(st, geo, 9, 15, 15, False, ball_radius(st.slices[9].mask, 15, 15, False)) == \
        pytest.approx(7.0)  # slice 2 again (slice 12 is past the volume: no bound)
    pos = _State({z: _square(2, 10) for z in range(0, 12)})
    pos.slices[6] = SliceOut(_square(2, 20), None, None, 0.9)  # the neighbour reaches closer
    r2 = ball_radius(pos.slices[5].mask, 24, 5, positive=True)
    assert r2 == pytest.approx(15.0)
    assert ball_radius_3d(pos, geo, 5, 24, 5, True, r2) == pytest.approx(np.sqrt(1 + 5 ** 2))
