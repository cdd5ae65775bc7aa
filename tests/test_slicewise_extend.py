"""``click_rule="extend"`` on a synthetic blob (tiny random encoder + oracle decoder; no
weights, no shared data): a positive click on a slice the mask never reached brings in that
slice and the unreached slices next to it, up to where the object ends or meets the mask;
slices that had a mask are left exactly as they were."""

from __future__ import annotations

import numpy as np
import pytest

from _helpers import blob_volume, oracle_predictor
from sam_med.prompts import KeySliceBox, ObjectPrompts, Point
from sam_med.predictors.slicewise.state import SliceOut

SHAPE, CENTER, RADII = (48, 40, 20), (24, 20, 10), (9, 7, 4)  # the object spans slices 6..14
KEY = KeySliceBox(axis=2, slice=10, range=(3, 17), rect=(15.0, 13.0, 33.0, 27.0))


@pytest.fixture(scope="module")
def blob():
    return blob_volume(SHAPE, CENTER, RADII)


@pytest.fixture(scope="module")
def cache():
    """One in-memory embedding cache for the module: the blob is encoded once."""
    from sam_med.predictors.embedding_cache import EmbeddingCache

    return EmbeddingCache()


def _first(pred, vol, drop=(), shrink=None):
    """The box's first run, then (as if propagation had stopped early) the slices ``drop``
    emptied and slice ``shrink`` cut to its left half (a wrong mask a click must not touch)."""
    first = pred.predict(vol, ObjectPrompts(key_box=KEY))
    for z in drop:
        first.state.slices.pop(z, None)
    if shrink is not None:
        m = first.state.slices[shrink].mask.copy()
        m[24:, :] = False
        first.state.slices[shrink] = SliceOut(m, None, first.state.slices[shrink].box, 0.9)
    return first


def _click(pred, first, vol, ijk, positive=True):
    return pred.predict(vol, ObjectPrompts(key_box=KEY, points=[Point(ijk, positive)]), previous=first)


def _masked(state):
    return {z: s.mask.copy() for z, s in state.slices.items() if s.mask.any()}


def test_a_click_beyond_the_mask_brings_in_the_unreached_slices_up_to_the_object_end(tiny, blob, cache):
    vol, ref = blob
    pred = oracle_predictor(ref, tiny, cache, click_rule="extend")
    first = _first(pred, vol, drop=range(11, 15), shrink=9)
    before = _masked(first.state)
    assert sorted(before) == [6, 7, 8, 9, 10]
    r = _click(pred, first, vol, (24.0, 20.0, 13.0))
    got = r.mask.any(axis=(0, 1)).nonzero()[0].tolist()
    assert got == list(range(6, 15))  # 13 and its unreached neighbours 11, 12 (to the mask), 14 (to the end)
    for z in range(11, 15):
        assert (r.mask[:, :, z] == ref[:, :, z]).all()
    for z, m in before.items():  # slices that had a mask are unchanged, the wrong one included
        assert (r.state.slices[z].mask == m).all()
    assert r.mask[:, :, 9].sum() == before[9].sum() < ref[:, :, 9].sum()


def test_the_edit_rule_brings_in_only_the_clicked_slice(tiny, blob, cache):
    vol, ref = blob
    pred = oracle_predictor(ref, tiny, cache)  # default: edit
    first = _first(pred, vol, drop=range(11, 15))
    r = _click(pred, first, vol, (24.0, 20.0, 13.0))
    assert r.mask.any(axis=(0, 1)).nonzero()[0].tolist() == [6, 7, 8, 9, 10, 13]


def test_a_click_on_an_object_with_no_mask_runs_it_from_the_click_within_the_range(tiny, blob, cache):
    vol, ref = blob
    pred = oracle_predictor(ref, tiny, cache, click_rule="extend")
    first = _first(pred, vol, drop=range(0, SHAPE[2]))
    assert not _masked(first.state)
    r = _click(pred, first, vol, (24.0, 20.0, 12.0))
    assert (r.mask == ref).all()


def test_extend_is_deterministic_and_leaves_other_clicks_to_edit(tiny, blob, cache):
    vol, ref = blob
    runs = []
    for rule in ("extend", "extend", "edit"):
        pred = oracle_predictor(ref, tiny, cache, click_rule=rule)
        first = _first(pred, vol, drop=range(11, 15))
        runs.append(_click(pred, first, vol, (24.0, 20.0, 13.0)).mask)
    assert (runs[0] == runs[1]).all() and not (runs[0] == runs[2]).all()
    neg = []
    for rule in ("extend", "edit"):  # a negative click inside the mask: the same disk edit
        pred = oracle_predictor(ref, tiny, cache, click_rule=rule)
        first = _first(pred, vol)
        neg.append(_click(pred, first, vol, (24.0, 20.0, 10.0), positive=False).mask)
    assert (neg[0] == neg[1]).all() and not neg[0][24, 20, 10]


def test_a_click_the_model_misses_on_an_empty_slice_adds_a_small_disk_not_the_slice():
    from sam_med.predictors.slicewise.corrections import correct_slice

    def decode(box):  # a model that answers nothing
        return SliceOut(np.zeros((64, 64), bool), None, box, 0.1)

    change, by_model = correct_slice(decode, np.zeros((64, 64), bool), np.array([10, 10, 20, 20]), 30, 40, True, 3)
    assert not by_model and change[40, 30] and change.sum() == (np.hypot(*np.mgrid[-3:4, -3:4]) <= 3).sum()
