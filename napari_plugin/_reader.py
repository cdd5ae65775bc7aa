"""npe2 reader: DICOM folders/files, NIfTI, NRRD, MHA through ``sam_med.io``.

Each scan becomes one Image layer holding ``Volume.array`` with the display-frame affine
(``_layers.layer_affine``: it opens in its acquisition plane, axial for an axial CT), CT
shown with a soft-tissue window, MR with 1–99th percentiles, and the Volume in its
metadata. A folder with several DICOM series gives one layer per series, named by its
description.

The reader claims only what it reads: regular files with a scan suffix or a DICOM
preamble, and folders holding DICOM files (a bounded look, :func:`dicom_folder`); FIFOs,
devices and sockets are never opened (reading one would block). Which reader napari
picks when several claim a path is napari's choice: see :mod:`._preference`.
"""

from __future__ import annotations

import os
import stat
from typing import Callable

from ._layers import image_layer_data

SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")
#: a folder is looked at this deep and this wide for a DICOM file
_MAX_DEPTH, _MAX_ENTRIES = 3, 2000


def _is_regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _has_preamble(path: str) -> bool:
    """A regular file with the DICOM preamble ("DICM" at byte 128); never opens anything else."""
    if not _is_regular(path):
        return False
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _is_scan_file(path: str) -> bool:
    return _is_regular(path) and (path.lower().endswith(SUFFIXES) or _has_preamble(path))


def dicom_folder(path: str) -> bool:
    """True when ``path`` is a folder with a DICOM file within :data:`_MAX_DEPTH` levels
    (looking at :data:`_MAX_ENTRIES` entries at most)."""
    seen = 0
    todo = [(path, 0)]
    while todo:
        folder, depth = todo.pop(0)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            seen += 1
            if seen > _MAX_ENTRIES:
                return False
            try:
                if e.is_dir(follow_symlinks=False):
                    if depth + 1 < _MAX_DEPTH:
                        todo.append((e.path, depth + 1))
                elif e.name.lower().endswith(".dcm") and _is_regular(e.path) or _has_preamble(e.path):
                    return True
            except OSError:
                continue
    return False


def napari_get_reader(path) -> Callable | None:
    """Return :func:`read` when ``path`` is something sam-med reads, else None."""
    if isinstance(path, (list, tuple)):
        paths = [os.fspath(p) for p in path]
        ok = paths and all(dicom_folder(p) if os.path.isdir(p) else _is_scan_file(p) for p in paths)
        return read if ok else None
    p = os.fspath(path)
    if os.path.isdir(p):
        return read if dicom_folder(p) else None
    return read if _is_scan_file(p) else None


def _is_dicom(path: str) -> bool:
    from sam_med.io.detect import detect_format

    try:
        return detect_format(path) in ("dicom", "dicom_dir")
    except Exception:  # noqa: BLE001 - not ours to judge here; load() reports properly
        return False


def read(path) -> list[tuple]:
    """Read ``path`` (file, DICOM folder, or list of files) into napari LayerData tuples."""
    from sam_med import io

    from ._preference import prefer_sam_med

    prefer_sam_med()  # once read with sam-med, napari picks it for these scans from now on
    if isinstance(path, (list, tuple)):
        paths = [os.fspath(p) for p in path]
        if all(_is_dicom(p) and not os.path.isdir(p) for p in paths):
            return _read_dicom(paths)
        out: list[tuple] = []
        for p in paths:
            out.extend(read(p))
        return out
    p = os.fspath(path)
    if _is_dicom(p):
        return _read_dicom(p)
    return [image_layer_data(io.load(p))]


def _read_dicom(path) -> list[tuple]:
    from sam_med import io

    series = io.list_dicom_series(path)
    if len(series) <= 1:
        return [image_layer_data(io.load(path))]
    out = []
    used: dict[str, int] = {}
    for s in series:
        vol = io.load(path, series_uid=s.uid)
        name = s.description or (f"series {s.number}" if s.number is not None else s.uid)
        used[name] = used.get(name, 0) + 1
        if used[name] > 1:
            name = f"{name} ({used[name]})"
        out.append(image_layer_data(vol, name=name))
    return out
