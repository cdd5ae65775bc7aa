"""Runner: hand-checkable numbers, failure records, resume, reports and the CLI."""

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from sam_med.cli import main
from sam_med.evaluation.baselines import ThresholdPredictor
from sam_med.evaluation.datasets import open_dataset
from sam_med.evaluation.runner import EvalConfig, read_finished, run_evaluation


def _nifti(path, arr, spacing=(1.0, 1.0, 1.0)):
    nib.save(nib.Nifti1Image(arr, np.diag([*spacing, 1.0])), str(path))


@pytest.fixture
def synth(tmp_path):
    """good (2 objects), geometry mismatch, empty label, missing file."""
    d = tmp_path / "data"
    d.mkdir()
    lab = np.zeros((30, 16, 16), np.uint8)
    lab[3:13, 3:13, 3:13] = 1  # 1000 voxels; the dark 3^3 core is missed by the threshold box
    lab[20:24, 4:8, 4:8] = 2  # 64 voxels, found exactly
    img = (lab > 0).astype(np.float32)
    img[7:10, 7:10, 7:10] = 0
    _nifti(d / "good.nii.gz", img)
    _nifti(d / "good_seg.nii.gz", lab)
    _nifti(d / "other.nii.gz", img)
    _nifti(d / "other_seg.nii.gz", lab[:, :, :12])
    _nifti(d / "empty.nii.gz", img)
    _nifti(d / "empty_seg.nii.gz", np.zeros_like(lab))
    rows = ["image,label,labels_of_interest,label_names",
            "data/good.nii.gz,data/good_seg.nii.gz,1;2,cube;small",
            "data/other.nii.gz,data/other_seg.nii.gz,,",
            "data/empty.nii.gz,data/empty_seg.nii.gz,,",
            "data/missing.nii.gz,data/good_seg.nii.gz,,"]
    (tmp_path / "ds.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "ds.csv"


class CountingThreshold(ThresholdPredictor):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.calls = []

    def predict(self, volume, prompts, previous=None, progress=None):
        self.calls.append(volume.source)
        return super().predict(volume, prompts, previous, progress)


def _dice(n_pred, n_ref, n_inter):
    return 2 * n_inter / (n_pred + n_ref)


def test_numbers_failures_and_summary(synth, tmp_path):
    ds = open_dataset(synth)
    cfg = EvalConfig(protocol="box+clicks", clicks=2, model="threshold")
    res = run_evaluation(ds, ThresholdPredictor(radius=1.0), cfg, tmp_path / "out", progress=False)
    ok = [r for r in res.records if r["status"] == "ok"]
    cube = [r["dice"] for r in ok if r["label"] == 1]
    # box misses the 27-voxel core (973 found); click 1 fills 7 voxels, click 2 four more
    assert cube == pytest.approx([_dice(973, 1000, 973), _dice(980, 1000, 980), _dice(984, 1000, 984)])
    small = [r for r in ok if r["label"] == 2]
    assert [r["dice"] for r in small] == [1.0, 1.0, 1.0] and [r["carried"] for r in small] == [False, True, True]
    fails = {r["case_id"]: r["error"] for r in res.records if r["status"] == "failed"}
    assert set(fails) == {"other", "empty", "missing"}
    assert "GeometryError" in fails["other"] and "not on the image grid" in fails["other"]
    assert "EmptyLabel" in fails["empty"]
    assert "not found" in fails["missing"] and "missing.nii.gz" in fails["missing"]
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (s["cases"], s["cases_ok"], s["cases_failed"], s["objects"]) == (4, 1, 3, 2)
    assert s["dice_mean_per_click"] == pytest.approx([(c + 1) / 2 for c in cube])
    assert s["dice_mean"] == pytest.approx((cube[-1] + 1) / 2)
    assert s["per_label"]["1:cube"]["n"] == 1
    assert s["nsd_mean"] is not None and s["hd95_mean"] is not None
    assert len(s["dice_ci95"]) == 2 and s["dice_ci95"][0] <= s["dice_mean"] <= s["dice_ci95"][1]
    assert not res.all_failed
    with open(tmp_path / "out" / "records.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(res.records) and {"dice", "nsd", "hd95", "step_s", "load_s"} <= set(rows[0])


def test_resume_skips_finished_cases(synth, tmp_path):
    ds = open_dataset(synth)
    cfg = EvalConfig(protocol="box", model="threshold")
    out = tmp_path / "out"
    first = run_evaluation(ds, ThresholdPredictor(), cfg, out, progress=False)
    # simulate an interruption while writing the good case: its line is torn
    f = out / "records.rank0.jsonl"
    lines = f.read_text().splitlines(keepends=True)
    f.write_text("".join(lines[1:]) + lines[0][:25])
    assert len(read_finished(out)) == 3
    pred = CountingThreshold()
    again = run_evaluation(ds, pred, cfg, out, resume=True, progress=False)
    assert len(pred.calls) == 2 and pred.calls[0].endswith("good.nii.gz")  # only that case re-ran
    strip = lambda rs: [{k: v for k, v in r.items() if not k.endswith("_s") and k != "peak_rss_mb"}
                        for r in rs]
    assert strip(again.records) == strip(first.records)
    # settings that change the numbers cannot be mixed into the same folder
    from sam_med.errors import SamMedError

    with pytest.raises(SamMedError, match="different settings"):
        run_evaluation(ds, ThresholdPredictor(), EvalConfig(protocol="point", model="threshold"), out,
                       resume=True, progress=False)


def test_cli_exit_status(synth, tmp_path, capsys):
    rc = main(["evaluate", str(synth), "--model", "threshold", "--protocol", "box", "--out",
               str(tmp_path / "o1"), "--no-progress"])
    assert rc == 0
    assert "FAILED other" in capsys.readouterr().out
    # only bad cases -> non-zero
    rows = synth.read_text().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([rows[0], rows[2], rows[3], rows[4]]) + "\n")
    rc = main(["evaluate", str(bad), "--model", "threshold", "--out", str(tmp_path / "o2"), "--no-progress"])
    assert rc == 1
    # bad arguments -> 2
    assert main(["evaluate", str(synth), "--protocol", "box", "--clicks", "3", "--out", str(tmp_path / "o3")]) == 2


def test_ct_lesion_end_to_end_with_baseline(data_dir, tmp_path):
    out = tmp_path / "ev"
    rc = main(["evaluate", str(data_dir / "ct_lesion"), "--model", "threshold", "--option", "threshold=100",
               "--protocol", "box+clicks", "--clicks", "2", "--limit", "2", "--out", str(out), "--no-progress"])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["cases"] == 2 and s["cases_failed"] == 0
    assert len(s["dice_mean_per_click"]) == 3
    assert {"dice_mean", "nsd_mean", "hd95_mean", "timing", "memory"} <= set(s)
    assert s["memory"]["peak_rss_mb_max"] > 0
    pytest.importorskip("matplotlib")
    assert (out / "dice_vs_clicks.png").stat().st_size > 1000
    assert (out / "dice_per_structure.png").is_file()
