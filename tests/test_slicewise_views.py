"""Views of the slice-wise predictor (zoom / context crop choice) and the decoding adapter,
with no weights and no shared data (tiny random-weight model for the decoder)."""

from __future__ import annotations

import numpy as np
import pytest

from _helpers import blob_volume
from sam_med.predictors.image_predictor import SamPredictor2D
from sam_med.predictors.planes import PlaneGeometry
from sam_med.predictors.slicewise import SliceWiseOptions, SliceWisePredictor
from sam_med.predictors.slicewise.constants import MIN_CROP, ZOOM_FACTOR
from sam_med.predictors.slicewise.views import choose_crop, context_view, select_view, square_crop


@pytest.fixture(scope="module")
def cache():
    from sam_med.predictors.embedding_cache import EmbeddingCache

    return EmbeddingCache()


def test_square_crop_stays_inside_the_plane():
    assert square_crop(5, 5, 20, (100, 80)) == (0, 0, 19, 19)  # shifted in at the corner
    assert square_crop(79, 99, 20, (100, 80)) == (60, 80, 79, 99)
    assert square_crop(40, 50, 200, (100, 80)) == (0, 0, 79, 99)  # larger than the plane: clipped
    x0, y0, x1, y1 = square_crop(40.0, 50.0, 31, (100, 80))
    assert (x1 - x0 + 1, y1 - y0 + 1) == (31, 31) and abs((x0 + x1) / 2 - 40) <= 1


def test_choose_crop_rules():
    o = SliceWiseOptions()
    ext = np.array([40, 40, 59, 49])  # 20 x 10 px box in a 200 x 200 plane
    crop = choose_crop(o, ext, (200, 200), from_points=False)
    assert crop[2] - crop[0] + 1 == max(MIN_CROP, round(20 * ZOOM_FACTOR))
    assert crop[0] <= 40 and crop[2] >= 59 and crop[1] <= 40 and crop[3] >= 49
    assert choose_crop(o, ext, (200, 200), from_points=True) is None
    assert choose_crop(SliceWiseOptions(zoom="never"), ext, (200, 200), False) is None
    assert choose_crop(o, np.array([0, 0, 150, 150]), (200, 200), False) is None  # would cover the slice


def test_context_view_keeps_the_slice_scale():
    zoom = (90, 90, 111, 111)  # 22 px = 10 px box x 2.2
    crop, res = context_view(zoom, (512, 512), 256)
    side = crop[2] - crop[0] + 1
    assert side == 50 and res == 32  # 5 x the box side, at 256/512 of the pixels, rounded to 16
    assert context_view(None, (512, 512), 256) == (None, None)
    assert context_view((0, 0, 250, 250), (512, 512), 256) == (None, None)  # 5 x would not fit


def test_select_view_takes_the_zoom_only_by_the_margin():
    o = SliceWiseOptions()  # ZOOM_MARGIN = 0.1
    zoom = ((90, 90, 111, 111), None)
    scored = []

    def score_by(table):
        def score(view):
            scored.append(view)
            return table[view == zoom]
        return score

    assert select_view(o, zoom, (512, 512), 256, score_by({True: 0.85, False: 0.7})) == zoom
    wide = context_view(zoom[0], (512, 512), 256)
    assert select_view(o, zoom, (512, 512), 256, score_by({True: 0.75, False: 0.7})) == wide
    scored.clear()
    assert select_view(o, zoom, (512, 512), 256, score_by({True: 1.0, False: 0.95})) == wide
    assert scored == [wide]  # the zoom cannot win by the margin: not encoded


def test_whole_res_alt_replaces_the_whole_slice_only_by_the_margin():
    """A box whose context square does not fit: the whole slice at S is scored against the
    whole slice at whole_res_alt; the smaller input wins only by zoom_margin, and a context
    crop (not the whole slice) never scores the alternative."""
    from sam_med.predictors.base import OptionError

    o = SliceWiseOptions(whole_res_alt=192)
    big_zoom = ((10, 10, 500, 500), None)  # 5 x this box's side does not fit the 512 slice
    assert context_view(big_zoom[0], (512, 512), 256) == (None, None)
    table = {(None, None): 0.6, (None, 192): 0.75, big_zoom: 0.5}
    scored = []

    def score(view):
        scored.append(view)
        return table[view]

    assert select_view(o, big_zoom, (512, 512), 256, score) == (None, 192)
    assert scored[:2] == [(None, None), (None, 192)]
    table[(None, 192)] = 0.65  # better, but not by the margin
    assert select_view(o, big_zoom, (512, 512), 256, score) == (None, None)
    scored.clear()
    small = ((90, 90, 111, 111), None)  # its context square fits: a crop, no alternative
    table.update({context_view(small[0], (512, 512), 256): 0.7, small: 0.7})
    select_view(o, small, (512, 512), 256, score)
    assert (None, 192) not in scored
    with pytest.raises(OptionError, match="whole_res_alt=100"):
        select_view(SliceWiseOptions(whole_res_alt=100), big_zoom, (512, 512), 256, score)


def test_decoding_adapter_matches_the_2d_predictor_in_a_crop(tiny, cache):
    vol, inside = blob_volume()
    pred = SliceWisePredictor(loaded=tiny, cache=cache)
    geo = pred.geometry(vol)
    crop = (10, 8, 41, 39)
    for res in (None, 64):
        emb = pred.embeddings(geo, [6], crop, res=res)[6]
        box = np.array([15, 14, 33, 27])
        out = pred.decode_slice(geo, 6, (crop, res), emb, box)
        sp = SamPredictor2D(tiny)
        sp.set_embedding(emb, original_size=(crop[3] - crop[1] + 1, crop[2] - crop[0] + 1),
                         transform=pred.encoder.transform(res))
        masks, scores, low = sp.predict(box=box - [crop[0], crop[1], crop[0], crop[1]])
        assert out.mask.shape == geo.hw
        np.testing.assert_array_equal(out.mask[crop[1]:crop[3] + 1, crop[0]:crop[2] + 1], masks[0])
        outside = out.mask.copy()
        outside[crop[1]:crop[3] + 1, crop[0]:crop[2] + 1] = False
        assert not outside.any()
        assert out.score == pytest.approx(float(scores[0]))
        assert tuple(out.logits.shape[:2]) == (1, 1)
        np.testing.assert_array_equal(out.logits[0].numpy(), low[:1])


def test_set_image_and_set_embedding_agree(tiny, cache):
    vol, _ = blob_volume()
    pred = SliceWisePredictor(loaded=tiny, cache=cache)
    geo = pred.geometry(vol)
    img = pred.slice_image(geo, 6)
    a = SamPredictor2D(tiny)
    a.set_image(img)
    b = SamPredictor2D(tiny)
    b.set_embedding(pred.embeddings(geo, [6])[6], original_size=img.shape)
    box = np.array([10, 12, 30, 28])
    for x, y in zip(a.predict(box=box), b.predict(box=box)):
        np.testing.assert_allclose(x, y, atol=1e-5)
    with pytest.raises(RuntimeError, match="no image set"):
        SamPredictor2D(tiny).predict(box=box)


def test_plane_geometry_round_trip():
    geo = PlaneGeometry(1, (5, 6, 7))
    a = np.arange(5 * 6 * 7).reshape(5, 6, 7)
    plane = geo.slice_of(a, 2)
    assert plane.shape == geo.hw == (7, 5)
    b = np.zeros_like(a)
    geo.set_slice(b, 2, plane)
    np.testing.assert_array_equal(b[:, 2, :], a[:, 2, :])
