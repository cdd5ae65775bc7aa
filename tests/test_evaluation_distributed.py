"""`torchrun --nproc-per-node 2` gives the same per-case numbers as one process (gloo, CPU)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sam_med.evaluation.baselines import ThresholdPredictor
from sam_med.evaluation.datasets import open_dataset
from sam_med.evaluation.distributed import DistContext
from sam_med.evaluation.runner import EvalConfig, run_evaluation

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("dice", "nsd", "hd95", "pred_voxels", "ref_voxels", "click", "box", "prompt", "status", "step")


def test_shard_is_round_robin():
    items = list(range(7))
    assert DistContext(rank=0, world_size=3).shard(items) == [0, 3, 6]
    assert DistContext(rank=2, world_size=3).shard(items) == [2, 5]
    assert DistContext().gather({"a": 1}) == [{"a": 1}]


def _key(records):
    return [tuple(r.get(k) for k in ("case_id", "label", *METRICS)) for r in records]


@pytest.mark.slow  # two extra processes import torch + monai (~15 s CPU)
def test_torchrun_two_ranks_matches_single_process(data_dir, tmp_path):
    ds_path = data_dir / "ct_lesion"
    # box with seeded jitter: the random draws must not depend on which rank runs a case
    cfg = EvalConfig(protocol="box", jitter_mm=3.0, seed=11, model="threshold",
                     options={"threshold": 100, "largest": 1})
    single = run_evaluation(open_dataset(ds_path), ThresholdPredictor(threshold=100, largest=True), cfg,
                            tmp_path / "single", progress=False)
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "sam_med", "evaluate", str(ds_path), "--model", "threshold", "--option", "threshold=100",
           "--option", "largest=1", "--protocol", "box", "--jitter-mm", "3",
           "--seed", "11", "--out", str(out), "--no-progress"]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    # each rank wrote its own shard
    assert sorted(f.name for f in out.glob("records.rank*.jsonl")) == ["records.rank0.jsonl",
                                                                        "records.rank1.jsonl"]
    ranks = [[json.loads(l)["case_id"] for l in open(out / f"records.rank{r}.jsonl")] for r in (0, 1)]
    assert len(ranks[0]) == 2 and len(ranks[1]) == 2
    import csv

    with open(out / "records.csv") as f:
        rows = list(csv.DictReader(f))
    conv = []
    for r in rows:
        conv.append({**r, "label": int(r["label"]), "step": int(r["step"]), "dice": float(r["dice"]),
                     "nsd": float(r["nsd"]), "hd95": float(r["hd95"]), "pred_voxels": int(r["pred_voxels"]),
                     "ref_voxels": int(r["ref_voxels"])})
    assert _key(conv) == _key(single.records)
    s1 = json.loads((tmp_path / "single" / "summary.json").read_text())
    s2 = json.loads((out / "summary.json").read_text())
    assert s2["dice_mean"] == s1["dice_mean"] and s2["nsd_mean"] == s1["nsd_mean"]
    assert [c["dice"] for c in s2["per_case"]] == [c["dice"] for c in s1["per_case"]]
