"""`sam-med segment --accept-to DIR` (the tiny random-weight model: fast, no weights) and
`sam-med evaluate DIR` on an accepted-results folder (the threshold baseline) (issue 19)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from sam_med.dataengine import accept_session

from sam_med import io
from sam_med.cli import main


@pytest.fixture()
def ct(tmp_path, data_dir) -> Path:
    src = tmp_path / "scans" / "example_ct_sm.nii.gz"
    src.parent.mkdir()
    shutil.copy(data_dir / "totalseg" / "example_ct_sm.nii.gz", src)
    return src


def _prompts(tmp_path, ct, data_dir) -> Path:
    from sam_med.prompts import box_from_mask

    vol = io.load(ct)
    ref = io.load_label(data_dir / "totalseg/example_seg.nii.gz", like=vol).array
    spec = {"coords": "voxel", "objects": [
        {"id": 5, "name": "liver", "box": box_from_mask(ref == 5).to_json(), "points": [[60, 50, 15, 1], [61, 52, 15, 0]]},
        {"id": 1, "name": "spleen", "box": box_from_mask(ref == 1).to_json()}]}
    pf = tmp_path / "prompts.json"
    pf.write_text(json.dumps(spec))
    return pf


def test_segment_accept_to_writes_an_entry(tmp_path, ct, data_dir, capsys, tiny):
    from sam_med.dataengine import AcceptedDataset

    pf = _prompts(tmp_path, ct, data_dir)
    out, acc = tmp_path / "out" / "labels.nii.gz", tmp_path / "accepted"
    rc = main(["segment", str(ct), "--prompts", str(pf), "--model", tiny.name, "--device", "cpu",
               "--no-progress", "--out", str(out), "--accept-to", str(acc)])
    assert rc == 0, capsys.readouterr().err
    [entry] = AcceptedDataset(acc).entries()
    written = io.load_label(out)
    assert np.array_equal(entry.load_mask(like=entry.load_scan()).array, written.array)
    assert [(o["id"], o["name"]) for o in entry.objects] == [(5, "liver"), (1, "spleen")]
    spec = json.loads(pf.read_text())["objects"]
    assert entry.objects[0]["prompts"] == {"box": spec[0]["box"], "points": spec[0]["points"]}
    assert [c["positive"] for c in entry.objects[0]["clicks"]] == [True, False]
    assert entry.model["name"] == tiny.name and entry.scan_path == str(ct)
    assert all(o["voxels"] == int((written.array == o["label"]).sum()) for o in entry.objects)


@pytest.mark.parametrize("case", ["file", "other-folder", "out-inside"])
def test_segment_bad_accept_dir_is_one_line_and_writes_nothing(tmp_path, ct, capsys, case):
    acc = tmp_path / "acc"
    out = tmp_path / "out" / "labels.nii.gz"
    if case == "file":
        acc.write_text("x")
    elif case == "other-folder":
        acc.mkdir()
        (acc / "notes.txt").write_text("x")
    else:
        out = acc / "labels.nii.gz"
    before = sorted(p for p in tmp_path.rglob("*"))
    rc = main(["segment", str(ct), "--box", "20", "20", "5", "60", "60", "20", "--model", "threshold",
               "--no-progress", "--out", str(out), "--accept-to", str(acc)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("sam-med: error:") and str(acc) in err[0]
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_segment_challenge_file_refuses_accept_to(tmp_path, capsys):
    case = Path(__file__).resolve().parents[2] / "shared" / "cvpr25" / "cases" / "imgs" / "TotalSeg_CT_sm.npz"
    if not case.is_file():
        pytest.skip("shared CVPR 2025 cases not found")
    rc = main(["segment", str(case), "--model", "threshold", "--out", str(tmp_path / "o.npz"),
               "--accept-to", str(tmp_path / "acc")])
    err = capsys.readouterr().err
    assert rc == 2 and "--accept-to" in err and "challenge" in err and not (tmp_path / "acc").exists()


def _accept_two(tmp_path, ct, data_dir):
    """An accepted folder with the reference spleen + liver of the CT (Session.accept)."""
    from sam_med.session import Session

    vol = io.load(ct)
    ref = io.load_label(data_dir / "totalseg/example_seg.nii.gz", like=vol).array
    s = Session(vol)
    for lab, name in ((1, "spleen"), (5, "liver")):
        s.add_object(name, id=lab)
        s.set_mask(lab, ref == lab)
    return accept_session(s, tmp_path / "acc"), ref


def test_evaluate_reads_an_accepted_folder(tmp_path, ct, data_dir, capsys):
    import csv

    from sam_med.evaluation.datasets import open_dataset

    entry, ref = _accept_two(tmp_path, ct, data_dir)
    ds = open_dataset(tmp_path / "acc")
    assert ds.kind == "accepted" and [c.case_id for c in ds.cases] == [entry.id]
    image, label = ds.cases[0].load()
    assert np.array_equal(label.array, np.where(np.isin(ref, [1, 5]), ref, 0))
    assert ds.cases[0].objects(label) == [(1, "spleen"), (5, "liver")]
    rc = main(["evaluate", str(tmp_path / "acc"), "--model", "threshold", "--option", "threshold=100",
               "--protocol", "box", "--no-progress", "--out", str(tmp_path / "report")])
    assert rc == 0, capsys.readouterr().err
    rows = list(csv.DictReader(open(tmp_path / "report" / "records.csv")))
    assert sorted((r["label"], r["name"]) for r in rows) == [("1", "spleen"), ("5", "liver")]
    assert all(r["case_id"] == entry.id and 0 < float(r["dice"]) <= 1 for r in rows)


def test_evaluate_refuses_a_changed_scan(tmp_path, ct, data_dir, capsys):
    _accept_two(tmp_path, ct, data_dir)
    raw = bytearray(ct.read_bytes())
    raw[100] ^= 1
    ct.write_bytes(bytes(raw))
    rc = main(["evaluate", str(tmp_path / "acc"), "--model", "threshold", "--no-progress",
               "--out", str(tmp_path / "report")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and f"scan changed since it was accepted: {ct}" in err[0]
    assert not (tmp_path / "report").exists()
