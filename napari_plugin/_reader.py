"""npe2 reader: DICOM folders/files, NIfTI, NRRD, MHA through ``sam_med.io``.

Each scan becomes one Image layer holding ``Volume.array`` with
``affine=Volume.affine`` (napari world = RAS mm; see ``_layers``), CT shown with
a soft-tissue window, MR with 1–99th percentiles. A folder with several DICOM
series gives one layer per series, named by its description.
"""

from __future__ import annotations

import os
from typing import Callable

from ._layers import image_layer_data

SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")


def napari_get_reader(path) -> Callable | None:
    """Return :func:`read` when ``path`` looks like something sam-med reads, else None."""
    if isinstance(path, (list, tuple)):
        if not path:
            return None
        # a list of DICOM files is one series; a list of other files is read one by one
        return read
    p = os.fspath(path)
    if os.path.isdir(p):
        return read
    if p.lower().endswith(SUFFIXES):
        return read
    try:  # extension-less DICOM files (common on PACS exports)
        with open(p, "rb") as f:
            head = f.read(132)
        return read if head[128:132] == b"DICM" else None
    except OSError:
        return None


def _is_dicom(path: str) -> bool:
    from sam_med.io.detect import detect_format

    try:
        return detect_format(path) in ("dicom", "dicom_dir")
    except Exception:  # noqa: BLE001 - not ours to judge here; load() reports properly
        return False


def read(path) -> list[tuple]:
    """Read ``path`` (file, DICOM folder, or list of files) into napari LayerData tuples."""
    from sam_med import io

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
