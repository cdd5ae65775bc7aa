"""Refinement click rules on a synthetic blob (tiny random encoder + oracle decoder; no
weights, no shared data): ``edit`` (default) changes only the clicked slice; ``carry``
removes a leak the model confirms, slice by slice, and leaves the object alone."""

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


def test_correct_slice_takes_only_the_change_under_the_click():
    """A leak (a second blob joined to the object by a bridge): the negative click in it
    removes the leak the model drops when the box side moves past the click, not the object."""
    obj = np.zeros((40, 60), bool)
    obj[10:30, 5:25] = True
    leak = np.zeros_like(obj)
    leak[14:26, 35:55] = True
    bridge = np.zeros_like(obj)
    bridge[18:22, 25:35] = True
    mask = obj | leak | bridge

    def decode(box):  # the model: what of (object + leak + bridge) lies in the box
        m = np.zeros_like(mask)
        m[box[1]:box[3] + 1, box[0]:box[2] + 1] = True
        return SliceOut(m & mask, None, np.asarray(box))

    delta, by_model = correct_slice(decode, mask, np.array([5, 10, 54, 29]), 45, 20, False, margin=3)
    assert by_model and delta[20, 45] and not (delta & obj).any()
    assert correct_slice(decode, mask, np.array([5, 10, 54, 29]), 10, 20, True, margin=3) is None  # agrees


def test_carry_rule_removes_a_leak_on_the_slices_it_spread_to(tiny):
    """The reference has a leak-free object; the first run's masks hold a leak on slices
    9..11 (the oracle answers what the box touches, and the box there reaches the leak)."""
    vol, ref = blob_volume(SHAPE, CENTER, RADII)
    leaky = ref.copy()
    leaky[36:44, 16:24, 9:12] = True  # a blob beside the object on slices 9..11 ...
    leaky[32:37, 19:22, 9:12] = True  # ... joined to it
    pred = oracle_predictor(leaky, tiny, click_rule="carry")
    first = pred.predict(vol, ObjectPrompts(box=box_from_mask(leaky)))
    assert first.mask[40, 20, 9] and first.mask[40, 20, 11]
    pred.reference = ref  # the model "sees" the leak is not the object once the box moves off it
    r = pred.predict(vol, ObjectPrompts(box=first.state.prompts.box, points=[Point((40.0, 20.0, 10.0), False)]),
                     previous=first)
    assert not r.mask[36:44, 16:24, 9:12].any()  # the leak is gone on its three slices
    np.testing.assert_array_equal(r.mask[:, :, :9], first.mask[:, :, :9])  # the rest untouched
    np.testing.assert_array_equal(r.mask[:, :, 12:], first.mask[:, :, 12:])
    assert (r.mask & ref).sum() >= 0.97 * ref.sum()
