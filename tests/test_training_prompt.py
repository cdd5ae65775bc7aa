"""Prompt-tuning mode (sam_med.training.prompt_tuning): only the tokens train, the export loads
back to the same logits, and a checkpoint that does not fit its config's tokens is refused."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from sam_med.errors import CheckpointError, SamMedError
from sam_med.training import load_config
from sam_med.training.trainable import set_trainable, trainable_parameters
from _training import build_tiny, make_tiny_model, tiny_finetune_config

BOX = torch.tensor([[40.0, 50.0, 150.0, 170.0], [90.0, 30.0, 200.0, 120.0]])


def _emb(model):
    """Random image embeddings ``(2, 256, h, w)`` on ``model``'s embedding grid."""
    h, w = model.prompt_encoder.image_embedding_size
    return torch.randn(2, 256, h, w, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("dense_bias", [False, True])
def test_only_the_prompt_tokens_get_gradients(dense_bias):
    model = build_tiny()
    base = {k: v.clone() for k, v in model.state_dict().items()}
    set_trainable(model, "prompt", prompt_cfg={"tokens": 5, "dense_bias": dense_bias}, seed=1)
    names = [n for n, _ in trainable_parameters(model)]
    assert names == ["prompt_tuning.tokens"] + (["prompt_tuning.dense_bias"] if dense_bias else [])
    assert tuple(model.prompt_tuning.tokens.shape) == (5, 256)
    # the tokens start at the padding-point embedding + small noise, distinct from each other
    pad = model.prompt_encoder.not_a_point_embed.weight
    assert (model.prompt_tuning.tokens - pad).abs().max() < 0.2
    assert torch.unique(model.prompt_tuning.tokens, dim=0).shape[0] == 5
    pts = torch.tensor([[[100.0, 100.0]], [[120.0, 60.0]]])
    logits, _ = model.decode(_emb(model), boxes=BOX, points=pts, point_labels=torch.ones(2, 1, dtype=torch.int64))
    logits.float().pow(2).mean().backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None}
    assert grads == set(names)
    assert all(float(p.grad.abs().sum()) > 0 for _, p in trainable_parameters(model))
    plain = {k: v for k, v in model.state_dict().items() if not k.startswith("prompt_tuning.")}
    assert plain.keys() == base.keys() and all(torch.equal(plain[k], base[k]) for k in base)


def test_config_checks_for_prompt_mode(tmp_path):
    cfg = load_config(data=tiny_finetune_config(tmp_path, mode="prompt"))
    assert cfg["prompt_tuning"]["tokens"] == 8 and cfg["prompt_tuning"]["dense_bias"] is False
    with pytest.raises(SamMedError, match="train_prompt_encoder"):
        load_config(data=tiny_finetune_config(tmp_path, mode="prompt", train_prompt_encoder=True))
    with pytest.raises(SamMedError, match="tokens must be >= 1"):
        load_config(data=tiny_finetune_config(tmp_path, mode="prompt", prompt_tuning={"tokens": 0}))
    with pytest.raises(SamMedError, match="unknown keys"):
        load_config(data=tiny_finetune_config(tmp_path, mode="prompt", prompt_tuning={"tokns": 4}))
    with pytest.raises(SamMedError, match="already has prompt tokens"):
        m = build_tiny()
        set_trainable(m, "prompt")
        set_trainable(m, "prompt")


def _rewrite(cfg_path, out_path, weights, **changes):
    """A copy of an exported model config pointing at ``weights`` (sha256 updated)."""
    from sam_med.models.checkpoint import sha256_file

    d = yaml.safe_load(cfg_path.read_text())
    d["name"] = out_path.stem
    d["checkpoint"] = dict(d["checkpoint"], path=str(weights), file_name=weights.name, sha256=sha256_file(weights))
    for k, v in changes.items():
        if v is None:
            d.pop(k, None)
        else:
            d[k] = v
    out_path.write_text(yaml.safe_dump(d, sort_keys=False))
    return out_path


def test_prompt_export_round_trip_and_refusals(tmp_path, monkeypatch):
    from sam_med.models import load_model
    from sam_med.models.registry import clear_model_cache
    from sam_med.predictors.factory import build_predictor
    from sam_med.training.trainer import Trainer

    models = tmp_path / "models"
    monkeypatch.setenv("SAM_MED_CONFIGS", str(models))
    make_tiny_model(models)
    cfg = load_config(data=tiny_finetune_config(tmp_path / "run", mode="prompt", export={"enabled": True},
                                                data={"max_slices_per_case": 2}, optim={"epochs": 1, "lr": 1e-2},
                                                prompt_tuning={"tokens": 4, "dense_bias": True}))
    tr = Trainer(cfg, log=lambda *_: None)
    s = tr.run()
    assert s["trainable_params"] == 4 * 256 + 256
    assert tr.cached  # frozen encoder: the slices were encoded once into the cache
    # training moved the tokens and nothing else
    base_lm = load_model("tiny_sam")
    for n, p in tr.model.named_parameters():
        if not n.startswith("prompt_tuning."):
            assert torch.equal(p, dict(base_lm.model.named_parameters())[n]), n
    assert not torch.equal(tr.model.prompt_tuning.tokens, tr.init_trainable["prompt_tuning.tokens"])

    e = s["export"]
    sd = torch.load(e["weights"], map_location="cpu", weights_only=True)
    assert sorted(sd) == ["prompt_tuning.dense_bias", "prompt_tuning.tokens"]
    clear_model_cache()
    lm = load_model("tiny_ft_prompt")
    assert lm.config["delta"]["kind"] == "prompt"
    assert lm.config["prompt_tuning"] == {"tokens": 4, "dense_bias": True}
    assert lm.encoder_signature() == base_lm.encoder_signature()  # embeddings shared with the base
    emb = _emb(base_lm.model)
    with torch.no_grad():
        want, want_iou = tr.model.decode(emb, boxes=BOX)
    got, got_iou = lm.decode(emb, boxes=BOX)
    assert torch.equal(got, want) and torch.equal(got_iou, want_iou)
    assert not torch.equal(got, base_lm.decode(emb, boxes=BOX)[0])
    pred = build_predictor("tiny_ft_prompt", "cpu")  # what sam-med segment --model and napari use
    assert pred.loaded.model.prompt_tuning is not None

    cfg_path = models / "tiny_ft_prompt.yaml"
    # a checkpoint without the tokens, for a config that names them
    empty = tmp_path / "no_tokens.pt"
    torch.save({"mask_decoder.iou_token.weight": base_lm.model.mask_decoder.iou_token.weight.clone()}, empty)
    bad = _rewrite(cfg_path, models / "bad_missing.yaml", empty)
    with pytest.raises(CheckpointError, match=r"names 4 prompt tokens .* lacks \['prompt_tuning.dense_bias', "
                                              r"'prompt_tuning.tokens'\]"):
        load_model(str(bad))
    # the tokens of another shape (config says 6)
    bad = _rewrite(cfg_path, models / "bad_shape.yaml", models / "tiny_ft_prompt.pt",
                   prompt_tuning={"tokens": 6, "dense_bias": True})
    with pytest.raises(CheckpointError, match="shape"):
        load_model(str(bad))
    # tokens in the checkpoint, but a config without the section
    bad = _rewrite(cfg_path, models / "bad_section.yaml", models / "tiny_ft_prompt.pt", prompt_tuning=None)
    with pytest.raises(CheckpointError, match="no prompt_tuning section"):
        load_model(str(bad))


def test_finetune_from_folder_in_prompt_mode(tmp_path, data_dir, tiny, capsys, monkeypatch):
    """``sam-med finetune --from DIR --mode prompt``: the config (CLI), then a short run through
    the promotion (tiny model): the report, and the embeddings shared with the base."""
    from sam_med.cli import main
    from sam_med.dataengine.finetune_from import build_config, run_from
    from test_dataengine_promote import _accept

    folder = tmp_path / "site"
    t = data_dir / "totalseg"
    _accept(folder, t / "example_ct_sm.nii.gz", t / "example_seg.nii.gz", tmp_path / "scans", {1: "spleen", 5: "liver"})
    _accept(folder, t / "example_mr_sm.nii.gz", t / "example_seg_mr.nii.gz", tmp_path / "scans",
            {1: "spleen", 2: "kidney_right", 5: "liver"})
    monkeypatch.setenv("SAM_MED_CONFIGS", str(tmp_path / "models"))
    assert main(["finetune", "--from", str(folder), "--mode", "prompt", "--base", tiny.name, "--print-config",
                 "prompt_tuning.tokens=4"]) == 0
    cfg = json.loads(capsys.readouterr().out)["config"]
    assert (cfg["mode"], cfg["train_prompt_encoder"], cfg["optim"]["lr"]) == ("prompt", False, 1e-3)
    assert cfg["prompt_tuning"]["tokens"] == 4

    cfg, info = build_config(folder, name="tiny_site_prompt", base=tiny.name, mode="prompt", epochs=1, overrides=[
        "from.axes=[2]", "from.slices_per_object=1", "from.eval_clicks=1", "from.bootstrap=200",
        f"out_dir={tmp_path / 'ft'}", f"export.models_dir={tmp_path / 'models'}", "num_threads=1",
        "optim.lr=1e-2", "progress=false"])
    res = run_from(cfg, info, log=lambda *_: None)
    s, rep = res["summary"], res["promotion"]
    assert s["mode"] == "prompt" and s["trainable_params"] == 8 * 256
    assert rep["mode"] == "prompt" and isinstance(rep["promoted"], bool) and rep["reason"]
    assert (tmp_path / "ft" / "promotion.md").is_file()


def test_prompt_mode_best_epoch_0_is_the_base_itself(tmp_path, monkeypatch):
    """When no epoch beats the base, the final evaluation is the base's own (the initial tokens
    are not the identity) and nothing is exported."""
    from sam_med.training import train
    from _training import CASES

    monkeypatch.setenv("SAM_MED_CONFIGS", str(tmp_path / "models"))
    make_tiny_model(tmp_path / "models")
    cfg = tiny_finetune_config(tmp_path / "run", mode="prompt", export={"enabled": True},
                               eval={"enabled": True, "train_before_after": False},
                               data={"val_cases": [CASES[2]], "max_slices_per_case": 1},
                               optim={"epochs": 0}, prompt_tuning={"tokens": 8, "init_std": 1.0})
    s = train(load_config(data=cfg), log=lambda *_: None)  # no epoch: epoch 0 (the base) is selected
    assert s["best_epoch"] == 0
    assert s["dice_after"]["val"] == s["dice_before"]["val"]
    assert "export" not in s and not (tmp_path / "models" / "tiny_ft_prompt.pt").exists()
