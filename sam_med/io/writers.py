"""Writers: label maps and images on the exact geometry of a source volume.

Every writer writes to a temporary file in the destination folder and renames it
into place (``os.replace``), so a failure never leaves a half-written file, and
refuses to write onto the source it was derived from.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import GeometryError, OutputError
from ..volume import Volume
from .atomic import atomic_path, default_file_mode  # noqa: F401  (re-exported)

LABEL_EXTS = (".nii.gz", ".nii", ".nrrd", ".mha")
IMAGE_EXTS = LABEL_EXTS + (".npz",)


def _ext(path: str) -> str:
    low = path.lower()
    for ext in (".nii.gz",) + tuple(e for e in IMAGE_EXTS if e != ".nii.gz"):
        if low.endswith(ext):
            return ext
    return os.path.splitext(low)[1]


def _same_file(a: str, b: str) -> bool:
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def check_not_input(path: str, like: Volume | None) -> None:
    """Refuse to write onto ``like.source`` or any DICOM file it was read from."""
    if like is None:
        return
    protected = []
    if like.source:
        protected.append(like.source)
    if like.dicom is not None:
        protected.extend(like.dicom.file_paths)
    protected.extend(like.meta.get("source_files", []) if isinstance(like.meta.get("source_files"), list) else [])
    for p in protected:
        if _same_file(path, p):
            raise OutputError(f"{path}: refusing to overwrite the input image {p}")


def label_array(array_or_volume, like: Volume) -> np.ndarray:
    """Validate a label map against ``like``'s grid and cast it to uint8/uint16."""
    if isinstance(array_or_volume, Volume):
        if not array_or_volume.same_grid(like):
            raise GeometryError(
                f"label grid {array_or_volume.shape} / affine differs from the target grid {like.shape}; "
                "resample it first"
            )
        arr = array_or_volume.array
    else:
        arr = np.asarray(array_or_volume)
    if arr.shape != like.shape:
        raise GeometryError(f"label shape {arr.shape} does not match the image grid {like.shape}")
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise OutputError(f"labels must be integers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr)):
            raise OutputError("labels must be whole numbers; got fractional or NaN values")
    lo, hi = (arr.min(), arr.max()) if arr.size else (0, 0)
    if lo < 0:
        raise OutputError(f"labels must be >= 0, found {lo}")
    if hi <= 255:
        return arr.astype(np.uint8)
    if hi <= 65535:
        return arr.astype(np.uint16)
    raise OutputError(f"label value {hi} does not fit uint16")


def _write_nifti(array: np.ndarray, affine: np.ndarray, path: str, intent_label: bool,
                 descrip: str | None = None) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(array, affine)
    if descrip:
        img.header["descrip"] = descrip.encode("ascii")[:79]
    img.set_sform(affine, code=1)  # scanner-anatomical
    img.set_qform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    if intent_label:
        img.header.set_intent("label")
    nib.save(img, path)


def save_label(array_or_volume, path, like: Volume, *, overwrite: bool = True, descrip: str | None = None) -> str:
    """Write a label map on ``like``'s exact grid to NIfTI (.nii/.nii.gz), NRRD (.nrrd) or MHA (.mha).

    The array is (X, Y, Z) like ``like.array``; values are cast to uint8 (or uint16
    when > 255). ``descrip``: text for a NIfTI header's ``descrip`` field (79 ASCII
    characters; accepted entries bind their mask to the scan with it). Returns the absolute
    path written.
    """
    path = os.path.abspath(os.fspath(path))
    check_not_input(path, like)
    ext = _ext(path)
    if ext not in LABEL_EXTS:
        raise OutputError(f"{path}: unsupported label format {ext!r}; use one of {', '.join(LABEL_EXTS)}")
    arr = label_array(array_or_volume, like)
    with atomic_path(path, overwrite=overwrite) as tmp:
        if ext in (".nii", ".nii.gz"):
            _write_nifti(arr, like.affine, tmp, intent_label=True, descrip=descrip)
        else:
            from .itk import write_itk

            write_itk(arr, like.affine, tmp)
    return path


def save_volume(volume: Volume, path, *, overwrite: bool = True) -> str:
    """Write an image Volume to NIfTI, NRRD, MHA or the research npz format (data + geometry kept)."""
    path = os.path.abspath(os.fspath(path))
    check_not_input(path, volume)
    ext = _ext(path)
    if ext not in IMAGE_EXTS:
        raise OutputError(f"{path}: unsupported image format {ext!r}; use one of {', '.join(IMAGE_EXTS)}")
    arr = volume.array
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    with atomic_path(path, overwrite=overwrite) as tmp:
        if ext in (".nii", ".nii.gz"):
            _write_nifti(arr, volume.affine, tmp, intent_label=volume.intensity == "label")
        elif ext == ".npz":
            from .npz import npz_geometry, to_dhw

            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, imgs=to_dhw(arr), **npz_geometry(volume.affine),
                                    intensity=np.array(volume.intensity),
                                    modality=np.array(volume.modality or ""))
        else:
            from .itk import write_itk

            write_itk(arr, volume.affine, tmp)
    return path


def save_npz_segs(array, path, like: Volume, *, overwrite: bool = True) -> str:
    """Write a label map in the CVPR 2024 challenge convention: key ``segs``, (D, H, W) order
    (the input npz's ``imgs`` order), plus the geometry keys."""
    from .npz import npz_geometry, to_dhw

    path = os.path.abspath(os.fspath(path))
    if not path.lower().endswith(".npz"):
        raise OutputError(f"{path}: the challenge format is .npz")
    check_not_input(path, like)
    arr = label_array(array, like)
    with atomic_path(path, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, segs=to_dhw(arr), **npz_geometry(like.affine))
    return path
