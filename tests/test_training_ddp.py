"""torchrun (gloo) with 2 processes gives the weights of 1 process at the same global batch.

SGD here: the gradients agree to float rounding, and SGD keeps that; Adam divides by
sqrt(v) and turns rounding noise in near-zero gradients into steps of size ~lr, so with Adam
a few weights differ by up to ~lr after a step (true of any DDP implementation)."""

from __future__ import annotations

import os
import subprocess
import sys

import torch
import yaml

from _training import REPO, make_tiny_model, tiny_finetune_config


def _run(cmd, env):
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]


def test_two_process_torchrun_matches_one_process(tmp_path):
    models = tmp_path / "models"
    make_tiny_model(models)
    env = {**os.environ, "SAM_MED_CONFIGS": str(models), "OMP_NUM_THREADS": "1"}
    results = {}
    for n in (1, 2):
        cfg = tiny_finetune_config(tmp_path / f"run{n}", mode="lora", lora={"rank": 2},
                                   optim={"epochs": 2, "batch_size": 4, "lr": 1e-2, "name": "sgd"},
                                   data={"max_slices_per_case": 8, "augment": {"prob": 1.0}})
        p = tmp_path / f"cfg{n}.yaml"
        p.write_text(yaml.safe_dump(cfg))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
               "-m", "sam_med", "finetune", "--config", str(p)]
        _run(cmd, env)
        results[n] = torch.load(tmp_path / f"run{n}" / "last.pt", map_location="cpu", weights_only=True)
    a, b = results[1], results[2]
    assert a["step"] == b["step"] >= 2
    assert a["trainable"].keys() == b["trainable"].keys()
    for k in a["trainable"]:
        torch.testing.assert_close(a["trainable"][k], b["trainable"][k], rtol=1e-4, atol=1e-5, msg=k)
    changed = [k for k in a["trainable"] if k.endswith("lora_B") and a["trainable"][k].abs().sum() > 0]
    assert changed  # the adapters did train
