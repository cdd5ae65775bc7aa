"""Speed features of the slice-wise engine (issue #16), with no weights and no shared data:
signed-distance interpolation, slice skipping (oracle decoder on a synthetic blob, the
tiny random encoder through the cache), the reduced whole-slice input, and the key
slice decoded before the rest of the range is encoded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _helpers import blob_volume, oracle_predictor
from sam_med.predictors.base import OptionError
from sam_med.predictors.embedding_cache import EmbeddingCache
from sam_med.predictors.slicewise.interpolation import interpolate_masks, signed_distance
from sam_med.prompts import Box, ObjectPrompts, box_from_mask

CENTER, RADII, SHAPE = (24, 20, 15), (12, 10, 12), (48, 40, 30)  # object spans slices 3..27


@pytest.fixture(scope="module")
def blob():
    return blob_volume(SHAPE, CENTER, RADII)


@pytest.fixture(scope="module")
def long_blob():  # an elongated object that changes slowly from slice to slice (all 30)
    return blob_volume(SHAPE, CENTER, (12, 10, 40))


def disk(hw, cy, cx, r):
    yy, xx = np.ogrid[: hw[0], : hw[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def dice(a, b):
    return 2 * (a & b).sum() / max(a.sum() + b.sum(), 1)


def test_signed_distance_sign_and_boundary():
    m = disk((40, 40), 20, 20, 8)
    d = signed_distance(m)
    assert (d[m] < 0).all() and (d[~m] > 0).all()
    assert d[20, 20] == pytest.approx(-8.5, abs=1.0)  # depth of the centre ~ the radius
    assert signed_distance(np.zeros((5, 5), bool)).min() > 0


def test_interpolation_identity_and_growth():
    a = disk((60, 60), 30, 30, 6)
    for m in interpolate_masks(a, a, 3):
        np.testing.assert_array_equal(m, a)
    b = disk((60, 60), 30, 30, 18)
    mids = interpolate_masks(a, b, 3)
    areas = [a.sum()] + [m.sum() for m in mids] + [b.sum()]
    assert all(x < y for x, y in zip(areas, areas[1:]))  # grows monotonically
    assert all((a <= m).all() and (m <= b).all() for m in mids)  # nested between the ends
    mid_r = np.sqrt(mids[1].sum() / np.pi)
    assert abs(mid_r - 12) < 1.0  # halfway in radius


def test_interpolation_moves_a_shape():
    a, b = disk((40, 80), 20, 30, 10), disk((40, 80), 20, 40, 10)  # overlapping ends
    (m,) = interpolate_masks(a, b, 1)
    ys, xs = np.nonzero(m)
    assert abs(xs.mean() - 35) < 0.5 and 0.8 * a.sum() < m.sum() <= a.sum()  # a blend of distances shrinks a little
    assert interpolate_masks(a, b, 0) == []


def test_skipping_decodes_fewer_slices_and_keeps_the_mask(tiny, long_blob):
    vol, ref = long_blob
    cache = EmbeddingCache()
    full = oracle_predictor(ref, tiny, cache, slice_step=1)
    r1 = full.predict(vol, ObjectPrompts(box=box_from_mask(ref)))
    skip = oracle_predictor(ref, tiny, EmbeddingCache(), slice_step=3)
    r3 = skip.predict(vol, ObjectPrompts(box=box_from_mask(ref)))
    assert r3.info.slices == r1.info.slices  # same extent, every slice filled
    assert len(set(skip.decoded)) < 0.6 * len(set(full.decoded))
    assert skip.cache.encoded < 0.6 * full.cache.encoded
    assert dice(r3.mask, r1.mask) > 0.97


def test_skipping_falls_back_where_the_ends_disagree(tiny, blob, monkeypatch):
    import sam_med.predictors.slicewise.skipping as skipping

    vol, ref = blob
    monkeypatch.setattr(skipping, "SKIP_DICE", 1.01)  # the two ends never agree
    pred = oracle_predictor(ref, tiny, EmbeddingCache(), slice_step=3)
    r = pred.predict(vol, ObjectPrompts(box=box_from_mask(ref)))
    np.testing.assert_array_equal(r.mask, ref)
    lo, hi = box_from_mask(ref).int_bounds()
    assert set(range(lo[2], hi[2] + 1)) <= set(pred.decoded)  # every slice went through the model


def test_skipping_stops_where_the_object_vanishes(tiny, blob):
    vol, ref = blob
    lo, hi = box_from_mask(ref).int_bounds()
    loose = Box(lo=(lo[0], lo[1], 0), hi=(hi[0], hi[1], SHAPE[2] - 1))
    pred = oracle_predictor(ref, tiny, EmbeddingCache(), slice_step=4)
    r = pred.predict(vol, ObjectPrompts(box=loose))
    ks = r.info.slices
    assert ks[0] == lo[2] and ks[-1] == hi[2]
    assert dice(r.mask, ref) > 0.97


def test_bad_speed_options_are_refused(tiny, blob):
    vol, ref = blob
    with pytest.raises(OptionError):
        oracle_predictor(ref, tiny, EmbeddingCache(), slice_step=0).predict(vol, ObjectPrompts(box=box_from_mask(ref)))
    for bad in ({"whole_res_alt": 100}, {"encode_budget": 0}, {"slice_step": -1}):
        with pytest.raises(OptionError, match=next(iter(bad))):
            oracle_predictor(ref, tiny, EmbeddingCache(), **bad)  # refused when the predictor is made


def test_key_slice_is_decoded_before_the_range_is_encoded(tiny, blob):
    vol, ref = blob
    for step in (1, 2):
        pred = oracle_predictor(ref, tiny, EmbeddingCache(), zoom="never", slice_step=step)
        st = pred.init_state(vol, ObjectPrompts(box=box_from_mask(ref)))
        k, mask = pred.add_prompts(st)
        assert k == 15 and mask.any()
        assert pred.cache.encoded == 1  # only the key slice so far
        list(pred.propagate(st))
        assert pred.cache.encoded == len(st.slices) if step == 1 else pred.cache.encoded <= len(st.slices)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_encodes_in_batches_and_agrees_with_cpu(tiny, long_blob, monkeypatch):
    """--device cuda: slices are encoded in batches of 8, and the masks match the CPU's."""
    from sam_med.models import load_model
    from sam_med.predictors.slicewise import SliceWisePredictor

    vol, ref = long_blob
    gpu = load_model(tiny.name, device="cuda", precision="fp32")
    sizes = []
    encode = gpu.encode

    def counted(x):
        sizes.append(len(x))
        return encode(x)

    monkeypatch.setattr(gpu, "encode", counted)
    pred = SliceWisePredictor(loaded=gpu, cache=EmbeddingCache(), zoom="never")
    assert pred.options.batch_size == 8 and pred.options.encode_workers == 1
    r_gpu = pred.predict(vol, ObjectPrompts(box=box_from_mask(ref)))
    cpu = SliceWisePredictor(loaded=load_model(tiny.name, device="cpu", precision="fp32"), cache=EmbeddingCache(),
                             zoom="never")
    r_cpu = cpu.predict(vol, ObjectPrompts(box=box_from_mask(ref)))
    assert sizes[0] == 1 and max(sizes) == 8  # the key slice alone, then batches
    assert dice(r_gpu.mask, r_cpu.mask) > 0.98
