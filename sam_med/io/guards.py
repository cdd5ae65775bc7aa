"""Bounded, validated reads: what every reader checks before trusting a file.

* Only regular files are opened: FIFOs, character/block devices, sockets (and
  symlinks to them) are refused, or skipped inside a DICOM folder, so no read
  can block or spin forever.
* Array sizes claimed by a header are checked *before allocating*: against the
  file size (a deflate stream expands at most :data:`MAX_DEFLATE_RATIO` times)
  and against a memory budget (``$SAM_MED_MAX_BYTES``, default half the RAM).
* Values: non-finite voxels and non-positive / non-finite spacings are refused
  with the count / the values.
"""

from __future__ import annotations

import os
import stat

import numpy as np

from ..errors import GeometryError, InputFileError

#: deflate's maximum expansion (about 1032:1); gzip / zip members cannot inflate more
MAX_DEFLATE_RATIO = 1032
#: prompt and session JSON files larger than this are refused (bytes)
MAX_JSON_BYTES = 16 << 20


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def is_regular(path) -> bool:
    """True when ``path`` (after symlinks) is a regular file."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def require_regular(path, what: str = "file") -> str:
    """``path`` as a string after checking it is a regular file (not a FIFO, device, socket)."""
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise InputFileError(f"{p}: no such {what}") from None
    except OSError as exc:
        raise InputFileError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputFileError(f"{p}: {_kind(st.st_mode)}, not a regular file; refusing to read it")
    return p


def memory_budget() -> int:
    """Largest array (bytes) a reader may allocate: ``$SAM_MED_MAX_BYTES`` or half the RAM."""
    env = os.environ.get("SAM_MED_MAX_BYTES")
    if env:
        try:
            return int(float(env))
        except ValueError:
            pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2)
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def check_claimed_size(path, shape, dtype, *, available: int, compressed: bool, what: str = "the header") -> int:
    """Refuse an array of ``shape``/``dtype`` that ``available`` stored bytes cannot hold
    (``compressed``: deflate data, which expands at most MAX_DEFLATE_RATIO x) or that
    exceeds the memory budget. Returns the claimed byte count."""
    try:
        dims = [int(d) for d in shape]
        itemsize = np.dtype(dtype).itemsize
    except (TypeError, ValueError) as exc:
        raise InputFileError(f"{path}: {what} claims an invalid array ({exc})") from None
    if any(d < 0 for d in dims):
        raise InputFileError(f"{path}: {what} claims a negative dimension {tuple(dims)}")
    n = 1
    for d in dims:
        n *= d
    nbytes = n * itemsize
    limit = available * (MAX_DEFLATE_RATIO if compressed else 1)
    if nbytes > limit:
        raise InputFileError(
            f"{path}: {what} claims {tuple(dims)} {np.dtype(dtype).name} ({nbytes:,} bytes) but the "
            f"file holds at most {limit:,}; truncated or corrupt")
    budget = memory_budget()
    if nbytes > budget:
        raise InputFileError(f"{path}: {what} claims {nbytes:,} bytes, over the memory budget of {budget:,} "
                             "(set SAM_MED_MAX_BYTES to raise it)")
    return nbytes


def read_bytes_limited(path, limit: int = MAX_JSON_BYTES, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes."""
    p = require_regular(path, what)
    with open(p, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise InputFileError(f"{p}: the {what} is larger than {limit:,} bytes; refusing to read it")
    return data


def check_finite(array: np.ndarray, path, nonfinite: str = "refuse") -> np.ndarray:
    """Refuse (``"refuse"``) or replace by the finite minimum (``"replace"``) NaN / inf voxels."""
    if not np.issubdtype(array.dtype, np.floating):
        return array
    bad = ~np.isfinite(array)
    n = int(bad.sum())
    if not n:
        return array
    if nonfinite != "replace":
        raise InputFileError(
            f"{path}: {n:,} of {array.size:,} voxels are NaN or infinite "
            "(io.load(..., nonfinite='replace') replaces them with the finite minimum)")
    finite = array[~bad]
    out = array.copy()
    out[bad] = finite.min() if finite.size else 0
    return out


#: intensities beyond this are no measurement (a scl_slope / RescaleSlope of 1e38, say) and
#: overflow the float32 arithmetic of every intensity step
MAX_ABS_INTENSITY = 1e15


def check_magnitude(array: np.ndarray, path) -> None:
    """Refuse float voxels whose magnitude exceeds :data:`MAX_ABS_INTENSITY`."""
    if not np.issubdtype(array.dtype, np.floating) or array.size == 0:
        return
    lo, hi = float(np.min(array)), float(np.max(array))
    if max(abs(lo), abs(hi)) > MAX_ABS_INTENSITY:
        raise InputFileError(f"{path}: voxel values reach {max(abs(lo), abs(hi)):.3g}, beyond any measurement "
                             f"(|v| <= {MAX_ABS_INTENSITY:.0e}); check the scaling (scl_slope / RescaleSlope)")


def check_affine(affine, path) -> None:
    """A voxel->world affine must be finite with positive, finite spacing on every axis."""
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)):
        raise GeometryError(f"{path}: the voxel-to-world matrix is not finite")
    sp = np.linalg.norm(a[:3, :3], axis=0)
    if not np.all(sp > 0) or abs(np.linalg.det(a[:3, :3])) < 1e-12:
        raise GeometryError(f"{path}: spacing {np.round(sp, 6).tolist()} mm: every axis needs a positive spacing")


def check_count_finite(values: np.ndarray, n: int, label: str, path) -> np.ndarray:
    """``values`` (float64, 1D) must hold ``n`` finite numbers; ``label`` names them in the error."""
    if values.size != n:
        raise InputFileError(f"{path}: {label} must have {n} values, got {values.size}")
    if not np.all(np.isfinite(values)):
        raise InputFileError(f"{path}: {label} {values.tolist()} is not finite")
    return values


def check_spacing(spacing, path, what: str = "spacing") -> np.ndarray:
    """Spacing values must be finite and > 0; returns them as float64."""
    sp = np.asarray(spacing, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(sp)) or not np.all(sp > 0):
        raise GeometryError(f"{path}: {what} {sp.tolist()} must be positive and finite")
    return sp
