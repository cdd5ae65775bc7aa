"""``sam-med segment --model medsam2 --checkpoint FILE`` end to end on the bundled sample CT
with a random checkpoint in the official layout: a label map on the source grid."""

from __future__ import annotations

import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch

from sam_med.io import sample_path
from sam_med.models.sam2 import build_sam2


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(1)
    sd = build_sam2().state_dict()
    sd["sam_mask_decoder.pred_obj_score_head.layers.2.bias"] += 5.0  # the object is seen
    p = tmp_path_factory.mktemp("medsam2_cli") / "MedSAM2_latest.pt"
    torch.save({"model": sd}, p)
    return p


def test_segment_writes_a_mask_on_the_source_grid(checkpoint, tmp_path):
    src = sample_path("example_ct_sm.nii.gz")
    out = tmp_path / "liver.nii.gz"
    # a key-slice box on slice 14 (range 13..15: three slices at 512^2 keep the test short)
    cmd = [sys.executable, "-m", "sam_med", "segment", src, "--model", "medsam2", "--checkpoint", str(checkpoint),
           "--key-box", "14", "13", "15", "20", "20", "70", "60", "--out", str(out), "--no-progress"]
    env = dict(os.environ, SAM_MED_CHECKPOINTS="/nonexistent")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr
    img, lab = nib.load(src), nib.load(out)
    assert lab.shape == img.shape and np.allclose(lab.affine, img.affine)
    m = np.asarray(lab.dataobj)
    assert set(np.unique(m)) <= {0, 1}
    assert m[:, :, 13:16].any()  # the object is seen on the prompted slices
    assert not m[:, :, :13].any() and not m[:, :, 16:].any()  # nothing outside the box's slice range


def test_unknown_option_is_one_line(checkpoint, tmp_path):
    r = subprocess.run([sys.executable, "-m", "sam_med", "segment", sample_path("example_ct_sm.nii.gz"),
                        "--model", "medsam2", "--checkpoint", str(checkpoint), "--option", "slice_step=2",
                        "--box", "20", "20", "10", "60", "60", "14", "--out", str(tmp_path / "m.nii.gz")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "slice_step" in lines[0] and "fill_hole_area" in lines[0]
    assert not (tmp_path / "m.nii.gz").exists()


@pytest.mark.parametrize("protocol", ["box+clicks", "cvpr25"])
def test_evaluate_runs_medsam2_under_each_protocol(checkpoint, tmp_path, protocol):
    """``sam-med evaluate --model medsam2`` (weights found through $SAM_MED_CHECKPOINTS): a small
    research-npz case, a box then corrective clicks, every step recorded."""
    import json

    from _helpers import blob_volume

    vol, ref = blob_volume(shape=(40, 32, 6), center=(20, 16, 3), radii=(7, 6, 2))
    data = tmp_path / "data"
    data.mkdir()
    imgs = np.clip(vol.array.transpose(2, 1, 0), 0, 255).astype(np.uint8)
    np.savez(data / "blob.npz", imgs=imgs, gts=ref.transpose(2, 1, 0).astype(np.uint8), spacing=np.array([1.0, 1.0, 3.0]))
    out = tmp_path / "ev"
    cmd = [sys.executable, "-m", "sam_med", "evaluate", str(data), "--model", "medsam2", "--protocol", protocol,
           "--clicks", "1", "--out", str(out), "--no-progress"]
    if protocol == "cvpr25":
        cmd.remove("--clicks"), cmd.remove("1")
    env = dict(os.environ, SAM_MED_CHECKPOINTS=str(checkpoint.parent))
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "summary.json").read_text())
    if protocol == "cvpr25":
        assert s["cases"] == 1 and s["cases_failed"] == 0
    else:
        rows = (out / "records.csv").read_text().splitlines()
        assert len(rows) == 1 + 2 and all(",ok," in row for row in rows[1:])  # box + 1 click
