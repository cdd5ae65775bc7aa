"""Trainer: resume gives the same weights as an uninterrupted run; exports load by name."""

from __future__ import annotations

import torch

from sam_med.training import load_config, train
from _training import CASES, make_tiny_model, tiny_finetune_config


def _trainable(path):
    return torch.load(path, map_location="cpu", weights_only=True)["trainable"]


def test_resume_after_interruption_matches_uninterrupted(tmp_path, monkeypatch):
    monkeypatch.setenv("SAM_MED_CONFIGS", str(tmp_path / "models"))
    make_tiny_model(tmp_path / "models")
    full = train(load_config(data=tiny_finetune_config(tmp_path / "a")))
    assert full["steps"] == 4 and not full["stopped_early"]
    cfg = tiny_finetune_config(tmp_path / "b", checkpoint_every_steps=1)
    part = train(load_config(data=cfg, overrides=["stop_after_steps=3"]))  # "killed" mid epoch 2
    assert part["stopped_early"] and part["steps"] == 3
    ck = torch.load(tmp_path / "b" / "last.pt", map_location="cpu", weights_only=True)
    assert (ck["epoch"], ck["next_batch"], ck["step"]) == (1, 1, 3)
    resumed = train(load_config(data=cfg))
    assert resumed["steps"] == 4
    a, b = _trainable(tmp_path / "a" / "last.pt"), _trainable(tmp_path / "b" / "last.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # a changed config refuses to resume from that checkpoint
    try:
        train(load_config(data=cfg, overrides=["optim.lr=0.5"]))
    except Exception as e:
        assert "different settings" in str(e)
    else:  # pragma: no cover
        raise AssertionError("resume with other settings must fail")


def test_exported_models_load_by_name(tmp_path, monkeypatch):
    from sam_med.models import load_model
    from sam_med.models.registry import clear_model_cache
    from sam_med.predictors.factory import build_predictor

    models = tmp_path / "models"
    monkeypatch.setenv("SAM_MED_CONFIGS", str(models))
    make_tiny_model(models)
    for mode in ("decoder", "lora"):
        cfg = tiny_finetune_config(tmp_path / mode, mode=mode, export={"enabled": True},
                                   eval={"enabled": True, "train_before_after": False},
                                   data={"val_cases": [CASES[2]], "max_slices_per_case": 2},
                                   optim={"epochs": 1, "lr": 1e-2}, lora={"rank": 2},
                                   prompts={"click_prob": 0.0})
        s = train(load_config(data=cfg))
        e = s["export"]
        assert e["config"].startswith(str(models)) and e["weights"].startswith(str(models))
        assert s["dice_after"]["val"][CASES[2]] >= s["dice_before"]["val"][CASES[2]]  # best-on-held-out
        clear_model_cache()
        lm = load_model(f"tiny_ft_{mode}")
        base = load_model("tiny_sam")
        assert lm.config["base_model"]["name"] == "tiny_sam"
        assert lm.config["preprocessing"].__class__ is base.config["preprocessing"].__class__
        sd = torch.load(e["weights"], map_location="cpu", weights_only=True)
        if mode == "decoder":
            assert all(k.startswith("mask_decoder.") for k in sd)
        else:
            assert any(k.endswith("lora_A") for k in sd) and not any(".base." in k for k in sd)
        x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
        enc_ft, enc_base = lm.encode(x), base.encode(x)
        assert torch.equal(enc_ft, enc_base) == (mode == "decoder" or s["best_epoch"] == 0)
        pred = build_predictor(f"tiny_ft_{mode}", "cpu")
        assert pred.loaded.name == f"tiny_ft_{mode}"
