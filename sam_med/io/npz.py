"""The research npz format (MedSAM2 / CVPR 2024 challenge, ../shared/data/ct_lesion).

Keys: ``imgs`` (D, H, W), ``gts`` (D, H, W) optional, ``spacing`` (x, y, z mm),
``direction`` (9, ITK row-major direction matrix, LPS) and ``origin`` (3, LPS),
optionally ``boxes``. These are SimpleITK conventions: array order (z, y, x) is
the transpose of our (x, y, z); the world is LPS.
"""

from __future__ import annotations

import os
import re
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np

from ..errors import InputFileError
from .guards import (MAX_DEFLATE_RATIO, check_claimed_size, check_count_finite, check_spacing, memory_budget,
                     require_regular)
from ..volume import Volume, affine_from_geometry, lps_to_ras, ras_to_lps, split_affine


@dataclass
class NpzCase:
    """A research npz case: image (and label) as Volumes on the same grid."""

    image: Volume
    label: Volume | None
    boxes: np.ndarray | None
    raw: tuple[str, ...]  # the keys present in the file


def _modality_from_name(path: str) -> str | None:
    m = re.match(r"^(CT|MR)[_-]", os.path.basename(path))
    return m.group(1) if m else None


#: a pickled member (challenge prompts) larger than this is refused (bytes)
MAX_PICKLE_BYTES = 8 << 20


def _npy_header(fh, version):
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fh)
    raise ValueError(f"unsupported .npy format version {version}")


def _member_claim(path, info: zipfile.ZipInfo) -> None:
    """A zip member's own size claim against its stored bytes (deflate ratio) and the budget;
    :class:`zipfile.ZipExtFile` never yields more than this claim."""
    if info.compress_type == zipfile.ZIP_STORED:
        ok = info.file_size <= info.compress_size
    else:
        ok = info.file_size <= info.compress_size * MAX_DEFLATE_RATIO + 4096
    if not ok or info.file_size > memory_budget():
        raise InputFileError(f"{path}: npz member {info.filename!r} claims {info.file_size:,} bytes from "
                             f"{info.compress_size:,} stored; corrupt or a zip bomb")


def read_npz_arrays(path, *, keys=None, object_loader=None) -> dict[str, object]:
    """The ``.npy`` members of an npz, each read within its claims (see :mod:`.guards`):

    * members whose name does not end in ``.npy`` are never read (``np.load`` would read
      them whole as bytes);
    * a member's size claim must fit its stored bytes and the memory budget; its ``.npy``
      header's array claim must fit the member and the budget, and all of them together
      the budget; exactly the claimed bytes are read (extra trailing data is ignored);
    * object (pickled) members go to ``object_loader(bytes, where)`` (at most
      :data:`MAX_PICKLE_BYTES`) and are refused when it is None.

    ``keys``: read only these members (others are skipped unread)."""
    path = require_regular(os.fspath(path))
    out: dict[str, object] = {}
    total = 0
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy") or info.is_dir():
                    continue
                key = info.filename[:-4]
                if keys is not None and key not in keys:
                    continue
                _member_claim(path, info)
                with zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    shape, fortran, dtype = _npy_header(fh, version)
                    where = f"{path}: '{key}'"
                    if dtype.hasobject:
                        if object_loader is None:
                            raise InputFileError(f"{where} holds Python objects; refused")
                        raw = fh.read(MAX_PICKLE_BYTES + 1)
                        if len(raw) > MAX_PICKLE_BYTES:
                            raise InputFileError(f"{where}: pickled data over {MAX_PICKLE_BYTES:,} bytes; refused")
                        out[key] = object_loader(raw, where)
                        continue
                    total += check_claimed_size(path, shape, dtype, available=info.file_size, compressed=False,
                                                what=f"member {info.filename!r}")
                    if total > memory_budget():
                        raise InputFileError(f"{path}: the npz arrays total {total:,} bytes, over the memory budget")
                    count = 1
                    for d in shape:
                        count *= int(d)
                    arr = np.empty(count, dtype=dtype)
                    view = memoryview(arr).cast("B") if count else memoryview(b"")
                    got = 0
                    while got < len(view):
                        n = fh.readinto(view[got: got + (16 << 20)])
                        if not n:
                            raise InputFileError(f"{where}: truncated ({got:,} of {len(view):,} bytes)")
                        got += n
                    out[key] = arr.reshape(shape, order="F" if fortran else "C")
    except InputFileError:
        raise
    except (OSError, ValueError, SyntaxError, TypeError, zipfile.BadZipFile, EOFError, NotImplementedError,
            zlib.error) as exc:
        raise InputFileError(f"{path}: cannot read npz ({exc.__class__.__name__}: {exc})") from exc
    return out


def check_npz_members(path) -> None:
    """Refuse, before any allocation, an npz whose members claim more than they can hold
    or than the memory budget (the checks of :func:`read_npz_arrays`, without reading)."""
    try:
        with zipfile.ZipFile(require_regular(os.fspath(path))) as zf:
            for info in zf.infolist():
                _member_claim(path, info)
    except (OSError, zipfile.BadZipFile) as exc:
        raise InputFileError(f"{path}: cannot read npz ({exc.__class__.__name__}: {exc})") from exc


def _floats(data, key, n, path) -> np.ndarray:
    try:
        v = np.asarray(data[key], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InputFileError(f"{path}: {key!r} must be {n} numbers, got {data[key]!r:.80}") from exc
    return check_count_finite(v, n, repr(key), path)


def read_npz(path) -> NpzCase:
    path = require_regular(os.fspath(path))
    from .challenge import is_challenge_npz

    if is_challenge_npz(path):  # CVPR 2025 challenge file: pickled prompts, (z, y, x) spacing
        from .challenge import challenge_npz_case

        return challenge_npz_case(path)
    data = read_npz_arrays(path)
    keys = tuple(data)
    if "imgs" not in data:
        raise InputFileError(f"{path}: npz has no 'imgs' key (keys: {', '.join(keys) or 'none'})")
    imgs = data["imgs"]
    if imgs.dtype.kind not in "biuf":
        raise InputFileError(f"{path}: 'imgs' has dtype {imgs.dtype}; an image needs real numbers")
    if imgs.ndim != 3:
        raise InputFileError(
            f"{path}: 'imgs' must be a 3D (D, H, W) array, got shape {imgs.shape} "
            "(2D/RGB challenge images are not volumes)"
        )
    if "spacing" not in data:
        raise InputFileError(f"{path}: npz has no 'spacing' key; the voxel size is unknown")
    spacing = check_spacing(_floats(data, "spacing", 3, path), path, "'spacing'")
    meta: dict = {"format": "npz"}
    notes = []
    if "direction" in data:
        direction = _floats(data, "direction", 9, path).reshape(3, 3)
    else:
        direction = np.eye(3)
        notes.append("no 'direction' key: identity assumed")
    if "origin" in data:
        origin = _floats(data, "origin", 3, path)
    else:
        origin = np.zeros(3)
        notes.append("no 'origin' key: (0, 0, 0) assumed")
    if notes:
        meta["geometry_note"] = "; ".join(notes)
    affine = lps_to_ras(affine_from_geometry(spacing, direction, origin))
    if "intensity" in data:
        intensity = str(data["intensity"])
    else:
        intensity = "windowed" if imgs.dtype == np.uint8 else "raw"
    if "modality" in data:
        modality = str(data["modality"]) or None
    else:
        modality = _modality_from_name(path)
        if modality:
            meta["modality_from"] = "file name prefix"
    src = os.path.abspath(path)
    arr = np.ascontiguousarray(imgs.transpose(2, 1, 0))
    image = Volume(arr, affine, modality=modality, intensity=intensity, slice_axis=2, source=src, meta=meta)
    label = None
    if "gts" in data:
        gts = data["gts"]
        if gts.shape != imgs.shape:
            raise InputFileError(f"{path}: 'gts' shape {gts.shape} differs from 'imgs' shape {imgs.shape}")
        label = Volume(np.ascontiguousarray(gts.transpose(2, 1, 0)), affine, modality=modality,
                       intensity="label", slice_axis=2, source=src, meta={"format": "npz", "key": "gts"})
    boxes = np.asarray(data["boxes"]) if "boxes" in data else None
    return NpzCase(image=image, label=label, boxes=boxes, raw=keys)


def npz_geometry(affine: np.ndarray) -> dict[str, np.ndarray]:
    """spacing/direction/origin keys (ITK/LPS convention) for a voxel->RAS affine."""
    spacing, direction, origin = split_affine(ras_to_lps(affine))
    return {"spacing": spacing, "direction": direction.reshape(-1), "origin": origin}


def to_dhw(array: np.ndarray) -> np.ndarray:
    """(X, Y, Z) -> the npz (D, H, W) = (z, y, x) order."""
    return np.ascontiguousarray(np.asarray(array).transpose(2, 1, 0))
