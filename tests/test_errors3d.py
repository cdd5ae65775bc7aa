"""Training samples from the predictor's own 3D errors (sam_med/training/errors3d.py) and the
refinement model option (slicewise/refine.py), on the tiny model and an oracle decoder whose
errors are known."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from _helpers import blob_volume, oracle_predictor
from sam_med.evaluation.cvpr25.clicks import largest_error_component, next_click
from sam_med.predictors.planes import PlaneGeometry
from sam_med.training.errors3d import click_dice, edit_dice, errors3d_loss, object_samples, refine_rule_dice

SHAPE, CENTER, RADII = (48, 40, 20), (24, 20, 10), (9, 7, 4)


@pytest.fixture(scope="module")
def case():
    vol, gt = blob_volume(SHAPE, CENTER, RADII)
    seen = gt.copy()
    seen[28:, :, :] = False          # a large missed cap (slices 6..14) ...
    seen[15:18, 18:23, 10] = False   # ... and a small missed piece, not connected to it
    return vol, gt, seen


def _samples(tiny, case, rounds=2):
    vol, gt, seen = case
    pred = oracle_predictor(seen, tiny)
    return pred, object_samples(pred, vol, gt, "blob:1", rounds=rounds, neighbours=1)


@pytest.fixture(scope="module")
def made(tiny, case):
    return _samples(tiny, case)


def test_the_click_lands_in_the_largest_error_component_at_the_right_pixel(tiny, case, made):
    vol, gt, seen = case
    pred, items = made
    from sam_med.prompts import ObjectPrompts
    from sam_med.training.errors3d import _key_box

    first = oracle_predictor(seen, tiny).predict(vol, ObjectPrompts(key_box=_key_box(gt, "blob:1")))
    click = next_click(first.mask.transpose(2, 1, 0), gt.transpose(2, 1, 0))
    z, y, x = click.zyx
    comp = largest_error_component(first.mask.transpose(2, 1, 0), gt.transpose(2, 1, 0)).transpose(2, 1, 0)
    assert comp[28:].sum() == comp.sum() and comp[x, y, z]  # the cap, not the small piece
    assert click.kind == "fg" and x >= 28
    r0 = [it for it in items if it["round"] == 0]
    assert sorted(it["dz"] for it in r0) == [-1, 0, 1]  # the cap continues on both neighbours
    it = next(i for i in r0 if i["dz"] == 0)
    assert it["slice"] == z and it["axis"] == 2
    geo = PlaneGeometry(2, vol.shape)
    x0, y0 = (0, 0) if it["crop"] is None else it["crop"][:2]
    cx, cy, pos = it["clicks3d"][-1]
    assert (cx + x0, cy + y0, pos) == (x, y, True)
    assert it["label"][0, cy, cx] == 1 and it["mask"][0, cy, cx] == 0  # a miss, on that pixel
    crop = it["crop"]
    win = (slice(y0, None if crop is None else crop[3] + 1), slice(x0, None if crop is None else crop[2] + 1))
    np.testing.assert_array_equal(it["label"][0], geo.slice_of(gt, z)[win])
    np.testing.assert_array_equal(it["image"][0], pred.slice_image(geo, z, crop))
    assert it["embedding"].shape[0] == 256
    bx = it["box"]
    assert 0 <= bx[0] <= bx[2] < it["label"].shape[2] and 0 <= bx[1] <= bx[3] < it["label"].shape[1]
    for nb in r0:  # a neighbour's click is the same in-plane pixel, still in the error there
        assert nb["clicks3d"][-1][:2] == (cx, cy) and nb["label"][0, cy, cx] == 1 and nb["mask"][0, cy, cx] == 0
    # round 1 starts from round 0's result: the clicked slice now holds the round-0 click
    r1 = [i for i in items if i["round"] == 1 and i["slice"] == z]
    assert all(len(i["clicks3d"]) == 2 and i["clicks3d"][0] == (cx, cy, True) for i in r1)


def test_samples_are_deterministic(tiny, case, made):
    a = made[1]
    _, b = _samples(tiny, case)
    assert len(a) == len(b) > 3
    for p, q in zip(a, b):
        assert (p["slice"], p["round"], p["dz"], p["clicks3d"]) == (q["slice"], q["round"], q["dz"], q["clicks3d"])
        for k in ("image", "label", "mask", "box"):
            np.testing.assert_array_equal(p[k], q[k])
        assert torch.equal(p["embedding"], q["embedding"])


def test_loss_trains_the_decoder_and_dice_helpers(tiny, made):
    from monai.losses import DiceCELoss

    items = made[1]
    import copy
    model = copy.deepcopy(tiny.model)
    for p in model.mask_decoder.parameters():
        p.requires_grad_(True)
    tr = SimpleNamespace(items=items, model=model, lm=tiny, device=torch.device("cpu"),
                         loss_fn=DiceCELoss(sigmoid=True), cfg={"prompts": {"click_mask_input": False}})
    for mp in (False, True):  # box + clicks, and + the mask as the dense prompt
        tr.cfg["prompts"]["click_mask_input"] = mp
        model.zero_grad()
        loss = errors3d_loss(tr, 0)
        assert loss.ndim == 0 and torch.isfinite(loss)
        loss.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.mask_decoder.parameters())
    d = click_dice(tiny.model, tiny, items)
    before, after = edit_dice(items)
    assert d.shape == before.shape == after.shape == (len(items),)
    assert ((0 <= d) & (d <= 1)).all() and (after >= before - 1e-9).mean() > 0.5  # the edit mostly helps
    rule, kept = refine_rule_dice(tiny.model, tiny, items)
    assert rule.shape == kept.shape == (len(items),)
    assert np.allclose(rule[~kept], after[~kept])  # a decode not kept: the disk edit


def test_errors3d_source_keys(tmp_path):
    from sam_med.errors import SamMedError
    from sam_med.training.sources import parse_sources

    spec = parse_sources([{"name": "a", "image": "x.nii.gz", "label": "y.nii.gz", "clicks": "errors3d",
                           "click_rounds": 3, "neighbours": 2}])[0]
    assert (spec.clicks, spec.click_rounds, spec.neighbours) == ("errors3d", 3, 2)
    with pytest.raises(SamMedError, match="clicks must be errors3d"):
        parse_sources([{"name": "a", "image": "x.nii.gz", "clicks": "2d"}])


def test_mask_logits_maps_the_mask_like_the_image(tiny):
    from sam_med.masks import mask_logits

    m = np.zeros((60, 80), bool)
    m[10:30, 20:50] = True  # 20 x 30 px of 60 x 80 -> x 3.2 on the 256 grid (192 x 256 valid)
    t = mask_logits(m, tiny.preprocess, (64, 64))
    assert t.shape == (1, 1, 256, 256) and set(torch.unique(t).tolist()) == {-4.0, 4.0}
    assert int((t > 0).sum()) == 64 * 96 and not (t[0, 0, 192:] > 0).any()  # padding is background
    small = mask_logits(m, tiny.preprocess_at(128), (32, 32))  # a reduced view: 4 x its embedding
    assert small.shape == (1, 1, 128, 128) and int((small > 0).sum()) == 32 * 48
