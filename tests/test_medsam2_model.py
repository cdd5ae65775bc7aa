"""MedSAM2 (SAM 2.1 Hiera-T, 512^2): our model has the official checkpoint layout key for key,
a random checkpoint in that layout loads strictly, and bad files are refused in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from sam_med.errors import CheckpointError
from sam_med.models import load_model
from sam_med.models.sam2 import Sam2Config, build_sam2, load_medsam2


@pytest.fixture(scope="module")
def reference(reference_dir):
    return json.loads((reference_dir / "medsam2.json").read_text())


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_sam2()


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    """A random checkpoint written as the official container ``{'model': state_dict}``."""
    path = tmp_path_factory.mktemp("medsam2") / "MedSAM2_latest.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


def test_architecture_matches_official_layout(model, reference):
    sd = model.state_dict()
    assert list(sd) == list(reference["state_dict"])  # same keys, same order
    assert {k: list(v.shape) for k, v in sd.items()} == reference["state_dict"]
    assert len(sd) == reference["num_state_dict_keys"] == 471
    assert sum(p.numel() for p in model.parameters()) == reference["num_params"] == 38_962_498
    buffers = [k for k in sd if k not in dict(model.named_parameters())]
    assert buffers == reference["buffer_keys_in_state_dict"]


def test_random_checkpoint_loads_strictly(model, checkpoint):
    lm = load_model("medsam2", checkpoint=checkpoint, cache=False)
    assert lm.name == "medsam2" and lm.image_size == 512 and lm.precision == "fp32"
    assert len(lm.sha256) == 64
    for k, v in model.state_dict().items():
        assert torch.equal(lm.model.state_dict()[k], v), k
    # a bare state dict (no container) loads too
    bare = checkpoint.parent / "bare.pt"
    torch.save(model.state_dict(), bare)
    assert isinstance(load_medsam2(bare), torch.nn.Module)


@pytest.mark.parametrize("edit,expect", [
    ("extra", "1 unexpected key(s): ['extra.weight']"),
    ("missing", "1 missing key(s): ['no_obj_ptr']"),
    ("shape", "sam_mask_decoder.conv_s0.weight: expected (32, 256, 1, 1), got (32, 128, 1, 1)"),
])
def test_wrong_key_or_shape_is_one_line(model, tmp_path, edit, expect):
    sd = dict(model.state_dict())
    if edit == "extra":
        sd["extra.weight"] = torch.zeros(1)
    elif edit == "missing":
        del sd["no_obj_ptr"]
    else:
        sd["sam_mask_decoder.conv_s0.weight"] = torch.zeros(32, 128, 1, 1)
    p = tmp_path / "bad.pt"
    torch.save({"model": sd}, p)
    with pytest.raises(CheckpointError) as e:
        load_medsam2(p)
    msg = str(e.value)
    assert expect in msg and "\n" not in msg and "Sam2Model" in msg


def test_unsafe_checkpoint_is_refused(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"model": {"x": torch.zeros(1)}, "cfg": argparse_namespace()}, p)
    with pytest.raises(CheckpointError, match="refused"):
        load_medsam2(p)


def argparse_namespace():
    import argparse

    return argparse.Namespace(a=1)


def test_missing_checkpoint_says_where_to_get_and_put_it(tmp_path):
    env = dict(os.environ, SAM_MED_CHECKPOINTS=str(tmp_path), HOME=str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "sam_med", "segment", "--model", "medsam2", "--box", "1", "1", "1",
                        "20", "20", "5", "--out", str(tmp_path / "m.nii.gz"), sample_ct()],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert "MedSAM2_latest.pt" in lines[0] and "SAM_MED_CHECKPOINTS" in lines[0]
    assert "huggingface.co/wanglab/MedSAM2" in lines[0] and "CC-BY-SA-4.0" in lines[0]
    assert not (tmp_path / "m.nii.gz").exists()


def sample_ct() -> str:
    from sam_med.io import sample_path

    return sample_path("example_ct_sm.nii.gz")


def test_config_round_trip_and_small_inputs():
    cfg = Sam2Config.from_dict({"image_size": 64, "stages": [1, 2, 7, 2]})
    m = build_sam2(cfg)
    with torch.inference_mode():
        f = m.encode_frames(torch.randn(1, 3, 64, 64))
        assert f.feat.shape == (16, 1, 256) and f.size == (4, 4)
        assert [tuple(h.shape) for h in f.high_res] == [(1, 32, 16, 16), (1, 64, 8, 8)]
        pix = m.condition(f, 0, 3, {}, {}, False, True)
        d = m.decode(pix, f.high_res, torch.tensor([[[4.0, 4.0], [40.0, 50.0]]]), torch.tensor([[2, 3]]))
        assert d.low_res.shape == (1, 1, 16, 16) and d.high_res.shape == (1, 1, 64, 64)
        mem = m.encode_memory(f, d.high_res, d.object_score, True)
        assert mem.shape == (1, 64, 4, 4)
        assert torch.equal(mem, mem.to(torch.bfloat16).float())  # stored as the reference: bf16
    with pytest.raises(ValueError, match="unknown SAM 2 architecture argument"):
        Sam2Config.from_dict({"img_size": 64})
