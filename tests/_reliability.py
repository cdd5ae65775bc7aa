"""Helpers shared by tests/test_reliability_*.py and tests/test_fuzz_*.py (no tests of its own)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np

from sam_med.cli import main

BOX = ["2", "2", "1", "9", "9", "4"]  # inside the (12, 12, 6) test volume


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """``sam-med argv`` in-process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, err: str, needle: str | None = None) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("sam-med: error: ")]
    assert rc == 2, (rc, err)
    assert len(errors) == 1 and "Traceback" not in err, err
    assert all(ln.startswith("sam-med: ") for ln in lines), err
    if needle:
        assert needle.lower() in errors[0].lower(), errors[0]


def listing(folder) -> list[str]:
    """Every file and folder under ``folder`` (relative paths, sorted)."""
    folder = Path(folder)
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def small_nifti(path, data=None, *, pixdim=None) -> Path:
    """A (12, 12, 6) float32 NIfTI with 1 x 1 x 2 mm voxels (or ``data``)."""
    if data is None:
        rng = np.random.default_rng(0)
        data = rng.normal(0, 100, (12, 12, 6)).astype(np.float32)
    if pixdim is not None:  # no sform / qform: the geometry comes from pixdim alone (.nii only)
        nib.save(nib.Nifti1Image(np.asarray(data), None), str(path))
        raw = bytearray(Path(path).read_bytes())
        raw[80:92] = np.asarray(pixdim, "<f4").tobytes()  # pixdim[1:4], patched past nibabel's fix-up
        Path(path).write_bytes(bytes(raw))
        return Path(path)
    img = nib.Nifti1Image(np.asarray(data), np.diag([1.0, 1.0, 2.0, 1.0]))
    nib.save(img, str(path))
    return Path(path)


def small_npz(path, **overrides) -> Path:
    """A research npz case (D, H, W) = (6, 12, 12) with geometry keys; ``overrides`` replace keys."""
    rng = np.random.default_rng(1)
    keys = {"imgs": rng.integers(0, 255, (6, 12, 12), dtype=np.uint8),
            "spacing": np.array([1.0, 1.0, 2.0]), "direction": np.eye(3).reshape(-1), "origin": np.zeros(3)}
    keys.update(overrides)
    keys = {k: v for k, v in keys.items() if v is not None}
    np.savez_compressed(str(path), **keys)
    return Path(path)


def dicom_copy(data_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the 20-slice CT DICOM series."""
    dst = tmp_path / "dicom"
    shutil.copytree(data_dir / "totalseg" / "example_ct_dicom", dst)
    return dst


def dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file())


def edit_dicom(path: Path, **tags) -> None:
    """Set DICOM tags to raw (possibly malformed) string values, keeping the file otherwise."""
    import pydicom

    ds = pydicom.dcmread(str(path))
    for k, v in tags.items():
        elem = ds[k]
        elem._value = v  # raw value, bypassing pydicom's conversion (what a broken writer produces)
    ds.save_as(str(path))


def file_state(folder) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


__all__ = ["BOX", "run_cli", "assert_one_line_error", "listing", "small_nifti", "small_npz", "dicom_copy",
           "dicom_files", "edit_dicom", "file_state", "os"]
