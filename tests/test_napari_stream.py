"""Session.stream, the generator the napari widget paints from (no Qt, no weights):
the tiny random LiteMedSAM-shaped encoder + the oracle decoder of tests/_helpers.py."""

from __future__ import annotations

import numpy as np
import pytest

from _helpers import blob_volume, load_tiny_model, oracle_predictor
from sam_med.predictors.base import PredictionResult
from sam_med.predictors.embedding_cache import EmbeddingCache
from sam_med.predictors.streaming import paint
from sam_med.prompts import ObjectPrompts, make_key_slice_box, make_point
from sam_med.session import Session


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_tiny_model(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture
def blob():
    return blob_volume()  # (48, 40, 12), ellipsoid centre (24, 20, 6), radii (9, 7, 4)


def _key_box(ref, k, half, shape):
    idx = np.argwhere(ref[:, :, k])
    lo, hi = idx.min(0), idx.max(0)
    return make_key_slice_box(2, k, (k - half, k + half), (lo[0], lo[1], hi[0], hi[1]), shape)


def test_stream_yields_key_slice_first_then_each_slice_and_commits_one_undo_step(tiny, blob):
    vol, ref = blob
    pred = oracle_predictor(ref, tiny, EmbeddingCache())
    s = Session(vol, pred)
    oid = s.add_object("blob").id
    undo_depth = len(s._undo)
    prompts = ObjectPrompts(key_box=_key_box(ref, 6, 5, vol.shape))
    gen = s.stream(oid, prompts)
    painted = np.zeros(vol.shape, bool)
    ks = []
    while True:
        try:
            upd = next(gen)
        except StopIteration as stop:
            obj = stop.value
            break
        axis, k, plane = upd
        assert axis == 2 and plane.shape == vol.shape[:2] and plane.dtype == bool
        assert s.get(oid).mask is None  # nothing committed while streaming
        ks.append(k)
        paint(painted, upd)
    assert ks[0] == 6  # the key slice first
    assert sorted(set(ks)) == list(range(1, 12)) and len(ks) == len(set(ks))  # 6 ± 5, each once
    assert obj is s.get(oid) and obj.prompts.key_box == prompts.key_box
    assert np.array_equal(painted, obj.mask)  # what was painted = what was committed
    assert np.array_equal(obj.mask[:, :, 1:12], ref[:, :, 1:12]) and not obj.mask[:, :, [0]].any()
    assert len(s._undo) == undo_depth + 1 and obj.result.info.mode == "full"
    # the streamed result equals predict's on the same prompts
    again = pred.predict(vol, prompts)
    assert np.array_equal(again.mask, obj.mask)
    s.undo()
    assert s.get(oid).mask is None


def test_closing_the_stream_commits_nothing_and_a_click_refines_the_streamed_state(tiny, blob):
    vol, ref = blob
    pred = oracle_predictor(ref, tiny, EmbeddingCache())
    s = Session(vol, pred)
    oid = s.add_object().id
    prompts = ObjectPrompts(key_box=_key_box(ref, 6, 1, vol.shape))  # range 5..7 only
    gen = s.stream(oid, prompts)
    next(gen), next(gen)
    gen.close()  # cancel
    assert s.get(oid).mask is None and s.get(oid).prompts.is_empty()
    for _ in s.stream(oid, prompts):
        pass
    first = s.get(oid)
    assert first.mask[:, :, 5:8].any() and not first.mask[:, :, 3].any()
    n_decoded = len(pred.decoded)
    # a positive click on slice 3, outside the range: the refinement seeds that slice
    refined = s.get(oid).prompts.copy()
    refined.points.append(make_point((24, 20, 3), True, vol.shape))
    ups = list(s.stream(oid, refined))
    assert ups[0][1] == 3 and s.get(oid).result.info.mode == "refine"
    assert s.get(oid).mask[:, :, 3].any() and s.get(oid).mask[:, :, 5:8].any()
    assert len(pred.decoded) - n_decoded < 12  # refined from the state, not re-run from scratch
    s.undo()
    assert s.get(oid).mask is first.mask


class _WholeMask:
    model_name = "whole"

    def predict(self, volume, prompts, previous=None, progress=None):
        m = np.zeros(volume.shape, bool)
        lo, hi = prompts.box.int_bounds()
        m[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1] = True
        return PredictionResult(mask=m)


def test_a_predictor_without_the_streaming_api_yields_the_whole_mask_once(blob):
    from sam_med.prompts import make_box

    vol, _ = blob
    s = Session(vol, _WholeMask())
    oid = s.add_object().id
    ups = list(s.stream(oid, ObjectPrompts(box=make_box([2, 3, 1, 10, 12, 4], vol.shape))))
    assert len(ups) == 1 and ups[0][0] is None and ups[0][2].shape == vol.shape
    assert np.array_equal(ups[0][2], s.get(oid).mask) and s.get(oid).mask.sum() == 9 * 10 * 4


def test_neighbourhood_order_window_then_ahead_in_the_scrolling_direction():
    from sam_med_napari._workers import neighbourhood

    assert neighbourhood(5, 20, 2) == [5, 6, 4, 7, 3]
    assert neighbourhood(5, 20, 1, ahead=2, direction=-1) == [5, 4, 6, 3, 2, 7, 8]
    assert neighbourhood(0, 3, 2, ahead=5) == [0, 1, 2]  # clipped to the scan, each slice once


def test_prefetch_encodes_the_neighbourhood_once_and_stops_at_the_cache_budget(tiny, blob):
    from sam_med.predictors.slicewise import SliceWisePredictor
    from sam_med_napari._workers import CancelToken, Cancelled, prefetch_job

    vol, _ = blob

    class One:  # the widget's PredictorCache, reduced to what the job uses
        def __init__(self, pred):
            self.pred = pred

        def get(self, key, progress=None):
            return self.pred

    def run(job):
        reports = []
        while True:
            try:
                reports.append(next(job))
            except StopIteration as stop:
                return stop.value, reports

    pred = SliceWisePredictor(loaded=tiny, cache=EmbeddingCache())
    (enc, n), reports = run(prefetch_job(One(pred), None, vol, 6, 2, 0, 1, CancelToken()))
    ns = pred.embedding_namespace(2)
    assert (enc, n) == (5, 5) and sorted(k[1] for k in pred.cache.keys(ns)) == [4, 5, 6, 7, 8]
    assert [r.done for r in reports if r.what == "encode"] == [1, 2, 3, 4, 5]
    assert run(prefetch_job(One(pred), None, vol, 6, 2, 0, 1, CancelToken()))[0] == (0, 5)  # all cached
    entry = pred.cache.nbytes // 5
    small = SliceWisePredictor(loaded=tiny, cache=EmbeddingCache(max_bytes=int(3.5 * entry)))
    (enc, n), _ = run(prefetch_job(One(small), None, vol, 6, 4, 20, 1, CancelToken()))
    assert (enc, n) == (3, 3) and len(small.cache) == 3  # stopped before evicting: 6, 7, 5 kept
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        run(prefetch_job(One(SliceWisePredictor(loaded=tiny, cache=EmbeddingCache())), None, vol, 6, 2, 0, 1, token))
