"""Finding DICOM files and grouping them into series (headers only, no pixel data).

:func:`scan` walks a folder, a file list or one file and groups the headers by
:func:`series_key`; :func:`list_dicom_series` summarises each group as a :class:`SeriesInfo`.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass

from ...errors import InputFileError
from ..guards import is_regular, require_regular
from .tags import malformed_tag_error

_SKIP_NAMES = {"DICOMDIR"}


@dataclass(frozen=True)
class SeriesInfo:
    """Summary of one series: identity, file count and distinct slice positions."""

    uid: str
    description: str | None
    number: int | None
    modality: str | None
    n_files: int
    n_slices: int  # distinct slice positions (n_files / time points for 4D)
    files: tuple[str, ...] = ()

    def line(self) -> str:
        desc = self.description or "(no description)"
        extra = f", {self.n_files} files" if self.n_files != self.n_slices else ""
        return f"{self.uid} [{self.modality or '?'}] {desc!r}: {self.n_slices} slices{extra}"


_DEFLATED = b"1.2.840.10008.1.2.1.99"


def check_deflated(path: str) -> None:
    """A Deflated Explicit VR file is inflated whole by pydicom, even for its header: count
    what it inflates to (a stream, 1 MB at a time): at most 512 MB for one single-frame slice."""
    import zlib

    from ..guards import MAX_DEFLATE_RATIO, memory_budget

    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if _DEFLATED not in head:
        return
    size = os.path.getsize(path)
    limit = min(size * MAX_DEFLATE_RATIO, memory_budget(), 512 << 20)  # one single-frame slice
    try:
        start = _meta_end(path)
    except Exception:
        return  # no readable file meta: pydicom reports it
    d, got = zlib.decompressobj(-15), 0
    with open(path, "rb") as fh:
        fh.seek(start)
        while got <= limit and not d.eof:
            chunk = fh.read(1 << 20)
            if not chunk:
                break
            try:
                got += len(d.decompress(chunk, 1 << 20))
                while d.unconsumed_tail and got <= limit:
                    got += len(d.decompress(d.unconsumed_tail, 1 << 20))
            except zlib.error:
                return  # not inflatable: pydicom reports it
    if got > limit:
        raise InputFileError(f"{path}: its deflated data inflates beyond {limit:,} bytes; corrupt or a zip bomb")


def _meta_end(path: str) -> int:
    """Byte offset just after the DICOM file meta group: 132 (preamble + ``DICM``) + the
    12-byte (0002,0000) group length element + its value."""
    import struct

    with open(path, "rb") as fh:
        head = fh.read(144)
    if len(head) < 144 or head[128:132] != b"DICM" or head[132:140] != b"\x02\x00\x00\x00UL\x04\x00":
        raise ValueError("no file meta group length")
    return 144 + struct.unpack("<I", head[140:144])[0]


def _read_header(path: str, *, strict: bool):
    """pydicom dataset without pixels, or None when the file is not DICOM (strict=False)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    check_deflated(path)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        missing = [k for k in ("SOPClassUID",) if k not in ds]  # no SeriesInstanceUID: see series_key
        if missing:
            raise InputFileError(
                f"{path}: incomplete DICOM header (no {' or '.join(missing)}); truncated or corrupt file?"
            )
        return ds
    except InputFileError:
        raise
    except InvalidDicomError:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            if "SOPClassUID" in ds and ("SeriesInstanceUID" in ds or "PixelData" in ds or "Rows" in ds):
                return ds
        except Exception:
            pass
        if strict:
            raise InputFileError(f"{path}: not a DICOM file") from None
        return None
    except Exception as exc:  # truncated / corrupt header
        raise InputFileError(f"{path}: corrupt or truncated DICOM file ({type(exc).__name__}: {exc})") from exc


def _collect_files(path) -> list[str]:
    if isinstance(path, (list, tuple)):
        files = [os.path.abspath(os.fspath(p)) for p in path]
        for f in files:
            if not os.path.isfile(f):
                raise InputFileError(f"{f}: no such file")
            require_regular(f)
        if not files:
            raise InputFileError("an empty list of DICOM files was given")
        return files
    path = os.path.abspath(os.fspath(path))
    if os.path.isfile(path):
        return [require_regular(path)]
    if not os.path.isdir(path):
        raise InputFileError(f"{path}: no such file or folder")
    files = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for n in sorted(names):
            if n.startswith(".") or n in _SKIP_NAMES or not is_regular(os.path.join(root, n)):
                continue  # FIFOs, devices, sockets (and symlinks to them) are never opened
            files.append(os.path.join(root, n))
    return files


def scan(path):
    """{series uid: [(file, header)]} and the number of non-DICOM files skipped."""
    files = _collect_files(path)
    explicit = isinstance(path, (list, tuple)) or os.path.isfile(os.fspath(path))
    series: dict[str, list] = defaultdict(list)
    skipped = 0
    for f in files:
        ds = _read_header(f, strict=explicit)
        if ds is None:
            skipped += 1
            continue
        series[series_key(ds)].append((f, ds))
    if not series:
        where = path if not isinstance(path, (list, tuple)) else "the given files"
        raise InputFileError(
            f"{where}: no DICOM files found"
            + (f" ({skipped} other files skipped)" if skipped else " (the folder is empty)")
        )
    return series, skipped


def series_key(ds) -> str:
    """SeriesInstanceUID, or for anonymised files without one a stand-in key built from
    SeriesNumber / SeriesDescription / FrameOfReferenceUID (shown in listings; accepted as series_uid)."""
    uid = str(ds.get("SeriesInstanceUID", "") or "").strip()
    if uid:
        return uid
    return "no-series-uid:{}:{}:{}".format(
        ds.get("SeriesNumber", "") or "", str(ds.get("SeriesDescription", "") or "").strip(),
        str(ds.get("FrameOfReferenceUID", "") or "")[-12:])


def _count_positions(items) -> int:
    pos = set()
    for _, ds in items:
        ipp = ds.get("ImagePositionPatient")
        pos.add(tuple(round(float(v), 2) for v in ipp) if ipp is not None else id(ds))
    return len(pos)


def series_info(uid, items) -> SeriesInfo:
    """The :class:`SeriesInfo` of one group of ``(file, header)`` items from :func:`scan`."""
    ds = items[0][1]
    num = ds.get("SeriesNumber")
    return SeriesInfo(
        uid=uid,
        description=str(ds.get("SeriesDescription", "") or "") or None,
        number=int(num) if num not in (None, "") else None,
        modality=str(ds.get("Modality", "") or "") or None,
        n_files=len(items),
        n_slices=_count_positions(items),
        files=tuple(f for f, _ in items),
    )


def list_dicom_series(path) -> list[SeriesInfo]:
    """The DICOM series in a folder (recursively), a file list or a file, sorted by series number."""
    try:
        return _list_dicom_series(path)
    except (ValueError, TypeError, OverflowError, AttributeError) as exc:
        raise malformed_tag_error(path, exc) from exc


def _list_dicom_series(path) -> list[SeriesInfo]:
    series, _ = scan(path)
    infos = [series_info(uid, items) for uid, items in series.items()]
    return sorted(infos, key=lambda s: (s.number if s.number is not None else 1 << 30, s.uid))

