"""Dataset adapters: npz folder and CSV on the real shared scans; MSD / nnU-Net layouts."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from sam_med.errors import SamMedError
from sam_med.evaluation.datasets import open_dataset, parse_labels

ROOT = Path(__file__).resolve().parents[1]


def test_parse_labels():
    assert parse_labels("1,2,5") == (1, 2, 5)
    assert parse_labels("1; 2 5") == (1, 2, 5)
    assert parse_labels("") is None and parse_labels(None) is None
    with pytest.raises(SamMedError):
        parse_labels("1,x")
    with pytest.raises(SamMedError):
        parse_labels("0,1")


def test_npz_folder_real(data_dir):
    ds = open_dataset(data_dir / "ct_lesion")
    assert ds.kind == "npz" and len(ds) == 4
    assert ds.cases[0].case_id == "CT_Lesion_000001_02_01_008-023"
    image, label = ds.cases[0].load()
    assert image.shape == (512, 512, 16) and label.same_grid(image)
    assert np.allclose(image.spacing, [0.314453, 0.314453, 5.0], atol=1e-5)
    assert ds.cases[0].objects(label) == [(1, "lesion")]
    # --labels / --limit
    assert len(open_dataset(data_dir / "ct_lesion", limit=2)) == 2


def test_example_csv_mixes_ct_and_mr(data_dir):
    ds = open_dataset(ROOT / "configs" / "eval" / "mixed_ct_mr.csv")
    assert ds.kind == "csv" and [c.case_id for c in ds.cases] == ["totalseg_ct", "brain1_mr"]
    ct, mr = ds.cases
    assert ct.labels == (1, 2, 3, 5, 52) and ct.label_names[5] == "liver"
    assert Path(ct.image).is_file() and Path(mr.label).is_file()  # resolved against the CSV's folder
    img, lab = mr.load()
    assert lab.same_grid(img) and mr.objects(lab) == [(1, "tumour")]
    # the CLI's --labels overrides the CSV's choice
    ds2 = open_dataset(ROOT / "configs" / "eval" / "mixed_ct_mr.csv", labels=(5,))
    assert all(c.labels == (5,) for c in ds2.cases)


def _nifti(path, arr, spacing=(1.0, 1.0, 2.0)):
    nib.save(nib.Nifti1Image(arr, np.diag([*spacing, 1.0])), str(path))


def test_msd_layout(tmp_path):
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    lab = np.zeros((8, 8, 4), np.uint8)
    lab[2:5, 2:5, 1:3] = 1
    lab[6, 6, 2] = 2
    _nifti(tmp_path / "imagesTr" / "liver_0.nii.gz", np.ones((8, 8, 4), np.float32))
    _nifti(tmp_path / "labelsTr" / "liver_0.nii.gz", lab)
    (tmp_path / "dataset.json").write_text(json.dumps({
        "name": "Task03_Liver", "labels": {"0": "background", "1": "liver", "2": "cancer"},
        "training": [{"image": "./imagesTr/liver_0.nii.gz", "label": "./labelsTr/liver_0.nii.gz"}]}))
    ds = open_dataset(tmp_path)
    assert ds.kind == "msd" and ds.name == "Task03_Liver"
    (c,) = ds.cases
    img, lb = c.load()
    assert c.case_id == "liver_0" and c.objects(lb) == [(1, "liver"), (2, "cancer")]


def test_nnunet_v2_layout(tmp_path):
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    for cid in ("a_001", "a_002"):
        _nifti(tmp_path / "imagesTr" / f"{cid}_0000.nii.gz", np.zeros((6, 6, 3), np.float32))
        _nifti(tmp_path / "labelsTr" / f"{cid}.nii.gz", np.ones((6, 6, 3), np.uint8))
    (tmp_path / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": {"background": 0, "spleen": 1}, "file_ending": ".nii.gz"}))
    ds = open_dataset(tmp_path)
    assert [c.case_id for c in ds.cases] == ["a_001", "a_002"]
    assert ds.cases[0].label_names == {1: "spleen"}
    assert ds.cases[0].image.endswith("a_001_0000.nii.gz")


def test_not_a_dataset(tmp_path):
    with pytest.raises(SamMedError, match="not a dataset"):
        open_dataset(tmp_path)
    with pytest.raises(SamMedError, match="not found"):
        open_dataset(tmp_path / "nope")
    bad = tmp_path / "x.csv"
    bad.write_text("img,lab\na,b\n")
    with pytest.raises(SamMedError, match="'image' and 'label'"):
        open_dataset(bad)
