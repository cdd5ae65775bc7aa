"""The encode budget (a long box is encoded at a smaller input) and full prefetch batches
(issue #16), with the oracle decoder and the tiny random encoder."""

from __future__ import annotations

import numpy as np
import pytest

from _helpers import blob_volume, oracle_predictor
from sam_med.predictors.base import OptionError
from sam_med.predictors.embedding_cache import EmbeddingCache
from sam_med.predictors.slicewise.options import SliceWiseOptions
from sam_med.predictors.slicewise.views import budget_res, cap_view
from sam_med.prompts import ObjectPrompts, box_from_mask

SHAPE = (48, 40, 30)


@pytest.fixture(scope="module")
def long_blob():  # spans all 30 slices, changes slowly from slice to slice
    return blob_volume(SHAPE, (24, 20, 15), (12, 10, 40))


def test_budget_res_is_the_largest_input_that_fits():
    assert SliceWiseOptions().encode_budget is None  # opt-in
    o = SliceWiseOptions(encode_budget=40)  # 40 S x S encodes, at least 128
    assert budget_res(o, 40, 256, True) is None  # fits
    assert budget_res(o, 154, 256, True) == 128  # the MNI brain: 256 * sqrt(40 / 154) = 130 -> 128
    assert budget_res(o, 60, 256, True) == 208  # 256 * sqrt(40 / 60) = 209 -> 208; 60 * (208/256)^2 <= 40
    assert 60 * (208 / 256) ** 2 <= 40 < 60 * (224 / 256) ** 2
    assert budget_res(o, 1000, 256, True) == 128  # never below BUDGET_MIN_RES
    assert budget_res(o, 1000, 256, False) is None  # the encoder takes only S
    assert budget_res(SliceWiseOptions(encode_budget=None), 1000, 256, True) is None
    from sam_med.predictors.slicewise.options import check_options

    with pytest.raises(OptionError):
        check_options(SliceWiseOptions(encode_budget=0), 256, True)


def test_cap_view_only_lowers_the_input():
    assert cap_view(((0, 0, 9, 9), None), 128, 256) == ((0, 0, 9, 9), 128)  # S -> the cap
    assert cap_view((None, 96), 128, 256) == (None, 96)  # already smaller
    assert cap_view((None, None), None, 256) == (None, None)


def test_a_long_box_is_encoded_at_the_budget_size(tiny, long_blob):
    vol, ref = long_blob
    box = box_from_mask(ref)
    pred = oracle_predictor(ref, tiny, EmbeddingCache(), encode_budget=10, zoom="never", slice_step=1)
    r = pred.predict(vol, ObjectPrompts(box=box))
    assert r.info.res_cap == 144 and r.info.input_size == 144  # 256 * sqrt(10 / 30) = 147.8
    np.testing.assert_array_equal(r.mask, ref)
    keys = [k for k in pred.cache.keys(pred.embedding_namespace(2))]
    assert keys and all(len(k) == 4 and k[3] == 144 for k in keys)  # every slice at 144^2
    # the zoom / context choice is capped too
    auto = oracle_predictor(ref, tiny, EmbeddingCache(), encode_budget=10, slice_step=1).predict(
        vol, ObjectPrompts(box=box))
    assert auto.info.input_size <= 144
    # under the budget nothing changes
    short = oracle_predictor(ref, tiny, EmbeddingCache(), encode_budget=40, zoom="never", slice_step=1).predict(
        vol, ObjectPrompts(box=box))
    assert short.info.res_cap is None and short.info.input_size == tiny.image_size


def test_prefetch_encodes_full_batches(tiny, long_blob):
    vol, ref = long_blob
    pred = oracle_predictor(ref, tiny, EmbeddingCache(), zoom="never", slice_step=1, encode_workers=2, batch_size=2)
    sizes = []
    encode = pred.encoder._encode

    def counted(batch):
        sizes.append(len(batch))
        return encode(batch)

    pred.encoder._encode = counted
    pred.predict(vol, ObjectPrompts(box=box_from_mask(ref)))
    assert sizes[0] == 1 and sum(sizes) == 30  # the key slice alone, then every slice once
    assert sizes.count(2) >= 13  # 29 slices ahead of the key: in pairs, not one new slice per step
