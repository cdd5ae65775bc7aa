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
