"""SAM-Med3D checkpoints: architecture matches the reference JSON exactly; strict, safe loading."""

from __future__ import annotations

import argparse
import collections
import json

import pytest
import torch

from sam_med.errors import CheckpointError
from sam_med.models.sam3d import Sam3DConfig, build_sam3d, load_sam3d
from sam_med.models.sam3d.checkpoint3d import read_state_dict


@pytest.fixture(scope="module")
def reference(reference_dir):
    return json.loads((reference_dir / "sam_med3d_turbo.json").read_text())


@pytest.fixture(scope="module")
def full_model():
    return build_sam3d(Sam3DConfig())


@pytest.fixture(scope="module")
def random_sd(reference):
    """A random state dict shaped exactly like the reference JSON (made once: 100 M values)."""
    g = torch.Generator().manual_seed(0)
    return {k: torch.rand(shape, generator=g) for k, shape in reference["state_dict"].items()}


def test_architecture_matches_reference(full_model, reference):
    sd = full_model.state_dict()
    assert list(sd) == list(reference["state_dict"])  # same keys, same order
    assert {k: list(v.shape) for k, v in sd.items()} == reference["state_dict"]
    assert sum(p.numel() for p in full_model.parameters()) == reference["num_params"]
    buffers = [k for k in sd if k not in dict(full_model.named_parameters())]
    assert buffers == reference["buffer_keys_in_state_dict"]


@pytest.mark.parametrize("container", ["official", "bare"])
def test_strict_load_random_reference_state_dict(tmp_path, random_sd, container):
    sd = random_sd
    if container == "official":  # what SAM-Med3D's train.py writes
        obj = {"epoch": 3, "model_state_dict": sd,
               "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 8e-5, "params": [0, 1]}]},
               "lr_scheduler_state_dict": {"milestones": collections.Counter({120: 1, 180: 1}), "gamma": 0.1},
               "losses": [0.9, 0.7], "dices": [0.1, 0.4], "best_loss": 0.7, "best_dice": 0.4,
               "args": argparse.Namespace(task_name="turbo", model_type="vit_b_ori", lr=8e-5, img_size=128),
               "used_datas": ["ct_x", "mr_y"]}
    else:
        obj = sd
    path = tmp_path / "sam_med3d_turbo.pth"
    torch.save(obj, path)
    model = load_sam3d(path)
    got = model.state_dict()
    for k in ("image_encoder.pos_embed", "image_encoder.blocks.11.attn.rel_pos_w",
              "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix", "mask_decoder.mask_tokens.weight"):
        assert torch.equal(got[k], sd[k])
    # also found through $SAM_MED_CHECKPOINTS by file name
    assert read_state_dict(path).keys() == sd.keys()


def _small_sd():
    return build_sam3d(Sam3DConfig.small()).state_dict()


SMALL = {"name": "tiny3d", "dims": 3, "architecture": "sam_med3d",
         "architecture_args": Sam3DConfig.small().__dict__, "checkpoint": {"file_name": "tiny.pth"}}


def test_wrong_shape_and_keys_are_refused(tmp_path):
    sd = _small_sd()
    sd["image_encoder.blocks.0.attn.rel_pos_d"] = torch.zeros(5, 24)   # wrong shape
    del sd["mask_decoder.iou_token.weight"]                             # missing
    sd["mask_decoder.extra.weight"] = torch.zeros(3)                    # unexpected
    torch.save(sd, tmp_path / "tiny.pth")
    with pytest.raises(CheckpointError) as e:
        load_sam3d(tmp_path / "tiny.pth", SMALL)
    msg = str(e.value)
    assert "rel_pos_d" in msg and "(5, 24)" in msg
    assert "mask_decoder.iou_token.weight" in msg and "mask_decoder.extra.weight" in msg


def test_full_checkpoint_for_another_architecture_is_refused(tmp_path):
    torch.save(_small_sd(), tmp_path / "sam_med3d_turbo.pth")
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_sam3d(tmp_path / "sam_med3d_turbo.pth")


def test_unsafe_pickle_is_refused_not_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"model_state_dict": _small_sd(), "args": argparse.Namespace(lr=1.0), "hook": Evil()},
               tmp_path / "tiny.pth")
    with pytest.raises(CheckpointError, match="weights_only=True") as e:
        load_sam3d(tmp_path / "tiny.pth", SMALL)
    assert "builtins.print" in str(e.value) and "Namespace" not in str(e.value)  # only what is refused


def test_missing_checkpoint_message(tmp_path, monkeypatch):
    monkeypatch.setenv("SAM_MED_CHECKPOINTS", str(tmp_path))
    with pytest.raises(CheckpointError) as e:
        load_sam3d()
    msg = str(e.value)
    assert "sam_med3d_turbo.pth" in msg and "SAM_MED_CHECKPOINTS" in msg and "--checkpoint" in msg
    assert "sha256" in msg and str(tmp_path) in msg
    monkeypatch.delenv("SAM_MED_CHECKPOINTS")
    with pytest.raises(CheckpointError, match="not set"):
        load_sam3d()


def test_found_via_env(tmp_path, monkeypatch):
    torch.save({"model_state_dict": _small_sd()}, tmp_path / "tiny.pth")
    monkeypatch.setenv("SAM_MED_CHECKPOINTS", str(tmp_path))
    assert load_sam3d(None, SMALL).config.encoder_embed_dim == 96


def test_sha256_mismatch(tmp_path):
    torch.save(_small_sd(), tmp_path / "tiny.pth")
    cfg = dict(SMALL, checkpoint={"file_name": "tiny.pth", "sha256": "0" * 64})
    with pytest.raises(CheckpointError, match="sha256"):
        load_sam3d(tmp_path / "tiny.pth", cfg)


def test_registered_with_the_model_registry():
    registry = pytest.importorskip("sam_med.models.registry")
    assert "sam_med3d" in registry.list_architectures()
    m = registry.get_architecture("sam_med3d")(**Sam3DConfig.small().__dict__)
    assert m.config.encoder_depth == 2
