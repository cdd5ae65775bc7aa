"""`sam-med info` on real scans: text, --json, DICOM options, errors (exit 2)."""

from __future__ import annotations

import json

from sam_med.cli import main
from sam_med.io import sample_path


def test_info_text_on_bundled_sample(capsys):
    assert main(["info", sample_path("example_ct_sm.nii.gz")]) == 0
    out = capsys.readouterr().out
    assert "122 x 101 x 30" in out and "RAS" in out and "3 x 3 x 3 mm" in out


def test_info_json_dicom(data_dir, capsys):
    assert main(["info", str(data_dir / "totalseg/example_ct_dicom"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["shape"] == [512, 512, 20]
    assert d["orientation"] == "LPS" and d["modality"] == "CT" and d["intensity"] == "HU"
    assert d["spacing"] == [0.976562, 0.976562, 2.0]
    assert d["series_description"] == "CT Body 3.0"


def test_info_time_index_and_resample(data_dir, capsys):
    assert main(["info", str(data_dir / "dicom/ge_mr_4d"), "--time-index", "3", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["shape"] == [64, 64, 15] and d["time_index"] == 3 and d["time_points"] == 10
    assert main(["info", str(data_dir / "dicom/pydicom_ct2"), "--resample"]) == 0
    assert "resampled" in capsys.readouterr().out


def test_info_series_option(data_dir, capsys):
    uid = "1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322"
    assert main(["info", str(data_dir / "dicom/seg"), "--series", uid, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["series_instance_uid"] == uid and d["shape"] == [128, 128, 1]


def test_info_errors_exit_2_one_line(data_dir, tmp_path, capsys):
    cases = [
        (str(tmp_path / "missing.nii.gz"), "no such file"),
        (str(data_dir / "dicom/ge_mr_4d"), "--time-index"),
        (str(data_dir / "dicom/seg"), "--series"),
        (str(data_dir / "dicom/ge_ct_gantry_tilt"), "--resample"),
    ]
    for path, needle in cases:
        assert main(["info", path]) == 2
        err = capsys.readouterr().err
        assert err.startswith("sam-med: error: ") and needle in err
        assert err.count("\n") == 1 and "Traceback" not in err
