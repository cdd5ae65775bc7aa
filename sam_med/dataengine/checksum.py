"""Scan checksums for the accepted-results folder: which bytes an accepted mask belongs to."""

from __future__ import annotations

import hashlib
import os

from ..errors import SamMedError

__all__ = ["scan_checksum", "scan_stamp"]


def _file_sha256(path: str) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
            n += len(block)
    return h.hexdigest(), n


def _folder_files(p: str) -> list[str]:
    """The regular files under folder ``p``, as sorted relative posix names."""
    from ..io.guards import is_regular

    rows = []
    for dirpath, _dirs, names in os.walk(p):
        for name in names:
            f = os.path.join(dirpath, name)
            if is_regular(f):
                rows.append(os.path.relpath(f, p).replace(os.sep, "/"))
    return sorted(rows)


def scan_checksum(path) -> tuple[str, int]:
    """``(sha256 hex, bytes)`` of a scan: of the file itself, or, for a folder (DICOM), of the
    lines ``"<relative posix name>\\t<file sha256>\\n"`` of every regular file under it in
    sorted name order, with the total byte count. Raises :class:`SamMedError` when ``path``
    is missing or unreadable."""
    from ..io.guards import is_regular

    p = os.path.abspath(os.fspath(path))
    try:
        if os.path.isdir(p):
            h, total = hashlib.sha256(), 0
            for rel in _folder_files(p):
                digest, n = _file_sha256(os.path.join(p, rel))
                h.update(f"{rel}\t{digest}\n".encode("utf-8"))
                total += n
            return h.hexdigest(), total
        if not is_regular(p):
            raise SamMedError(f"{p}: the scan is gone (no such file or folder)")
        return _file_sha256(p)
    except OSError as exc:
        raise SamMedError(f"{p}: cannot read the scan to checksum it ({exc.strerror or exc})") from None


def scan_stamp(path) -> tuple | None:
    """A cheap fingerprint of a scan's files: ``(relative name, size, mtime_ns, inode)`` of the
    file, or of every regular file under the folder, sorted; None when unreadable. Equal
    stamps mean the bytes were not rewritten in between, so a checksum verified at one stamp
    need not be recomputed at the same stamp (within one process)."""
    from ..io.guards import is_regular

    p = os.path.abspath(os.fspath(path))
    try:
        if os.path.isdir(p):
            names = _folder_files(p)
        else:
            names = ["."] if is_regular(p) else []
        rows = []
        for rel in names:
            st = os.stat(os.path.join(p, rel) if rel != "." else p)
            rows.append((rel, st.st_size, st.st_mtime_ns, st.st_ino))
        return tuple(rows) or None
    except OSError:
        return None
