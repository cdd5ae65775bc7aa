"""npe2 writers for a Labels layer.

* NIfTI / NRRD / MHA: ``sam_med.io.save_label`` on the source scan's exact grid.
  The source :class:`~sam_med.volume.Volume` travels in ``layer.metadata``
  (the reader and the widget put it there); without it the layer's own affine
  is used.
* DICOM SEG (``.dcm``): ``sam_med.io.write_dicom_seg`` referencing the source
  series; only when the source was read from DICOM.
"""

from __future__ import annotations


import numpy as np

from ._layers import VOLUME_KEY, volume_from_affine


def _layer_metadata(meta: dict | None) -> dict:
    """npe2 passes the layer state: ``meta["metadata"]`` is ``layer.metadata``."""
    meta = meta or {}
    return meta.get("metadata") or {}


def _source(data, meta):
    vol = _layer_metadata(meta).get(VOLUME_KEY)
    if vol is None:
        aff = (meta or {}).get("affine")
        vol = volume_from_affine(np.shape(data), aff)
    return vol


def write_labels(path: str, data, meta: dict) -> list[str]:
    """Labels layer → NIfTI/NRRD/MHA on the source grid (npe2 single-layer writer)."""
    from sam_med.io import save_label

    like = _source(data, meta)
    return [save_label(np.asarray(data), path, like=like)]


def write_dicom_seg(path: str, data, meta: dict) -> list[str]:
    """Labels layer → DICOM SEG referencing the source DICOM series."""
    from sam_med.io import write_dicom_seg as _write
    from sam_med.errors import OutputError

    md = _layer_metadata(meta)
    like = md.get(VOLUME_KEY)
    if like is None or getattr(like, "dicom", None) is None:
        raise OutputError(f"{path}: DICOM SEG needs a labels layer made on a scan read from DICOM")
    arr = np.asarray(data)
    segs = md.get("sam_med_segments") or [
        {"id": int(v), "name": f"segment {int(v)}"} for v in np.unique(arr) if v != 0
    ]
    algo = md.get("sam_med_algorithm") or {"name": "sam-med"}
    if not path.lower().endswith(".dcm"):
        path = path + ".dcm"
    return [_write(arr, like, path, segs, algorithm=algo)]
