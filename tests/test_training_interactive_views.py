"""Click training v2 (issue #27): samples in the engine's zoom view, the base-decoder start, and
the shipped v2 weights. Tiny random model; seconds."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from _helpers import blob_volume, load_tiny_model
from sam_med.errors import SamMedError
from sam_med.training.interactive import interactive_options


class _Case:
    """The part of an EvalCase that click_data reads: an image + label map in memory."""

    def __init__(self, image, label, names):
        self.case_id, self._image, self._label, self._names = "blob", image, label, names

    def load(self):
        return self._image, self._label

    def objects(self, label):
        return list(self._names.items())


def _scan(shape=(96, 80, 9)):
    from sam_med.volume import Volume

    vol, inside = blob_volume(shape=shape, center=(30, 40, 4), radii=(8, 6, 3))
    lab = inside.astype(np.int16)
    lab[70:90, 5:75, 2:7] = 2  # a large object: its zoom crop covers the plane -> no zoom sample
    return vol, Volume(lab, vol.affine, modality="CT", slice_axis=vol.slice_axis), lab


def test_zoom_samples_are_cut_to_the_engines_crop(tmp_path):
    from sam_med.predictors.slicewise import SliceWisePredictor
    from sam_med.predictors.slicewise.views import choose_crop
    from sam_med.training.click_data import load_click_cases, samples_of
    from sam_med.training.click_views import cut_to_crop, object_extent

    lm = load_tiny_model(tmp_path / "models")
    vol, labvol, lab = _scan()
    pred = SliceWisePredictor(loaded=lm)
    case = _Case(vol, labvol, {1: "blob", 2: "slab"})
    got = load_click_cases([case], pred, 2, source="t", view="zoom", zoom={"extent": "slice"})
    assert got and all(c.view == "zoom" and c.names == {1: "blob"} for c in got)  # the slab gives no zoom sample
    geo = pred.geometry(vol)
    for c in got:
        (k, v), (prev, cur, nxt) = next(iter(c.labels.items()))
        crop = c.crops[k]
        plane = geo.slice_of(lab == v, k)
        assert crop == choose_crop(pred.options, object_extent(geo, lab == v, k, "slice"), geo.hw, from_points=False)
        assert cur.shape == (crop[3] - crop[1] + 1, crop[2] - crop[0] + 1) == c.hw
        assert np.array_equal(cur, plane[crop[1]:crop[3] + 1, crop[0]:crop[2] + 1])
        assert cur.sum() == plane.sum()  # the whole object lies in its crop
        assert np.array_equal(prev, cut_to_crop(geo.slice_of(lab == v, k - 1), crop))
        # the embedding is the engine's, in that view (same cache key: no new encode)
        emb = pred.embeddings(geo, [k], crop=crop)[k]
        assert torch.allclose(c.embeddings[k].float(), emb.reshape(c.embeddings[k].shape).float(), atol=1e-2)
    # "both": the whole-slice samples as well, one per object and slice
    both = load_click_cases([case], pred, 2, source="t", view="both", zoom={"extent": "volume"})
    views = sorted({c.view for c in both})
    assert views == ["whole", "zoom"]
    whole = [c for c in both if c.view == "whole"][0]
    assert {v for _k, v in whole.labels} == {1, 2} and len(samples_of(both)) > len(samples_of([whole]))
    # volume extent = the 3D box's in-plane projection (the engine's bound2d of a 3D box prompt)
    e = object_extent(geo, lab == 1, 0, "volume")
    i, j, _ = np.nonzero(lab == 1)
    assert list(e) == [i.min(), j.min(), i.max(), j.max()]


def test_click_set_view_keys_are_checked():
    from sam_med.training.click_data import parse_click_sets

    ok = parse_click_sets([{"name": "z", "dataset": "a.csv", "view": "zoom", "max_objects": 2, "jitter": True}])
    assert ok[0]["view"] == "zoom"
    for bad in ({"view": "crop"}, {"extent": "box"}):
        with pytest.raises(SamMedError):
            parse_click_sets([dict({"name": "z", "dataset": "a.csv"}, **bad)])


def test_base_start_option_is_parsed_and_used(tmp_path):
    """``base_start``: the box round is the frozen base's (no loss there); its logits are the
    first click round's dense prompt."""
    from sam_med.training.interactive import SampleBatch, run_rounds
    from test_training_interactive import _case

    o = interactive_options({"interactive": {"base_start": 0.5, "val_base_start": True}})
    assert o["base_start"] == 0.5 and o["val_base_start"] is True
    for bad in ({"base_start": 1.5}, {"val_base_start": "yes"}):
        with pytest.raises(SamMedError):
            interactive_options({"interactive": bad})
    lm = load_tiny_model(tmp_path / "models")
    model = copy.deepcopy(lm.model)
    with torch.no_grad():  # make the trained decoder differ from the base
        for p in model.mask_decoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    c = _case(0)
    o = dict(o, mask_prompt=True, margin=3, neighbour_box=0.0)

    def first_round(base):
        batch = SampleBatch([(c, 3, 1)], lm, o, np.random.default_rng(0), torch.device("cpu"), starts=["jitter"])
        seen = []
        run_rounds(model, batch, o, 1, 0, train=False, on_round=lambda r, src: seen.append(src[0].clone()), base=base)
        return seen

    with torch.no_grad():
        batch = SampleBatch([(c, 3, 1)], lm, o, np.random.default_rng(0), torch.device("cpu"), starts=["jitter"])
        ref, _ = lm.model.decode(batch.emb, boxes=batch.boxes)
        ref = batch.to_source(ref[:, :1])[0]
    by_base, own = first_round(lm.model), first_round(None)
    assert torch.allclose(by_base[0], ref, atol=1e-5) and not torch.allclose(own[0], ref, atol=1e-3)
    # training: a base-start sample grades only the model's rounds and its gradient reaches the decoder
    batch = SampleBatch([(c, 3, 1)], lm, o, np.random.default_rng(0), torch.device("cpu"), starts=["jitter"])
    for p in model.parameters():
        p.requires_grad_(True)
    loss = run_rounds(model, batch, o, 2, 0, train=True, graded=[1, 2], base=lm.model)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.mask_decoder.parameters())
    assert all(p.grad is None for p in lm.model.parameters())
