"""Reading and writing scans with exact geometry.

Public API::

    load(path, *, series_uid=None, time_index=None, resample=False) -> Volume
    load_label(path, like=None) -> Volume
    read_npz(path) -> NpzCase
    list_dicom_series(path) -> list[SeriesInfo]
    save_label(array_or_volume, path, like, *, overwrite=True) -> str
    save_npz_segs(array, path, like) -> str
    save_volume(volume, path) -> str
    sample_path(name) -> str
    detect_format(path) -> str

``path`` may be a file (NIfTI, NRRD, MHA/MHD, npz, DICOM), a folder (DICOM,
searched recursively) or a list of DICOM files. The format is chosen from the
file's content (magic bytes), not from its name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import GeometryError, InputFileError
from ..volume import Volume
from .detect import detect_format
from .dicom import SeriesInfo, list_dicom_series, load_dicom
from .dicom_seg import read_dicom_seg, read_dicom_seg_masks, write_dicom_seg
from .npz import NpzCase, read_npz
from .sidecar import read_sidecar, write_sidecar
from .writers import save_label, save_npz_segs, save_volume

__all__ = [
    "load", "load_label", "read_npz", "list_dicom_series", "save_label", "save_npz_segs",
    "save_volume", "sample_path", "detect_format", "NpzCase", "SeriesInfo", "reorient_to",
    "write_dicom_seg", "read_dicom_seg", "read_dicom_seg_masks", "write_sidecar", "read_sidecar",
]

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "data"


def sample_path(name: str) -> str:
    """Path of a bundled sample file (``example_ct_sm.nii.gz``, ``example_seg.nii.gz``, ``labels.json``)."""
    p = SAMPLE_DIR / name
    if not p.is_file():
        avail = sorted(x.name for x in SAMPLE_DIR.glob("*") if x.name != "README.md") if SAMPLE_DIR.is_dir() else []
        raise InputFileError(f"no bundled sample named {name!r}; available: {', '.join(avail) or 'none'}")
    return str(p)


def load(path, *, series_uid: str | None = None, time_index: int | None = None,
         resample: bool = False, nonfinite: str = "refuse") -> Volume:
    """Read an image (see :func:`_load`) and check its values: NaN / infinite voxels are
    refused with their count (``nonfinite="replace"`` sets them to the finite minimum)
    and every axis needs a positive, finite spacing."""
    from .guards import check_affine, check_finite, check_magnitude

    if nonfinite not in ("refuse", "replace"):
        raise InputFileError(f"nonfinite must be 'refuse' or 'replace', got {nonfinite!r}")
    vol = _load(path, series_uid=series_uid, time_index=time_index, resample=resample)
    where = vol.source or path
    check_affine(vol.affine, where)
    arr = check_finite(vol.array, where, nonfinite)
    check_magnitude(arr, where)
    if arr is not vol.array:
        vol = vol.with_array(arr)
        vol.meta["nonfinite_replaced"] = True
    return vol


def _load(path, *, series_uid: str | None = None, time_index: int | None = None,
          resample: bool = False) -> Volume:
    """Read an image as a :class:`~sam_med.volume.Volume` (format chosen by content).

    ``series_uid`` picks a DICOM series when a folder holds several; ``time_index``
    picks a volume of a 4D DICOM series / 4D NIfTI; ``resample=True`` allows
    DICOM series with uneven gaps or gantry tilt to be resampled onto a regular
    grid (otherwise they are refused with a message saying what was found).
    """
    if isinstance(path, (list, tuple)):
        return load_dicom(list(path), series_uid=series_uid, time_index=time_index, resample=resample)
    fmt = detect_format(path)
    if fmt in ("dicom", "dicom_dir"):
        return load_dicom(path, series_uid=series_uid, time_index=time_index, resample=resample)
    if series_uid is not None:
        raise InputFileError(f"{path}: series_uid given but the file is {fmt}, not DICOM")
    if fmt == "nifti":
        from .nifti import read_nifti

        return read_nifti(path, time_index=time_index)
    if time_index not in (None, 0):
        raise InputFileError(f"{path}: time_index given but {fmt} images are read as 3D")
    if fmt == "npz":
        case = read_npz(path)
        return case.image
    from .itk import read_itk

    return read_itk(path, fmt)


def _as_label(vol: Volume, path) -> Volume:
    arr = vol.array
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr)):
            raise InputFileError(f"{path}: not a label map (fractional values, e.g. {arr.flat[np.argmax(arr != np.round(arr))]})")
        lo, hi = (arr.min(), arr.max())
        dt = np.uint8 if lo >= 0 and hi <= 255 else np.uint16 if lo >= 0 and hi <= 65535 else np.int32
        arr = arr.astype(dt)
    elif not np.issubdtype(arr.dtype, np.integer):
        raise InputFileError(f"{path}: not a label map (dtype {arr.dtype})")
    return vol.with_array(arr, intensity="label")


def reorient_to(vol: Volume, like: Volume, atol: float = 1e-3) -> Volume | None:
    """``vol`` re-indexed onto ``like``'s grid when the two grids hold exactly the same
    voxel centres in a different axis order / direction (a lossless permutation and
    flip); None when they are not such a pair."""
    from ..volume import apply_affine

    a, b = like.affine, vol.affine
    # voxel of `vol` for each axis step of `like`
    m = np.linalg.inv(b) @ a
    rot = m[:3, :3]
    perm = np.abs(rot).argmax(axis=0)  # like axis q -> vol axis perm[q]
    if sorted(perm.tolist()) != [0, 1, 2]:
        return None
    target = np.zeros((3, 3))
    for q in range(3):
        target[perm[q], q] = np.sign(rot[perm[q], q])
    shape_ok = all(vol.shape[perm[q]] == like.shape[q] for q in range(3))
    if not shape_ok:
        return None
    corners = np.array([[i, j, k] for i in (0, like.shape[0] - 1) for j in (0, like.shape[1] - 1)
                        for k in (0, like.shape[2] - 1)], dtype=float)
    idx = apply_affine(m, corners)
    if np.abs(idx - np.round(idx)).max() * max(vol.spacing) > atol or not np.allclose(rot, target, atol=atol / max(vol.spacing.max(), 1)):
        return None
    arr = np.transpose(vol.array, perm)
    for q in range(3):
        if target[perm[q], q] < 0:
            arr = np.flip(arr, axis=q)
    arr = np.ascontiguousarray(arr)
    out = Volume(arr, like.affine, modality=vol.modality, intensity=vol.intensity, slice_axis=like.slice_axis,
                 source=vol.source, dicom=vol.dicom, meta=dict(vol.meta))
    # exactness check on the world position of the first and last voxel
    if not np.allclose(apply_affine(b, idx[[0, -1]]), apply_affine(a, corners[[0, -1]]), atol=atol):
        return None
    out.meta["reoriented_from"] = "".join(vol.axcodes)
    return out


def load_label(path, like: Volume | None = None) -> Volume:
    """Read a label map (NIfTI, NRRD, MHA, npz ``gts``) with ``intensity="label"`` and an integer dtype.

    With ``like``: the label must lie on the same grid (shape, and affine within
    1e-3 mm). A grid that holds the same voxel centres in another axis order or
    direction (e.g. LAS vs LPS) is re-indexed losslessly; anything else raises
    :class:`GeometryError` saying what differs.
    """
    if not isinstance(path, (list, tuple)) and detect_format(path) == "npz":
        case = read_npz(path)
        if case.label is None:
            raise InputFileError(f"{path}: npz has no 'gts' label key (keys: {', '.join(case.raw)})")
        vol = case.label
    else:
        vol = load(path)
    vol = _as_label(vol, path)
    if like is None or vol.same_grid(like):
        return vol
    re = reorient_to(vol, like)
    if re is not None:
        return re
    diffs = []
    if vol.shape != like.shape:
        diffs.append(f"shape {vol.shape} vs {like.shape}")
    if not np.allclose(vol.spacing, like.spacing, atol=1e-3):
        diffs.append(f"spacing {np.round(vol.spacing, 4).tolist()} vs {np.round(like.spacing, 4).tolist()} mm")
    if vol.axcodes != like.axcodes:
        diffs.append(f"orientation {''.join(vol.axcodes)} vs {''.join(like.axcodes)}")
    if not np.allclose(vol.origin, like.origin, atol=1e-3):
        diffs.append(
            f"origin {np.round(vol.origin, 3).tolist()} vs {np.round(like.origin, 3).tolist()} mm "
            f"(off by {np.linalg.norm(vol.origin - like.origin):.3f} mm)"
        )
    if not diffs:
        diffs.append(f"affine differs by up to {np.abs(vol.affine - like.affine).max():.4g}")
    raise GeometryError(
        f"{path}: the label map is not on the image grid ({like.source or 'image'}): " + "; ".join(diffs)
    )
