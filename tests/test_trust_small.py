"""Issue #28 problem 7: the smaller items, each a one-line error (exit 2) or correct behaviour."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest

from sam_med import io as smio
from sam_med.errors import SamMedError
from _reliability import (assert_one_line_error, dicom_copy, dicom_files, edit_dicom, listing, run_cli,
                                      small_nifti)

BOX = ["--box", "2", "2", "1", "9", "9", "4"]


def _challenge(path, imgs):
    clicks = np.empty(1, object)
    clicks[0] = {"fg": [[1, 5, 5]], "bg": []}
    order = np.empty(1, object)
    order[0] = ["fg"]
    np.savez(path, imgs=imgs, spacing=np.array([3.0, 1.0, 1.0]), clicks=clicks, clicks_order=order)
    return path


@pytest.mark.parametrize("kind", ["nan", "inf", "complex"])
def test_challenge_imgs_nan_inf_complex(kind, tmp_path, capsys):
    imgs = np.full((4, 12, 12), 50.0)
    if kind == "complex":
        imgs = imgs.astype(np.complex64)
    else:
        imgs[1, 2, 3] = np.nan if kind == "nan" else np.inf
    p = _challenge(tmp_path / "CT_x.npz", imgs)
    rc, _, err = run_cli(capsys, "segment", p, "--model", "threshold", "--out", tmp_path / "o.npz")
    assert_one_line_error(rc, err, "imgs")
    assert not (tmp_path / "o.npz").exists()


def test_research_npz_complex_imgs(tmp_path):
    p = tmp_path / "c.npz"
    np.savez(p, imgs=np.ones((4, 12, 12), np.complex64), spacing=np.ones(3))
    with pytest.raises(SamMedError, match="real numbers"):
        smio.load(p)


def test_session_out_in_challenge_mode(tmp_path, capsys):
    p = _challenge(tmp_path / "CT_x.npz", np.full((4, 12, 12), 50, np.uint8))
    rc, _, err = run_cli(capsys, "segment", p, "--model", "threshold", "--out", tmp_path / "o.npz",
                         "--session-out", tmp_path / "s.npz")
    assert_one_line_error(rc, err, "--session-out")


def test_dicom_seg_into_a_new_folder_inside_an_output_set(data_dir, tmp_path):
    from sam_med.io.atomic import OutputSet
    from sam_med.io.dicom_seg import write_dicom_seg

    vol = smio.load(data_dir / "dicom" / "siemens_mr_sagittal")
    lab = np.zeros(vol.shape, np.uint8)
    lab[10:20, 10:20, 5:8] = 1
    out = tmp_path / "newdir" / "seg.dcm"
    with OutputSet() as outs:
        write_dicom_seg(lab, vol, out, [{"id": 1, "name": "x"}], algorithm={"name": "test", "version": "0"})
        outs.commit()
    assert out.is_file()


def test_over_long_out_leaves_no_folders(tmp_path, capsys):
    scan = small_nifti(tmp_path / "T.nii.gz")
    out = tmp_path / "a" / "b" / ("x" * 300) / "o.nii.gz"
    rc, _, err = run_cli(capsys, "segment", scan, *BOX, "--out", out)
    assert_one_line_error(rc, err, "longer than")
    assert not (tmp_path / "a").exists()


def _csv(tmp_path, image, label):
    p = tmp_path / "d.csv"
    p.write_text(f"image,label\n{image},{label}\n")
    return p


def test_evaluate_failure_leaves_no_report_folder(tmp_path, capsys, monkeypatch):
    import errno

    import sam_med.evaluation.runner as runner

    scan = small_nifti(tmp_path / "T.nii.gz")
    lab = small_nifti(tmp_path / "L.nii.gz", (np.arange(12 * 12 * 6).reshape(12, 12, 6) % 2).astype(np.float32))

    def full_disk(dataset, factory, config, out, **kw):
        from pathlib import Path

        Path(out).mkdir(parents=True)
        (Path(out) / "config.json").write_text("{}")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runner, "run_evaluation", full_disk)
    rc, _, err = run_cli(capsys, "evaluate", _csv(tmp_path, scan, lab), "--model", "threshold",
                         "--out", tmp_path / "rep")
    assert_one_line_error(rc, err, "space")
    assert not (tmp_path / "rep").exists()


def test_evaluate_row_pointing_at_a_text_file_quotes_nothing(tmp_path, capsys):
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0:SECRET:/root:/bin/bash\n")
    lab = small_nifti(tmp_path / "L.nii.gz")
    run_cli(capsys, "evaluate", _csv(tmp_path, secret, lab), "--model", "threshold", "--out", tmp_path / "rep")
    texts = [p.read_text(errors="replace") for p in (tmp_path / "rep").rglob("*") if p.is_file()]
    assert texts and not any("SECRET" in t or "root:x" in t for t in texts)


@pytest.mark.parametrize("window", [["40", "0"], ["40", "-5"], ["40", "inf"], ["nan", "400"]])
def test_window_values_checked(window, tmp_path, capsys):
    scan = small_nifti(tmp_path / "T.nii.gz")
    rc, _, err = run_cli(capsys, "segment", scan, *BOX, "--window", *window, "--out", tmp_path / "o.nii.gz")
    assert_one_line_error(rc, err, "--window")


def test_window_never_silently_ignored(tmp_path, capsys):
    from types import SimpleNamespace

    from sam_med.cli.segment import view_options

    args = SimpleNamespace(window=[40.0, 400.0], modality="auto", axis=None)
    assert view_options(args, None) == {"window": (40.0, 400.0), "modality": "CT"}
    scan = small_nifti(tmp_path / "T.nii.gz")
    rc, _, err = run_cli(capsys, "segment", scan, *BOX, "--window", "40", "400", "--modality", "MR",
                         "--out", tmp_path / "o.nii.gz")
    assert_one_line_error(rc, err, "--window")


def test_huge_scl_slope(tmp_path):
    img = nib.Nifti1Image(np.arange(12 * 12 * 6, dtype=np.int16).reshape(12, 12, 6), np.eye(4))
    img.header.set_slope_inter(1e38, 0)
    p = tmp_path / "s.nii.gz"
    nib.save(img, p)
    with pytest.raises(SamMedError, match="scl_slope"):
        smio.load(p)


def test_hdr_img_pair_loads(tmp_path):
    data = np.random.default_rng(0).normal(0, 100, (12, 12, 6)).astype(np.float32)
    nib.save(nib.Nifti1Pair(data, np.diag([1.0, 1.0, 2.0, 1.0])), tmp_path / "p.img")
    for name in ("p.hdr", "p.img"):
        v = smio.load(tmp_path / name)
        assert v.shape == (12, 12, 6) and np.allclose(v.array, data)


def test_dicom_without_series_instance_uid_loads(data_dir, tmp_path):
    d = dicom_copy(data_dir, tmp_path)
    import pydicom

    for f in dicom_files(d):
        ds = pydicom.dcmread(f)
        del ds.SeriesInstanceUID
        ds.save_as(f)
    v = smio.load(d)
    assert v.shape[2] == 20


def test_ansi_escapes_in_object_names(tmp_path, capsys):
    import json

    scan = small_nifti(tmp_path / "T.nii.gz")
    pr = tmp_path / "p.json"
    pr.write_text(json.dumps({"objects": [{"id": 1, "name": "\x1b[2J\x1b[31mevil", "box": [2, 2, 1, 9, 9, 4]}]}))
    rc, _, err = run_cli(capsys, "segment", scan, "--prompts", pr, "--out", tmp_path / "o.nii.gz")
    assert_one_line_error(rc, err, "printable")
    assert "\x1b" not in err


def test_no_warning_line_after_an_error(data_dir, tmp_path, capsys):
    d = dicom_copy(data_dir, tmp_path)
    for f in dicom_files(d)[:3]:
        edit_dicom(f, InstanceNumber="1.5.7x")
    edit_dicom(dicom_files(d)[0], ImageOrientationPatient="0\\0\\0\\0\\0\\0")
    rc, _, err = run_cli(capsys, "info", d)
    assert_one_line_error(rc, err)
    assert "sam-med: warning" not in err


def test_box_minus_1e308_is_one_line(tmp_path, capsys):
    scan = small_nifti(tmp_path / "T.nii.gz")
    rc, _, err = run_cli(capsys, "segment", scan, "--box", "-1e308", "0", "0", "1", "1", "1",
                         "--out", tmp_path / "o.nii.gz")
    assert_one_line_error(rc, err, "box")
    rc, _, err = run_cli(capsys, "segment", scan, "--box", "1", "--out", tmp_path / "o.nii.gz")
    assert_one_line_error(rc, err)
    assert listing(tmp_path) == ["T.nii.gz"] and shutil.which is not None
