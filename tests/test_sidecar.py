"""JSON provenance sidecar."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os

import numpy as np
import pytest

from sam_med import io
from sam_med.errors import InputFileError, OutputError
from sam_med.io.sidecar import FORMAT, read_sidecar, sidecar_path, write_sidecar
from sam_med.session import versions

SHA = "cd" * 32


@pytest.fixture(scope="module")
def vol(data_dir):
    return io.load(data_dir / "totalseg" / "example_ct_sm.nii.gz")


def _result(vol, tmp_path, name="mask.nii.gz"):
    lab = np.zeros(vol.shape, np.uint8)
    lab[10:20, 10:20, 5:10] = 1
    return io.save_label(lab, tmp_path / name, like=vol)


def test_sidecar_naming():
    assert sidecar_path("/a/mask.nii.gz") == "/a/mask.nii.gz.json"
    assert sidecar_path("/a/seg.dcm") == "/a/seg.dcm.json"
    assert sidecar_path("/a/mask.nii.gz") != sidecar_path("/a/mask.nrrd")


def test_sidecar_content(vol, tmp_path):
    out = _result(vol, tmp_path)
    prompts = {"objects": [{"id": 1, "name": "liver", "box": np.array([1, 2, 3, 9, 9, 9]),
                            "points": [[np.int64(4), np.float32(5.5), 6]], "labels": np.array([True])}]}
    side = write_sidecar(out, volume=vol, prompts_json=prompts, model_name="medsam2",
                         checkpoint_sha256=SHA, extra={"overlap": "last"})
    assert side == out + ".json" and os.path.isfile(side)
    rec = json.loads(open(side).read())
    assert rec["format"] == FORMAT
    assert rec["model"] == {"name": "medsam2", "checkpoint_sha256": SHA}
    assert rec["prompts"]["objects"][0]["box"] == [1, 2, 3, 9, 9, 9]
    assert rec["prompts"]["objects"][0]["points"] == [[4, 5.5, 6]]
    assert rec["versions"] == json.loads(json.dumps(versions()))
    assert "numpy" in rec["versions"] and "python" in rec["versions"]
    assert rec["input"]["path"] == vol.source
    assert rec["input"]["shape"] == list(vol.shape)
    np.testing.assert_allclose(rec["input"]["affine"], vol.affine, atol=1e-6)
    assert rec["output"]["sha256"] == hashlib.sha256(open(out, "rb").read()).hexdigest()
    t = dt.datetime.fromisoformat(rec["created_utc"])
    assert t.utcoffset() == dt.timedelta(0)
    assert abs((dt.datetime.now(dt.timezone.utc) - t).total_seconds()) < 120
    assert rec["extra"] == {"overlap": "last"}
    assert read_sidecar(out) == rec == read_sidecar(side)
    assert sorted(os.listdir(tmp_path)) == ["mask.nii.gz", "mask.nii.gz.json"]  # no temp files


def test_sidecar_dicom_identity(data_dir, tmp_path):
    pytest.importorskip("pylibjpeg")
    ct = io.load(data_dir / "totalseg" / "example_ct_dicom")
    out = tmp_path / "seg.dcm"
    out.write_bytes(b"x")
    rec = read_sidecar(write_sidecar(out, volume=ct, prompts_json=None, model_name="m",
                                     checkpoint_sha256=None))
    assert rec["input"]["dicom"]["frame_of_reference_uid"] == ct.dicom.frame_of_reference_uid
    assert rec["input"]["dicom"]["n_instances"] == 20


def test_sidecar_refusals(vol, tmp_path):
    out = _result(vol, tmp_path)
    with pytest.raises(OutputError, match="JSON"):
        write_sidecar(out, volume=vol, prompts_json={"x": object()}, model_name="m", checkpoint_sha256=SHA)
    with pytest.raises(OutputError, match="JSON"):
        write_sidecar(out, volume=vol, prompts_json={"x": float("nan")}, model_name="m", checkpoint_sha256=SHA)
    assert not os.path.exists(out + ".json")
    with pytest.raises(OutputError, match="folder"):
        write_sidecar(tmp_path / "nope" / "m.nii.gz", volume=vol, prompts_json={}, model_name="m",
                      checkpoint_sha256=SHA)
    bad = tmp_path / "other.json"
    bad.write_text('{"format": "something-else"}')
    with pytest.raises(InputFileError, match="not a sam-med provenance"):
        read_sidecar(bad)


def test_sidecar_never_onto_input(vol, tmp_path, data_dir):
    # a "result" whose sidecar name would be the input file itself
    src = tmp_path / "scan.nii.gz.json"
    src.write_text("{}")
    fake = io.load(data_dir / "totalseg" / "example_ct_sm.nii.gz")
    fake.source = str(src)
    with pytest.raises(OutputError, match="input"):
        write_sidecar(tmp_path / "scan.nii.gz", volume=fake, prompts_json={}, model_name="m",
                      checkpoint_sha256=SHA)
    assert src.read_text() == "{}"
