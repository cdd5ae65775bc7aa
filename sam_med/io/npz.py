"""The research npz format (MedSAM2 / CVPR 2024 challenge, ../shared/data/ct_lesion).

Keys: ``imgs`` (D, H, W), ``gts`` (D, H, W) optional, ``spacing`` (x, y, z mm),
``direction`` (9, ITK row-major direction matrix, LPS) and ``origin`` (3, LPS),
optionally ``boxes``. These are SimpleITK conventions: array order (z, y, x) is
the transpose of our (x, y, z); the world is LPS.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import InputFileError
from .guards import check_count_finite, check_spacing, require_regular
from .npz_format import NpzCase, check_npz_members, modality_from_name, read_npz_arrays  # noqa: F401 (public here)
from ..volume import Volume, affine_from_geometry, lps_to_ras, ras_to_lps, split_affine


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
        modality = modality_from_name(path)
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
