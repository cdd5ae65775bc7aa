"""Numeric DICOM tag parsing shared by the series scanner and the volume loader.

Every reader here turns a malformed or missing value into one :class:`InputFileError`
line naming the file and the tag.
"""

from __future__ import annotations

import numpy as np

from ...errors import InputFileError
from ..guards import check_count_finite, check_spacing

#: SOP Class UID of a DICOM Segmentation object (refused as an image series).
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


def malformed_tag_error(path, exc) -> InputFileError:
    """One-line error for a numeric tag that pydicom could not convert (``exc``) while reading ``path``."""
    where = path if not isinstance(path, (list, tuple)) else "the given DICOM files"
    return InputFileError(f"{where}: malformed DICOM numeric tag ({exc.__class__.__name__}: "
                          f"{' '.join(str(exc).split())[:200]})")



def read_floats(ds, key, n, path) -> np.ndarray:
    """Tag ``key`` of ``ds`` as ``n`` finite float64 values (PixelSpacing also positive)."""
    v = ds.get(key)
    if v is None:
        raise InputFileError(f"{path}: missing {key}; the slice geometry is unknown")
    try:
        out = np.array([float(x) for x in v], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputFileError(f"{path}: invalid {key} {v!r}") from exc
    check_count_finite(out, n, key, path)
    if key == "PixelSpacing":
        check_spacing(out, path, "PixelSpacing")
    return out



def rescale_of(ds) -> tuple[float, float]:
    """(RescaleSlope, RescaleIntercept), defaults (1, 0) when absent or empty."""
    slope = float(ds.get("RescaleSlope", 1) or 1)
    inter = float(ds.get("RescaleIntercept", 0) or 0)
    return slope, inter

