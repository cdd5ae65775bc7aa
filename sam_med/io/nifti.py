"""NIfTI reading via nibabel (world = RAS, as ours)."""

from __future__ import annotations

import os

import numpy as np

from ..errors import GeometryError, InputFileError
from .guards import check_claimed_size, require_regular
from ..volume import Volume


def guess_slice_axis(spacing, ratio: float = 1.5) -> int:
    """Acquisition axis from spacing: the axis whose spacing is clearly the largest
    (>= ``ratio`` x each other axis), else 2."""
    sp = np.asarray(spacing, dtype=float)
    ax = int(np.argmax(sp))
    others = np.delete(sp, ax)
    if np.all(sp[ax] >= ratio * others):
        return ax
    return 2


def _check_header(img, path: str) -> None:
    """Before the voxels are read: the claimed array must fit the file and the memory
    budget, and a geometry taken from pixdim (no sform) needs positive, finite pixdims."""
    hdr = img.header
    shape = hdr.get_data_shape()
    offset = int(hdr.get("vox_offset", 0) or 0) if "vox_offset" in hdr else 0
    data_file = _pair_data_file(path) or path  # .hdr/.img pair: the voxels are in the .img file
    size = os.path.getsize(data_file)
    compressed = data_file.lower().endswith(".gz") or _is_gzip(data_file)
    check_claimed_size(path, shape, hdr.get_data_dtype(), available=max(size - (0 if compressed else offset), 0),
                       compressed=compressed, what="the NIfTI header")
    raw = _raw_nifti1_geometry(path, path.lower().endswith(".gz") or _is_gzip(path))
    if raw is not None and raw[0] == 0:  # no sform: the geometry comes from pixdim
        pix = raw[1][: max(1, min(3, len(shape)))]
        if not np.all(np.isfinite(pix)) or not np.all(pix > 0):
            raise GeometryError(f"{path}: pixdim {pix.tolist()} (voxel size) must be positive and finite "
                                "(nibabel would silently use 1 mm)")


def _pair_data_file(path: str) -> str | None:
    """The ``.img`` file of an Analyze-style ``.hdr``/``.img`` pair (None for a single file)."""
    low = path.lower()
    for h, i in ((".hdr", ".img"), (".hdr.gz", ".img.gz"), (".img", ".img"), (".img.gz", ".img.gz")):
        if low.endswith(h):
            data = path[: len(path) - len(h)] + (path[len(path) - len(h):].replace("hdr", "img").replace("HDR", "IMG"))
            return require_regular(data, "image data file")
    return None


def _header_claim(head: bytes) -> int | None:
    """Bytes a single-file NIfTI may hold (vox_offset + the voxels its header claims), or None."""
    for endian in "<>":
        size = int.from_bytes(head[:4], "little" if endian == "<" else "big")
        if size == 348 and len(head) >= 348:
            dim = np.frombuffer(head[40:56], dtype=endian + "i2").astype(np.int64)
            bitpix = int(np.frombuffer(head[72:74], dtype=endian + "i2")[0])
            offset = float(np.frombuffer(head[108:112], dtype=endian + "f4")[0])
        elif size == 540 and len(head) >= 540:
            dim = np.frombuffer(head[16:80], dtype=endian + "i8")
            bitpix = int(np.frombuffer(head[14:16], dtype=endian + "i2")[0])
            offset = float(np.frombuffer(head[168:176], dtype=endian + "i8")[0])
        else:
            continue
        n = int(dim[0])
        if not 1 <= n <= 7 or np.any(dim[1:n + 1] < 0) or bitpix <= 0 or not np.isfinite(offset) or offset < 0:
            return None
        count = 1
        for d in dim[1:n + 1]:
            count *= int(d)
        return int(offset) + count * (bitpix // 8 or 1)
    return None


def _read_single_file_bytes(path: str) -> bytes:
    """A NIfTI under an unusual name, read within its header's claim (a gzip stream is
    decompressed only up to it) and the memory budget."""
    import gzip

    from .guards import MAX_DEFLATE_RATIO, memory_budget

    gz = _is_gzip(path)
    opener = gzip.open if gz else open
    with opener(path, "rb") as fh:
        head = fh.read(540)
        claim = _header_claim(head)
        if claim is None:
            raise InputFileError(f"{path}: the NIfTI header claims invalid dimensions")
        limit = os.path.getsize(path) * (MAX_DEFLATE_RATIO if gz else 1)
        if claim > limit or claim > memory_budget():
            raise InputFileError(f"{path}: the NIfTI header claims {claim:,} bytes; the file holds at most "
                                 f"{limit:,} (memory budget {memory_budget():,})")
        raw = head + fh.read(max(claim - len(head), 0))
    if len(raw) < claim:
        raise InputFileError(f"{path}: truncated NIfTI ({len(raw):,} of {claim:,} bytes)")
    return raw


def _raw_nifti1_geometry(path: str, compressed: bool):
    """(sform_code, pixdim[1:4]) as stored in a NIfTI-1 header (nibabel fixes zeros on load), or None."""
    import gzip

    opener = gzip.open if compressed else open
    with opener(path, "rb") as fh:
        head = fh.read(348)
    if len(head) < 348:
        return None
    for endian in "<>":
        if int.from_bytes(head[:4], "little" if endian == "<" else "big") == 348:
            pix = np.frombuffer(head[76:108], dtype=endian + "f4").astype(np.float64)
            sform = int(np.frombuffer(head[254:256], dtype=endian + "i2")[0])
            return sform, pix[1:4]
    return None


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def read_nifti(path, *, time_index: int | None = None) -> Volume:
    import nibabel as nib

    path = require_regular(os.fspath(path))
    try:
        low = path.lower()
        if low.endswith((".nii", ".nii.gz", ".hdr", ".img", ".hdr.gz", ".img.gz")):
            img = nib.load(path)
        else:  # content says NIfTI, the name does not: read the single-file bytes, within the claim
            raw = _read_single_file_bytes(path)
            cls = nib.Nifti2Image if int.from_bytes(raw[:4], "little") == 540 or int.from_bytes(raw[:4], "big") == 540 else nib.Nifti1Image
            img = cls.from_bytes(raw)
        shape = img.shape
        _check_header(img, path)
        data = np.asanyarray(img.dataobj)
    except InputFileError:
        raise
    except Exception as exc:  # nibabel raises many kinds for corrupt files
        raise InputFileError(f"{path}: cannot read NIfTI ({' '.join(str(exc).split())})") from exc
    if data.ndim == 4 and shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 4:
        n = shape[3]
        if time_index is None:
            raise InputFileError(
                f"{path}: 4D NIfTI with {n} volumes (shape {tuple(shape)}); "
                f"choose one with time_index=0..{n - 1} (CLI --time-index N)"
            )
        if not 0 <= time_index < n:
            raise InputFileError(f"{path}: time_index {time_index} out of range 0..{n - 1}")
        data = data[..., time_index]
    elif time_index not in (None, 0):
        raise InputFileError(f"{path}: time_index={time_index} given but the image is 3D")
    if data.ndim != 3:
        raise InputFileError(f"{path}: expected a 3D image, got {data.ndim}D with shape {tuple(shape)}")
    if data.dtype.fields is not None or np.iscomplexobj(data):
        raise InputFileError(f"{path}: RGB/complex NIfTI images are not supported")
    affine = img.affine
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    meta = {"format": "nifti"}
    if time_index is not None:
        meta["time_index"] = int(time_index)
    return Volume(
        array=np.ascontiguousarray(data),
        affine=affine,
        modality=None,
        intensity="raw",
        slice_axis=guess_slice_axis(spacing),
        source=os.path.abspath(path),
        meta=meta,
    )
