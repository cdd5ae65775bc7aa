"""``missed_part="seed"`` and ``ball_units="mm"`` under ``click_rule="ball"`` (tiny random
encoder + oracle decoder on synthetic two-blob volumes; no weights, no shared data): a positive
click in a missed second blob brings that blob in across its slices and leaves the first one
alone; a click next to the mask in the same tissue goes to the guarded ball."""

from __future__ import annotations

import numpy as np
import pytest

from sam_med.prompts import KeySliceBox, ObjectPrompts, Point

SHAPE = (64, 40, 20)
A_C, A_R = (16, 20, 10), (7, 7, 4)  # the blob the box is drawn on: slices 6..14
B_C, B_R = (46, 20, 10), (6, 6, 4)  # a second part of the object, apart in-plane: slices 6..14
KEY = KeySliceBox(axis=2, slice=10, range=(3, 17), rect=(8.0, 12.0, 24.0, 28.0))


def _ellipsoid(c, r):
    grid = np.ogrid[tuple(slice(0, s) for s in SHAPE)]
    return sum(((g - cc) / rr) ** 2 for g, cc, rr in zip(grid, c, r)) <= 1.0


def _volume(ref, seed=0):
    from sam_med.volume import Volume

    rng = np.random.default_rng(seed)
    arr = np.where(ref, 160.0, 20.0) + rng.normal(0, 8, SHAPE)
    return Volume(arr.astype(np.float32), np.diag([1.0, 1.0, 3.0, 1.0]), modality="CT", intensity="HU",
                  slice_axis=2)


@pytest.fixture(scope="module")
def cache():
    from sam_med.predictors.embedding_cache import EmbeddingCache

    return EmbeddingCache()


def _run(tiny, cache, ref, vol, click, **options):
    from _helpers import oracle_predictor

    pred = oracle_predictor(ref, tiny, cache, click_rule="ball", **options)
    first = pred.predict(vol, ObjectPrompts(key_box=KEY))
    pred.decoded.clear()
    r = pred.predict(vol, ObjectPrompts(key_box=KEY, points=[Point(click, True)]), previous=first)
    return first, r, pred


def test_a_click_in_a_missed_second_blob_brings_it_in_across_its_slices(tiny, cache):
    a, b = _ellipsoid(A_C, A_R), _ellipsoid(B_C, B_R)
    ref = a | b
    vol = _volume(ref)
    first, r, _ = _run(tiny, cache, ref, vol, (46.0, 20.0, 10.0), missed_part="seed")
    assert np.array_equal(first.mask, a)  # the box's run found the first blob only
    assert np.array_equal(r.mask & b, b)  # the whole second blob, on every one of its slices
    assert np.array_equal(r.mask & ~b, a)  # the first blob exactly as it was, nothing else
    _, ball, pred = _run(tiny, cache, ref, vol, (46.0, 20.0, 10.0), missed_part="ball")  # the guarded ball
    assert pred.decoded == []  # ... makes no decoder call
    _, both, _ = _run(tiny, cache, ref, vol, (46.0, 20.0, 10.0), missed_part="seed_ball")
    assert np.array_equal(both.mask, r.mask | ball.mask)  # seed_ball: the union of the two


def test_the_part_stops_where_it_meets_the_existing_mask(tiny, cache):
    a, b = _ellipsoid(A_C, A_R), _ellipsoid(B_C, B_R)
    bridge = np.zeros(SHAPE, bool)
    bridge[16:47, 17:23, 6:9] = True  # on slices 6..8 the two blobs are one piece
    ref = a | b | bridge
    vol = _volume(ref, seed=1)
    first, r, pred = _run(tiny, cache, ref, vol, (46.0, 20.0, 11.0), missed_part="seed")
    assert first.mask[:, :, 6:9].any(axis=(0, 1)).all() and not first.mask[40:, :, 9:].any()
    assert np.array_equal(r.mask, ref)  # the missed part of slices 9..14, joined to the rest
    assert 8 in pred.decoded and not {6, 7} & set(pred.decoded)  # met the mask on slice 8: stopped


def test_a_click_next_to_the_mask_in_the_same_tissue_gets_the_ball(tiny, cache):
    from sam_med.predictors.slicewise.seed_part import is_separate_part

    a = _ellipsoid(A_C, A_R)
    wrong = a.copy()
    wrong[16:, :, :] = False  # the oracle's object misses the blob's right half
    vol = _volume(a, seed=2)
    click = (20.0, 20.0, 10.0)  # in the missed half, its tissue runs into the mask
    outs = [_run(tiny, cache, wrong, vol, click, missed_part=m)[1].mask for m in ("seed", "ball")]
    assert np.array_equal(outs[0], outs[1])
    img = np.where((a | _ellipsoid(B_C, B_R))[:, :, 10].T, 160.0, 20.0)
    mask = wrong[:, :, 10].T
    assert not is_separate_part(img, mask, 20, 20, 3.0)
    assert is_separate_part(img, mask, 46, 20, 3.0)  # across dark tissue
    assert not is_separate_part(img, mask, 16, 20, 3.0)  # adjacent (r < 2)


def test_ball_in_mm_reaches_fewer_thick_slices():
    from sam_med.predictors.slicewise.ball import continue_ball, slice_scale
    from sam_med.predictors.slicewise.options import SliceWiseOptions
    from sam_med.predictors.planes import PlaneGeometry
    from sam_med.predictors.slicewise.state import SliceOut

    vol = _volume(_ellipsoid(A_C, A_R))
    geo = PlaneGeometry(2, SHAPE)

    class P:
        options = SliceWiseOptions(ball_units="mm")

    class S:
        volume = vol
        slices = {}

    assert slice_scale(P(), S(), geo) == pytest.approx(3.0)  # 3 mm slices, 1 mm pixels
    P.options = SliceWiseOptions()
    assert slice_scale(P(), S(), geo) == 1.0
    h, w = geo.hw
    for a, want in ((1.0, list(range(9, 2, -1)) + list(range(11, 18))), (3.0, [9, 8, 11, 12])):
        base = np.zeros((h, w), bool)
        base[:, :5] = True
        S.slices = {z: SliceOut(base.copy(), None, None, 0.9) for z in range(SHAPE[2])}
        assert continue_ball(S(), geo, 10, 20, 20, True, 7.5, None, a) == want
        assert S.slices[12].mask[20, 20] and (a == 1.0 or not S.slices[13].mask[20, 20])


def test_either_test_also_calls_a_click_farther_than_the_object_is_thick_separate():
    from sam_med.predictors.slicewise.seed_part import is_separate_part

    img = np.full((40, 40), 160.0)  # one tissue everywhere: the tissue test never separates
    mask = np.zeros((40, 40), bool)
    mask[10:30, 5:9] = True  # a strip 4 px wide: half-thickness 2
    assert not is_separate_part(img, mask, 20, 20, 3.0)
    assert is_separate_part(img, mask, 20, 20, 3.0, "either")  # 12 px away > 2
    assert not is_separate_part(img, mask, 10, 20, 3.0, "either")  # 2 px away: not farther than it is thick
