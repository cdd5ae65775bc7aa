"""`sam-med evaluate --protocol cvpr25` end to end on a synthetic research-npz dataset
(converted on the fly) with the model-free baseline: reports, official columns, a failed case
recorded while the run goes on, --resume, in-process = fresh-process for a stateless model."""

import csv
import json

import numpy as np

from sam_med.cli import main
from sam_med.evaluation.cvpr25.report import OFFICIAL_COLUMNS


def make_dataset(root):
    root.mkdir()
    rng = np.random.default_rng(3)
    for n in range(2):
        imgs = (rng.random((10, 24, 28)) * 60).astype(np.uint8)
        gts = np.zeros(imgs.shape, np.uint8)
        z, y, x = np.ogrid[:10, :24, :28]
        gts[((z - 4) / 3) ** 2 + ((y - 9) / 5) ** 2 + ((x - 11) / 6) ** 2 <= 1] = 3  # renumbered 1..N
        gts[((z - 6) / 3) ** 2 + ((y - 17 - n) / 4) ** 2 + ((x - 21) / 4) ** 2 <= 1] = 7
        imgs[gts > 0] += 120
        np.savez_compressed(root / f"CT_case{n}.npz", imgs=imgs, gts=gts, spacing=np.array([1.0, 1.0, 2.5]))
    np.savez_compressed(root / "CT_broken.npz", imgs=np.zeros((4, 5, 6), np.uint8), gts=np.zeros((4, 5, 5), np.uint8),
                        spacing=np.ones(3))


def rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_cvpr25_protocol_reports_resume_and_modes(tmp_path, capsys):
    data = tmp_path / "data"
    make_dataset(data)
    out = tmp_path / "out"
    args = ["evaluate", str(data), "--protocol", "cvpr25", "--model", "threshold", "--no-progress", "--out"]
    assert main([*args, str(out)]) == 0
    table = rows(out / "metrics.csv")
    assert list(table[0])[: len(OFFICIAL_COLUMNS)] == OFFICIAL_COLUMNS
    by = {r["CaseName"]: r for r in table}
    assert by["CT_broken"]["status"] == "failed" and "differs" in by["CT_broken"]["error"]
    ok = by["CT_case0"]
    assert ok["status"] == "ok" and ok["num_class"] == "2" and float(ok["DSC_1"]) > 0.5
    dsc = [float(ok[f"DSC_{k}"]) for k in range(1, 7)]
    assert abs(float(ok["DSC_AUC"]) - sum((a + b) / 2 for a, b in zip(dsc[1:-1], dsc[2:]))) < 1e-9
    per_class = rows(out / "per_class.csv")
    assert {(r["CaseName"], r["class"]) for r in per_class} >= {("CT_case0", "1"), ("CT_case0", "2")}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cases_failed"] == 1 and summary["per_modality"]["CT"]["cases"] == 2
    clicks = {c["CaseName"]: c["clicks"] for c in map(json.loads, (out / "clicks.jsonl").read_text().splitlines())}
    assert len(clicks["CT_case0"]) == 5 and clicks["CT_case0"][0]["1"] is not None
    assert dsc[5] > dsc[1]  # the baseline's click balls remove errors
    # --resume: nothing is run again, the same reports come out
    lines = (out / "cases.rank0.jsonl").read_text()
    assert main([*args, str(out), "--resume"]) == 0
    assert (out / "cases.rank0.jsonl").read_text() == lines
    assert rows(out / "metrics.csv") == table
    # a stateless model gives the same numbers and clicks as one process per step
    fresh = tmp_path / "fresh"
    assert main([*args, str(fresh), "--fresh-process-per-step"]) == 0
    f = {r["CaseName"]: r for r in rows(fresh / "metrics.csv")}
    for k in [f"{m}_{i}" for m in ("DSC", "NSD") for i in range(1, 7)]:
        assert abs(float(f["CT_case1"][k]) - float(by["CT_case1"][k])) < 1e-9
    assert (fresh / "clicks.jsonl").read_text() == (out / "clicks.jsonl").read_text()


def test_cvpr25_rejects_other_protocol_flags(tmp_path, capsys):
    data = tmp_path / "data"
    make_dataset(data)
    rc = main(["evaluate", str(data), "--protocol", "cvpr25", "--clicks", "3", "--out", str(tmp_path / "o")])
    assert rc == 2 and "do not apply" in capsys.readouterr().err and not (tmp_path / "o").exists()
