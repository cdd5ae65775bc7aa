"""Issue #28 problem 3: one output guard, before the model loads, for every write of a run
against every input it reads or may read (checkpoint, model config, cache entries, DICOM
folders), through symlinks."""

from __future__ import annotations

import shutil

import pytest

from sam_med.models.configs import PACKAGE_CONFIGS
from _reliability import assert_one_line_error, dicom_copy, listing, run_cli, small_nifti

BOX = ["--box", "2", "2", "1", "9", "9", "4"]


@pytest.fixture
def scan(tmp_path):
    return small_nifti(tmp_path / "T.nii.gz")


def _snapshot(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_session_out_onto_the_checkpoint(tmp_path, scan, capsys, monkeypatch):
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "lite_medsam.pth").write_bytes(b"weights")
    monkeypatch.setenv("SAM_MED_CHECKPOINTS", str(ck))
    rc, _, err = run_cli(capsys, "segment", scan, *BOX, "--out", tmp_path / "o.nii.gz",
                         "--session-out", ck / "lite_medsam.pth")
    assert_one_line_error(rc, err, "input file")
    assert (ck / "lite_medsam.pth").read_bytes() == b"weights" and not (tmp_path / "o.nii.gz").exists()


def test_session_out_onto_a_checkpoint_location_not_yet_used(tmp_path, scan, capsys, monkeypatch):
    ck = tmp_path / "ck"
    ck.mkdir()
    monkeypatch.setenv("SAM_MED_CHECKPOINTS", str(ck))  # a later run would load what we wrote there
    rc, _, err = run_cli(capsys, "segment", scan, *BOX, "--out", tmp_path / "o.nii.gz",
                         "--session-out", ck / "lite_medsam.pth")
    assert_one_line_error(rc, err)
    assert not (ck / "lite_medsam.pth").exists()


def test_session_out_onto_the_model_config(tmp_path, scan, capsys):
    cfg = tmp_path / "m.yaml"
    shutil.copy(PACKAGE_CONFIGS / "lite_medsam.yaml", cfg)
    before = cfg.read_bytes()
    link = tmp_path / "alias.npz"
    link.symlink_to(cfg)
    for target in (cfg, link):
        rc, _, err = run_cli(capsys, "segment", scan, *BOX, "--model", cfg, "--out", tmp_path / "o.nii.gz",
                             "--session-out", target)
        assert_one_line_error(rc, err, "input file")
    assert cfg.read_bytes() == before


def test_session_out_onto_a_cache_entry(tmp_path, scan, capsys):
    cache = tmp_path / "cache"
    (cache / "ns").mkdir(parents=True)
    entry = cache / "ns" / "e.pt"
    entry.write_bytes(b"entry")
    rc, _, err = run_cli(capsys, "segment", scan, *BOX, "--cache-dir", cache, "--out", tmp_path / "o.nii.gz",
                         "--session-out", entry)
    assert_one_line_error(rc, err)
    assert entry.read_bytes() == b"entry"


@pytest.fixture
def dicom_dir(data_dir, tmp_path):
    return dicom_copy(data_dir, tmp_path)


@pytest.mark.parametrize("case", ["link_out", "seg_inside", "session_inside", "cache_inside", "sidecar_link"])
def test_input_dicom_folder_is_never_written(case, dicom_dir, tmp_path, capsys):
    link = tmp_path / "link"
    link.symlink_to(dicom_dir)
    before = _snapshot(dicom_dir)
    box = ["--box", "200", "200", "2", "260", "260", "6"]
    out = {"link_out": ["--out", link / "o.nii.gz"], "seg_inside": ["--out", dicom_dir / "seg.dcm"],
           "session_inside": ["--out", tmp_path / "o.nii.gz", "--session-out", dicom_dir / "s.npz"],
           "cache_inside": ["--out", tmp_path / "o.nii.gz", "--cache-dir", dicom_dir / ".cache"],
           "sidecar_link": ["--out", tmp_path / "o.nii.gz", "--session-out", link / "sub" / "s.npz"]}[case]
    rc, _, err = run_cli(capsys, "segment", dicom_dir, *box, *out)
    assert_one_line_error(rc, err, "input folder")
    assert _snapshot(dicom_dir) == before and listing(dicom_dir) == sorted(
        str(p.relative_to(dicom_dir)) for p in before)
    assert not (tmp_path / "o.nii.gz").exists()


def test_evaluate_report_folder_guarded_against_the_model_config(tmp_path, capsys):
    from sam_med.errors import OutputError
    from sam_med.cli.common import guard_outputs

    cfg = tmp_path / "models" / "m.yaml"
    cfg.parent.mkdir()
    shutil.copy(PACKAGE_CONFIGS / "lite_medsam.yaml", cfg)
    with pytest.raises(OutputError, match="holds the input file"):
        guard_outputs({}, {"--out": tmp_path / "models"}, model=str(cfg))
