"""Choose a reader from a file's content (magic bytes), not only its extension."""

from __future__ import annotations

import gzip
import os
import struct
import zlib

from ..errors import InputFileError

#: format names returned by :func:`detect_format`
FORMATS = ("nifti", "nrrd", "metaimage", "dicom", "npz", "dicom_dir")


def _is_nifti_header(head: bytes) -> bool:
    if len(head) >= 348:
        for endian in "<>":
            size = struct.unpack(endian + "i", head[:4])[0]
            if size == 348 and head[344:347] in (b"n+1", b"ni1"):
                return True
            if size == 540 and head[4:7] in (b"n+2", b"ni2"):
                return True
    return False


def _looks_like_metaimage(head: bytes) -> bool:
    try:
        text = head[:4096].decode("ascii", errors="strict")
    except UnicodeDecodeError:
        text = head[:4096].split(b"\x00", 1)[0].decode("ascii", errors="replace")
    keys = {line.split("=", 1)[0].strip() for line in text.splitlines() if "=" in line}
    return ("ObjectType" in keys or "NDims" in keys) and "ElementDataFile" in keys


def _looks_like_dicom_without_preamble(path: str) -> bool:
    try:
        import pydicom

        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        return "SOPClassUID" in ds and ("SeriesInstanceUID" in ds or "PixelData" in ds or "Rows" in ds)
    except Exception:
        return False


def detect_format(path) -> str:
    """Return one of :data:`FORMATS` for ``path`` or raise :class:`InputFileError`."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputFileError(f"{path}: no such file or folder")
    if os.path.isdir(path):
        return "dicom_dir"
    from .guards import require_regular

    low = path.lower()
    if low.endswith(".img") and os.path.isfile(path[:-4] + ".hdr"):  # the data half of an .hdr/.img pair
        path = path[:-4] + ".hdr"

    require_regular(path)  # never open a FIFO / device / socket: it could block forever
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise InputFileError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if not head:
        raise InputFileError(f"{path}: the file is empty")
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as fh:
                inner = fh.read(4096)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputFileError(f"{path}: corrupt or truncated gzip file ({exc})") from exc
        if _is_nifti_header(inner):
            return "nifti"
        if inner[:4] == b"NRRD":
            return "nrrd"
        raise InputFileError(f"{path}: gzip-compressed, but the content is not a NIfTI header (nor NRRD)")
    if _is_nifti_header(head):
        return "nifti"
    if head[:4] == b"NRRD":
        return "nrrd"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head[:4] == b"PK\x03\x04":
        return "npz"
    if _looks_like_metaimage(head):
        return "metaimage"
    low = path.lower()
    if (low.endswith(".dcm") or "." not in os.path.basename(low)) and _looks_like_dicom_without_preamble(path):
        return "dicom"
    hint = ""
    for ext, name in ((".nii.gz", "NIfTI"), (".nii", "NIfTI"), (".nrrd", "NRRD"), (".mha", "MetaImage"),
                      (".mhd", "MetaImage"), (".npz", "npz"), (".dcm", "DICOM")):
        if low.endswith(ext):
            hint = f"; the name ends in {ext} but the content is not {name}"
            break
    raise InputFileError(
        f"{path}: not a recognised image format (NIfTI, NRRD, MetaImage, DICOM, npz){hint}"
    )
