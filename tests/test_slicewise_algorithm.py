"""The slice-wise algorithm on a synthetic blob, with no weights and no shared data.

The encoder is the tiny random-weight LiteMedSAM-shaped model (tests/_helpers.py), so
embeddings really flow through the cache; the decoder is an oracle (the reference
inside the box), so what is tested is the algorithm around it: propagation both ways
and its stop rules, the generator API, clicks + re-propagation, undo through Session.
"""

from __future__ import annotations

import numpy as np
import pytest

from _helpers import blob_volume, oracle_predictor
from sam_med.errors import PromptError
from sam_med.prompts import Box, ObjectPrompts, Point, box_from_mask
from sam_med.session import Session

CENTER, RADII, SHAPE = (24, 20, 10), (9, 7, 4), (48, 40, 20)  # the object spans slices 6..14


@pytest.fixture(scope="module")
def cache():
    from sam_med.predictors.embedding_cache import EmbeddingCache

    return EmbeddingCache()  # shared by the tests: every slice is encoded once


@pytest.fixture(scope="module")
def blob():
    return blob_volume(SHAPE, CENTER, RADII)


def object_slices(ref) -> list[int]:
    return [k for k in range(ref.shape[2]) if ref[:, :, k].any()]


def test_tight_box_propagates_both_ways_to_the_box_extent(tiny, blob, cache):
    vol, ref = blob
    pred = oracle_predictor(ref, tiny, cache)
    r = pred.predict(vol, ObjectPrompts(box=box_from_mask(ref)))
    assert r.info.mode == "full" and r.state.key == 10
    assert r.info.slices == object_slices(ref) == list(range(6, 15))
    np.testing.assert_array_equal(r.mask, ref)
    assert pred.decoded[-1] != 10 and {9, 11} <= set(pred.decoded)  # decoded on both sides
    assert pred.cache.encoded > 0  # embeddings came from the tiny encoder through the cache


def test_propagation_stops_where_the_object_vanishes(tiny, blob, cache):
    vol, ref = blob
    lo, hi = box_from_mask(ref).int_bounds()
    loose = Box(lo=(lo[0], lo[1], 1), hi=(hi[0], hi[1], 19))  # slices 1..19, object 6..14
    pred = oracle_predictor(ref, tiny, cache, slice_step=1)  # every slice (skipping: test_slicewise_speed.py)
    r = pred.predict(vol, ObjectPrompts(box=loose))
    np.testing.assert_array_equal(r.mask, ref)
    assert 15 in pred.decoded and 5 in pred.decoded  # the first empty slice on each side ...
    assert not set(pred.decoded) & {1, 2, 3, 4, 16, 17, 18, 19}  # ... and nothing beyond it
    assert set(r.state.slices) == set(range(5, 16))


def test_generator_first_yields_the_key_slice_and_matches_predict(tiny, blob, cache):
    vol, ref = blob
    prompts = ObjectPrompts(box=box_from_mask(ref))
    pred = oracle_predictor(ref, tiny, cache)
    state = pred.init_state(vol, prompts)
    assert state.key is None and not state.slices  # nothing decoded yet
    k, plane = pred.add_prompts(state)
    assert k == 10 and plane.shape == (48, 40) and plane.any()  # the volume's own index order
    seen = list(pred.propagate(state))
    order = [z for z, _ in seen]
    assert order[0] == 10 and order[1:6] == [11, 12, 13, 14] + [9] and order[-1] == 6
    assert not state.pending and list(pred.propagate(state)) == []  # nothing left to run
    full = pred.predict(vol, prompts).mask
    np.testing.assert_array_equal(pred.volume_mask(state), full)
    for z, m in seen:  # mask3d[:, :, z] = plane paints the volume
        np.testing.assert_array_equal(m, full[:, :, z])


def test_break_cancels_propagation(tiny, blob, cache):
    vol, ref = blob
    pred = oracle_predictor(ref, tiny, cache)
    state = pred.init_state(vol, ObjectPrompts(box=box_from_mask(ref)))
    pred.add_prompts(state)
    seen = []
    for z, m in pred.propagate(state):
        seen.append(z)
        if len(seen) == 3:
            break
    assert seen == [10, 11, 12] and not state.pending
    assert sorted(state.slices) == [10, 11, 12]
    mask = pred.volume_mask(state)
    assert sorted(set(np.nonzero(mask)[2])) == [10, 11, 12]


def test_a_click_changes_are_all_yielded_by_propagate(tiny, blob, cache):
    """A negative click under the default ball rule changes the clicked slice and its
    neighbours; add_prompts returns the clicked slice, propagate yields every changed slice
    (the clicked one first), each equal to the refined result's slice."""
    vol, ref = blob
    pred = oracle_predictor(ref, tiny, cache)
    prompts = ObjectPrompts(box=box_from_mask(ref))
    first = pred.predict(vol, prompts)
    click = Point((24.0, 20.0, 10.0), False)  # inside the object on its middle slice
    r = pred.predict(vol, ObjectPrompts(box=prompts.box, points=[click]), previous=first)
    assert r.info.mode == "refine" and r.info.click_slice_seconds is not None
    assert not r.mask[24, 20, 10]  # the click is honoured
    changed = sorted(set(np.nonzero(first.mask ^ r.mask)[2]))
    assert len(changed) > 1 and 10 in changed  # the ball reaches the neighbouring slices
    st = first.state.branch(first.state.prompts)
    st.volume = vol
    k, plane = pred.add_prompts(st, [click])
    seen = list(pred.propagate(st))
    assert k == 10 and seen[0][0] == 10 and set(changed) <= {z for z, _ in seen}
    for z, m in seen:
        np.testing.assert_array_equal(m, r.mask[:, :, z])
    assert first.state.prompts.points == []  # the earlier result (an undo snapshot) is untouched
    np.testing.assert_array_equal(first.mask, ref)


def test_positive_click_beyond_the_box_extends_the_object(tiny, blob, cache):
    vol, ref = blob
    lo, hi = box_from_mask(ref).int_bounds()
    short = Box(lo=(lo[0], lo[1], 8), hi=(hi[0], hi[1], 12))  # the box stops short of 6..14
    pred = oracle_predictor(ref, tiny, cache)
    first = pred.predict(vol, ObjectPrompts(box=short))
    assert first.info.slices == [8, 9, 10, 11, 12]
    r = pred.predict(vol, ObjectPrompts(box=short, points=[Point((24.0, 20.0, 14.0), True)]), previous=first)
    assert r.mask[24, 20, 14] and 14 in r.info.slices  # seeded from the nearest segmented slice
    assert not r.mask[:, :, 13].any()  # outside the box and not clicked: stays out of the mask


def test_points_only_seeds_by_box_search_and_propagates(tiny, blob, cache):
    vol, ref = blob
    pred = oracle_predictor(ref, tiny, cache)
    r = pred.predict(vol, ObjectPrompts(points=[Point((24.0, 20.0, 10.0), True)]))
    assert r.state.key == 10 and r.state.seed_stats is not None
    np.testing.assert_array_equal(r.mask, ref)
    with pytest.raises(PromptError, match="positive"):
        pred.predict(vol, ObjectPrompts(points=[Point((24.0, 20.0, 10.0), False)]))
    with pytest.raises(PromptError):
        pred.predict(vol, ObjectPrompts())


def test_undo_redo_through_the_session(tiny, blob, cache):
    vol, ref = blob
    s = Session(vol, oracle_predictor(ref, tiny, cache))
    o = s.add_object("blob")
    s.set_box(o.id, box_from_mask(ref))
    boxed = s.mask(o.id).copy()
    s.add_point(o.id, (24, 20, 12), False)
    clicked = s.mask(o.id).copy()
    assert not clicked[24, 20, 12] and s.get(o.id).result.info.mode == "refine"
    s.undo()
    np.testing.assert_array_equal(s.mask(o.id), boxed)
    s.redo()
    np.testing.assert_array_equal(s.mask(o.id), clicked)
    s.undo()
    s.add_point(o.id, (24, 20, 8), False)  # a different click after the undo refines the box result
    m = s.mask(o.id)
    assert not m[24, 20, 8] and m[24, 20, 12]


def test_real_tiny_decoder_end_to_end(tiny, blob, cache):
    from sam_med.predictors.slicewise import SliceWisePredictor

    vol, ref = blob
    box = box_from_mask(ref)
    pred = SliceWisePredictor(loaded=tiny, cache=cache)
    r = pred.predict(vol, ObjectPrompts(box=box))
    lo, hi = box.int_bounds()
    outside = r.mask.copy()
    outside[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1] = False
    assert r.mask.shape == vol.shape and not outside.any()
    assert r.state.key == 10 and set(r.info.slices) <= set(range(6, 15))
    assert r.info.encode_seconds >= 0 and r.info.decode_seconds > 0


def test_key_slice_box_bounds_only_its_slice(tiny, blob, cache):
    """A rectangle drawn on slice 7 (narrower than the middle of the object) + the range
    6..14: the other slices grow past the rectangle by propagation (the 3D box spanning
    the same rectangle and range clips them)."""
    from sam_med.prompts import KeySliceBox

    vol, ref = blob
    lo, hi = box_from_mask(ref[:, :, 7:8]).int_bounds()
    kb = KeySliceBox(axis=2, slice=7, range=(6, 14), rect=(lo[0], lo[1], hi[0], hi[1]))
    pred = oracle_predictor(ref, tiny, cache, slice_step=1)  # every slice decoded: the exact mask
    r = pred.predict(vol, ObjectPrompts(key_box=kb))
    assert r.state.key == 7 and r.state.key_only
    np.testing.assert_array_equal(r.mask, ref)  # not clipped to slice 7's rectangle
    clipped = oracle_predictor(ref, tiny, cache).predict(vol, ObjectPrompts(box=kb.to_box3d()))
    assert clipped.mask.sum() < 0.9 * ref.sum()  # the old reading loses the wider slices
    outside = np.ones(SHAPE, bool)
    outside[:, :, 6:15] = False
    assert not (r.mask & outside).any()  # the range still bounds the slices

    s = Session(vol, oracle_predictor(ref, tiny, cache, slice_step=1))
    o = s.add_object("blob")
    s.set_key_slice_box(o.id, kb)
    np.testing.assert_array_equal(s.mask(o.id), ref)
    assert s.get(o.id).prompts.key_box == kb and s.get(o.id).prompts.box is None
    s.add_point(o.id, (24, 20, 10), positive=False)  # a refinement keeps the key-slice box
    assert s.get(o.id).prompts.key_box == kb
    with pytest.raises(PromptError):
        s.set_key_slice_box(o.id, KeySliceBox(axis=2, slice=7, range=(6, 25), rect=kb.rect))


def test_a_rerun_replays_the_clicks_in_order(tiny, blob, cache):
    """Box + clicks in one prompt set (a reloaded session, one `segment` per CVPR25 step)
    give exactly the masks of the interactive session that made them."""
    from sam_med.prompts import KeySliceBox

    vol, ref = blob
    lo, hi = box_from_mask(ref[:, :, 9:10]).int_bounds()
    kb = KeySliceBox(axis=2, slice=9, range=(6, 14), rect=(lo[0], lo[1], hi[0], hi[1]))
    clicks = [Point((24.0, 20.0, 12.0), False), Point((24.0, 20.0, 10.0), True), Point((20.0, 20.0, 8.0), False)]
    s = Session(vol, oracle_predictor(ref, tiny, cache))
    o = s.add_object("blob")
    s.set_key_slice_box(o.id, kb)
    for c in clicks:
        s.add_point(o.id, c.ijk, positive=c.positive)
    interactive = s.mask(o.id)
    rerun = oracle_predictor(ref, tiny, cache).predict(vol, ObjectPrompts(key_box=kb, points=clicks))
    assert rerun.info.mode == "full"
    np.testing.assert_array_equal(rerun.mask, interactive)
    assert not interactive[24, 20, 12] and interactive[24, 20, 10] and not interactive[20, 20, 8]
