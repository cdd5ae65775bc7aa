"""Click-aware fine-tuning: multi-source slices and the iterative-click training step.

The training step runs the real LiteMedSAM decoder on two cached ct_lesion slices (the
session's on-disk embedding store), so it takes seconds once the embeddings exist.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam_med.errors import SamMedError
from sam_med.training import load_config
from sam_med.training.prompts import corrective_click_2d
from sam_med.training.sources import check_disjoint, extract_source_slices, parse_sources, plan_slices
from _training import CASES, CT_LESION


def test_corrective_click_sign_and_place():
    ref = np.zeros((40, 40), bool)
    ref[10:30, 10:30] = True
    miss = ref.copy()
    miss[10:30, 20:30] = False  # right half missed -> positive click there
    x, y, pos = corrective_click_2d(miss, ref, center=True)
    assert pos and ref[y, x] and not miss[y, x] and 20 <= x < 30
    over = ref.copy()
    over[30:38, 5:35] = True  # a band below -> negative click in it
    x, y, pos = corrective_click_2d(over, ref, center=True)
    assert not pos and over[y, x] and not ref[y, x] and 30 <= y < 38
    rng = np.random.default_rng(0)
    for _ in range(20):  # random placement stays in the largest error component
        x, y, pos = corrective_click_2d(miss, ref, rng, center=False)
        assert pos and 20 <= x < 30 and 10 <= y < 30
    assert corrective_click_2d(ref, ref) is None


def test_plan_slices_cap_keeps_largest():
    from sam_med.predictors.planes import PlaneGeometry

    ref = np.zeros((8, 8, 20), bool)
    for k in range(2, 18):
        r = 1 + min(k - 2, 17 - k) // 2
        ref[4 - r:4 + r, 4 - r:4 + r, k] = True
    ks, kmax = plan_slices(ref, PlaneGeometry(2, ref.shape), cap=4, min_area=1)
    assert len(ks) == 4 and kmax in ks and all(2 <= k <= 17 for k in ks)
    ks_all, _ = plan_slices(ref, PlaneGeometry(2, ref.shape), cap=None, min_area=1)
    assert ks_all == list(range(2, 18))


def test_sources_heldout_disjoint_and_isotropic_planes(lite_medsam, data_dir):
    ts = {"image": str(data_dir / "totalseg/example_ct_sm.nii.gz"),
          "label": str(data_dir / "totalseg/example_seg.nii.gz")}
    train = parse_sources([{"name": "a", **ts, "labels": [1, 2]}])
    check_disjoint(train, parse_sources([{"name": "b", **ts, "labels": [3]}]))
    with pytest.raises(SamMedError, match="held-out"):
        check_disjoint(train, parse_sources([{"name": "b", **ts, "labels": [2, 3]}]))
    with pytest.raises(SamMedError, match="held-out"):
        check_disjoint(train, parse_sources([{"name": "b", **ts}]))  # all labels of that image
    with pytest.raises(SamMedError, match="unknown keys"):
        parse_sources([{"name": "a", **ts, "axis": 1}])
    # a sagittal cut of 5 mm CT slices becomes square pixels; copies flip the label too
    spec = parse_sources([{"name": "l", "dataset": str(CT_LESION), "cases": [CASES[1]], "axes": [0, 2],
                           "slices_per_object": 1, "zoom": "never", "copies": [{"flip": True}]}])
    items = extract_source_slices(spec, lite_medsam, with_embeddings=False)
    assert [(it["axis"], it["copy"]) for it in items] == [(0, ""), (0, "flip=True"), (2, ""), (2, "flip=True")]
    sag, ax = items[0], items[2]
    assert sag["image"].shape[1:] == (round(13 * 5 / 0.97656202), 512) and ax["image"].shape[1:] == (512, 512)
    assert np.array_equal(items[1]["label"], items[0]["label"][:, :, ::-1])
    assert sag["largest"] and ax["largest_acq"] and not sag["largest_acq"]


@pytest.fixture(scope="module")
def click_trainer(lite_medsam, embedding_cache_dir, tmp_path_factory):
    from sam_med.training.trainer import Trainer

    cfg = load_config(data={
        "name": "test_clicks", "base_model": "lite_medsam", "mode": "decoder", "train_prompt_encoder": True,
        "seed": 0, "num_threads": 1,
        "data": {"embedding_cache_dir": str(embedding_cache_dir),
                 "sources": [{"name": "lesion", "dataset": str(CT_LESION), "cases": [CASES[1]], "axes": [2],
                              "slices_per_object": 2}]},
        "prompts": {"iterative": True, "click_prob": 1.0, "max_clicks": 3, "click_point": "mixed"},
        "optim": {"lr": 3e-4, "batch_size": 2, "epochs": 1},
        "eval": {"enabled": False}, "export": {"enabled": False},
        "out_dir": str(tmp_path_factory.mktemp("clicks"))})
    tr = Trainer(cfg, log=lambda *_: None)
    tr.setup()
    return tr


def test_iterative_click_step_deterministic_and_signed(click_trainer):
    tr = click_trainer
    assert len(tr.items) == 2 and tr.n_trainable > 4_000_000
    assert any(n.startswith("prompt_encoder.") for n, p in tr.model.named_parameters() if p.requires_grad)
    assert not any(p.requires_grad for p in tr.model.image_encoder.parameters())
    for idx in range(2):
        l1, c1, per1 = tr._iterative_loss(idx, 0)
        l2, c2, per2 = tr._iterative_loss(idx, 0)
        assert torch.equal(l1.detach(), l2.detach()) and c1 == c2 and per1 == per2  # seeded
        assert len(per1) == len(c1) + 1 and 1 <= len(c1) <= 3  # a loss at every iteration
        assert np.isfinite(per1).all()
        lab = tr.data[idx]["label"][0].numpy() > 0.5
        for x, y, pos in c1:  # positive exactly where the label is (a miss), negative outside
            assert lab[y, x] == pos
    # other epochs draw other prompts
    assert any(tr._iterative_loss(i, 1)[2] != tr._iterative_loss(i, 0)[2] for i in range(2))


def test_iterative_click_training_lowers_loss(click_trainer):
    tr = click_trainer
    state = {n: p.detach().clone() for n, p in tr.model.named_parameters() if p.requires_grad}
    try:
        losses = []
        for _step in range(5):  # a fixed batch: both slices, epoch 0 prompts
            tr.opt.zero_grad(set_to_none=True)
            tot = 0.0
            for idx in range(2):
                loss = tr._iterative_loss(idx, 0)[0] / 2
                loss.backward()
                tot += float(loss.detach())
            tr.opt.step()
            losses.append(tot)
        assert np.isfinite(losses).all()
        assert losses[-1] < losses[0] - 0.01, losses
    finally:
        with torch.no_grad():
            for n, p in tr.model.named_parameters():
                if n in state:
                    p.copy_(state[n])


def test_cosine_schedule_is_plain_float_and_checkpointable(tmp_path):
    from types import SimpleNamespace

    from sam_med.training.trainer import Trainer

    p = torch.nn.Parameter(torch.zeros(2))
    ns = SimpleNamespace(cfg={"optim": {"lr": 1e-3, "schedule": "cosine", "warmup_steps": 2}},
                         opt=torch.optim.AdamW([p], lr=1e-3))
    lrs = []
    for step in range(10):
        Trainer._set_lr(ns, step, 10)
        lrs.append(ns.opt.param_groups[0]["lr"])
    assert all(type(v) is float for v in lrs)
    assert lrs[:3] == [5e-4, 1e-3, 1e-3] and all(a > b for a, b in zip(lrs[2:], lrs[3:])) and lrs[-1] < 1e-4
    torch.save({"optimizer": ns.opt.state_dict()}, tmp_path / "o.pt")  # resume reads weights_only=True
    assert torch.load(tmp_path / "o.pt", weights_only=True)["optimizer"]["param_groups"][0]["lr"] == lrs[-1]
