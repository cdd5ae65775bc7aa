"""Trainability of the 3D model (pipeline test, not an accuracy claim): a tiny
configuration fine-tuned for a few steps on real CT crops lowers its loss and raises
the Dice of those crops above the random-init value. The longer run with reported
numbers is scripts/train_sam3d_smoke.py."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from conftest import ROOT


def _script():
    spec = importlib.util.spec_from_file_location("train_sam3d_smoke", ROOT / "scripts" / "train_sam3d_smoke.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_small_sam3d_learns_on_real_crops(data_dir):
    mod = _script()
    # 48^3 crops at 4 mm (6^3-voxel patches -> 8^3 tokens): liver, spleen, right kidney of the CT
    crops = mod.make_crops(img_size=48, spacing=4.0, jitters=1, data=data_dir / "totalseg",
                           cases=[("example_ct_sm.nii.gz", "example_seg.nii.gz", [5, 1, 2])])
    assert len(crops) == 3
    cfg = {"img_size": 48, "patch_size": 6, "spacing": (4.0, 4.0, 4.0)}
    res = mod.train(steps=40, batch=3, lr=2e-3, crops=crops, config=cfg, verbose=False, seed=0)
    print({k: v for k, v in res.items() if k != "model"})
    assert res["loss_last"] < 0.85 * res["loss_first"], res
    assert res["dice_trained"] > res["dice_random_init"] + 0.05, res
