"""Refinement clicks on a synthetic blob (tiny random encoder + oracle decoder; no weights, no
shared data): ``edit`` changes only the clicked slice; a positive click on a slice the object has
not reached seeds it with the model's part under the click (:func:`correct_slice`)."""

from __future__ import annotations

import numpy as np
import pytest

from _helpers import blob_volume, oracle_predictor
from sam_med.prompts import ObjectPrompts, Point, box_from_mask
from sam_med.predictors.slicewise.corrections import correct_slice
from sam_med.predictors.slicewise.state import SliceOut

SHAPE, CENTER, RADII = (48, 40, 20), (24, 20, 10), (9, 7, 4)


@pytest.fixture(scope="module")
def blob():
    return blob_volume(SHAPE, CENTER, RADII)


def test_edit_rule_changes_only_the_clicked_slice(tiny, blob):
    vol, ref = blob
    pred = oracle_predictor(ref, tiny, click_rule="edit")  # (the default is "ball": test_slicewise_ball.py)
    first = pred.predict(vol, ObjectPrompts(box=box_from_mask(ref)))
    r = pred.predict(vol, ObjectPrompts(box=first.state.prompts.box, points=[Point((24.0, 20.0, 12.0), False)]),
                     previous=first)
    changed = np.nonzero((r.mask != first.mask).any(axis=(0, 1)))[0].tolist()
    assert changed == [12] and not r.mask[24, 20, 12]
    assert 0 < (first.mask & ~r.mask).sum() < first.mask[:, :, 12].sum()  # a disk, not the whole slice


def test_a_positive_click_on_a_slice_not_reached_seeds_it(tiny, blob):
    vol, ref = blob
    lo, hi = box_from_mask(ref).int_bounds()
    short = ObjectPrompts(box=box_from_mask(ref[:, :, 8:13]))  # slices 8..12 only (object 6..14)
    short.box = type(short.box)((lo[0], lo[1], 8), (hi[0], hi[1], 12))
    pred = oracle_predictor(ref, tiny)
    first = pred.predict(vol, short)
    assert not first.mask[:, :, 13].any()
    r = pred.predict(vol, ObjectPrompts(box=short.box, points=[Point((24.0, 20.0, 13.0), True)]), previous=first)
    assert r.mask[24, 20, 13] and (r.mask[:, :, 13] == ref[:, :, 13]).mean() > 0.98


def test_correct_slice_adds_only_the_part_under_the_click():
    """A slice whose mask holds the object; a positive click in a missed second part: the model's
    decode of the grown box adds the part under the click, not what else the box reaches; a part
    far larger than the mask is not a correction (the disk edit instead)."""
    obj = np.zeros((40, 60), bool)
    obj[10:30, 5:25] = True
    part = np.zeros_like(obj)
    part[14:26, 36:42] = True  # inside the box grown to the click (x <= 43)
    other = np.zeros_like(obj)
    other[2:6, 50:58] = True
    truth = obj | part | other

    def decode(box):  # the model: what of the truth lies in the box
        m = np.zeros_like(truth)
        m[box[1]:box[3] + 1, box[0]:box[2] + 1] = True
        return SliceOut(m & truth, None, np.asarray(box))

    delta = correct_slice(decode, obj, np.array([5, 10, 24, 29]), 40, 20)
    assert delta[20, 40] and (delta == part).all()
    assert correct_slice(decode, obj, np.array([5, 10, 24, 29]), 10, 20) is None  # agrees already
    small = np.zeros_like(obj)
    small[18:21, 6:9] = True  # 9 px: the model's 72 px part is a re-drawing, not a correction
    d2 = correct_slice(decode, small, np.array([6, 18, 8, 20]), 40, 20)
    assert d2[20, 40] and not (d2 == part).all() and not (d2 & small).any()  # the disk edit


def test_model_rule_decodes_the_click_and_carries_it_while_neighbours_change(tiny, blob):
    """click_rule=model with the oracle decoder: a negative click inside the object is answered by
    the decoder (honoured, or the ball when not), and the result is the same through the session's
    driver (refine) as replayed from scratch."""
    vol, ref = blob
    pred = oracle_predictor(ref, tiny, click_rule="model")
    first = pred.predict(vol, ObjectPrompts(box=box_from_mask(ref)))
    click = Point((24.0, 20.0, 10.0), False)
    r = pred.predict(vol, ObjectPrompts(box=first.state.prompts.box, points=[click]), previous=first)
    assert r.info.mode == "refine" and not r.mask[24, 20, 10]
    again = oracle_predictor(ref, tiny, click_rule="model").predict(
        vol, ObjectPrompts(box=first.state.prompts.box, points=[click]))
    np.testing.assert_array_equal(again.mask, r.mask)
    pos = Point((24.0, 20.0, 10.0), True)  # back: the positive click restores the pixel
    r2 = pred.predict(vol, ObjectPrompts(box=first.state.prompts.box, points=[click, pos]), previous=r)
    assert r2.mask[24, 20, 10]


def test_model_rule_removes_the_clicked_error_through_the_slices_and_nothing_else(tiny, blob):
    """A false-positive block (x 4..9, y 3..8, slices 6..14) beside the object; the decoder (an
    oracle of the truth) is asked by a negative click in it on slice 10: the block goes on the
    clicked slice and on the neighbours within the error's reach (3 slices each way: the click's
    distance to the mask's edge), the object's voxels stay, and no slice outside the block
    changes."""
    vol, ref = blob
    extra = np.zeros_like(ref)
    extra[4:10, 3:9, 6:15] = True
    pred = oracle_predictor(ref | extra, tiny, click_rule="model")
    first = pred.predict(vol, ObjectPrompts(box=box_from_mask(ref | extra)))
    assert first.mask[extra].all()
    pred.reference = ref  # the click-trained decoder knows better than the box step
    r = pred.predict(vol, ObjectPrompts(box=first.state.prompts.box, points=[Point((7.0, 6.0, 10.0), False)]),
                     previous=first)
    changed = np.nonzero((r.mask != first.mask).any(axis=(0, 1)))[0].tolist()
    assert changed == list(range(7, 14))
    assert not (r.mask & extra)[:, :, 7:14].any() and r.mask[extra & (np.arange(20) == 6)].all()
    assert (r.mask[first.mask & ref]).all()  # one-sided and local: nothing of the object is cut


def test_bounded_change_keeps_a_one_sided_local_correction():
    from sam_med.predictors.slicewise.model_clicks import bounded_change

    old = np.zeros((30, 30), bool)
    old[5:25, 5:25] = True
    new = old.copy()
    new[5:10, 5:10] = False  # the clicked corner removed (25 px)
    new[20:25, 20:25] = False  # and an unrelated far corner (not asked for)
    new[0:3, 0:3] = True  # and an addition: a negative click never adds
    ch = bounded_change(old, new, 7, 7, False)
    assert ch.sum() == 25 and ch[7, 7] and not ch[22, 22] and not ch[1, 1]
    assert bounded_change(old, new, 22, 12, False) is None  # the proposal keeps the clicked pixel
    gone = np.zeros_like(old)
    gone[5:25, 5:8] = True
    ch = bounded_change(old, gone, 15, 20, False)  # a removal may take most of the slice (340 of 400 px)
    assert ch.sum() == 340 and not (ch & gone).any()
    assert bounded_change(old, gone, 6, 20, False) is None  # ... but must honour the click
    grow = old.copy()
    grow[25:28, 5:25] = True
    ch = bounded_change(old, grow, 10, 26, True)
    assert ch.sum() == 60 and not (ch & old).any()
    big = old.copy()
    big[0:30, 0:5] = True
    big[25:30, :] = True  # adds 275 px to 400: a redraw, refused
    assert bounded_change(old, big, 2, 2, True) is None


def test_a_click_model_with_another_encoder_is_refused(tiny, tmp_path):
    from _helpers import load_tiny_model
    from sam_med.predictors.base import OptionError
    from sam_med.predictors.slicewise import SliceWisePredictor

    other = load_tiny_model(tmp_path, name="tiny_other", seed=1)
    vol, ref = blob_volume(SHAPE, CENTER, RADII)
    pred = SliceWisePredictor(loaded=tiny, click_rule="model", click_model=other.name)
    first = pred.predict(vol, ObjectPrompts(box=box_from_mask(ref)))
    with pytest.raises(OptionError, match="image encoder differs"):
        pred.predict(vol, ObjectPrompts(box=first.state.prompts.box, points=[Point((24.0, 20.0, 10.0), False)]),
                     previous=first)


def test_a_config_click_model_that_does_not_fit_is_passed_over(tiny, tmp_path):
    """A config derived from LiteMedSAM's keeps its ``click_model:`` line; with another image
    encoder the model's own decoder answers clicks (an explicit option would be refused)."""
    import dataclasses

    from sam_med.predictors.slicewise import SliceWisePredictor
    from sam_med.predictors.slicewise.model_clicks import click_decoder

    derived = dataclasses.replace(tiny, config=dict(tiny.config, click_model="lite_medsam_clicks_hn_hippo2"))
    pred = SliceWisePredictor(loaded=derived, click_rule="model")
    assert click_decoder(pred) is None
    vol, ref = blob_volume(SHAPE, CENTER, RADII)
    first = pred.predict(vol, ObjectPrompts(box=box_from_mask(ref)))
    r = pred.predict(vol, ObjectPrompts(box=first.state.prompts.box, points=[Point((24.0, 20.0, 10.0), True)]),
                     previous=first)
    assert r.mask[24, 20, 10]


def test_lite_medsam_clicks_are_answered_by_its_click_trained_decoder():
    from sam_med.predictors.slicewise import SliceWisePredictor
    from sam_med.predictors.slicewise.model_clicks import click_decoder

    pred = SliceWisePredictor("lite_medsam", click_rule="model")
    dec = click_decoder(pred)
    assert dec is not None and dec.predictor.model.name == "lite_medsam_clicks_hn_hippo4"
    assert click_decoder(SliceWisePredictor("lite_medsam", click_rule="model", click_model="lite_medsam")) is None


def test_click_decoder_record_of_no_predictor_is_none():
    from sam_med.predictors.slicewise.model_clicks import click_decoder_record

    assert click_decoder_record(None) is None  # a Session saved without a predictor (hand-drawn masks)


def test_an_unknown_click_model_is_refused_before_any_work(tiny):
    from sam_med.predictors.base import OptionError
    from sam_med.predictors.slicewise import SliceWisePredictor

    with pytest.raises(OptionError, match="click_model=no_such_model: unknown model"):
        SliceWisePredictor(loaded=tiny, click_model="no_such_model")
