"""JSON provenance sidecar written next to every result, so it can be reproduced.

Naming: the sidecar of ``<out>`` is ``<out>.json`` with the *full* output name kept
(``mask.nii.gz`` -> ``mask.nii.gz.json``, ``seg.dcm`` -> ``seg.dcm.json``). Keeping
the extension means two outputs that differ only in format (``mask.nii.gz`` and
``mask.nrrd``) never share a sidecar, and the pair sorts together in a listing.

Content (``"format": "sam-med-provenance/1"``)::

    {
      "format": "sam-med-provenance/1",
      "created_utc": "2026-01-01T12:00:00+00:00",
      "output": {"path": ..., "name": ..., "sha256": ... | null, "bytes": ...},
      "input": {"path": ..., "shape": [...], "affine": [...], "spacing": [...],
                "orientation": "LPS", "modality": ..., "dicom": {...UIDs} | null},
      "model": {"name": ..., "checkpoint_sha256": ..., "precision": "fp32" | "bf16" (when known),
                "click_decoder": {"name": ..., "checkpoint_sha256": ...} (when another model's
                decoder answered the clicks)},
      "prompts": <prompts_json as given, e.g. Session.to_json()>,
      "versions": sam_med.session.versions(),
      "command": sys.argv,
      "extra": {...} | null
    }
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputFileError, OutputError
from ..volume import Volume

FORMAT = "sam-med-provenance/1"

__all__ = ["write_sidecar", "read_sidecar", "sidecar_path"]


def sidecar_path(out_path) -> str:
    """``<out_path>.json`` (absolute), e.g. ``mask.nii.gz`` -> ``mask.nii.gz.json``."""
    return os.path.abspath(os.fspath(out_path)) + ".json"


def _jsonable(obj: Any):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (Path, os.PathLike)):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if hasattr(obj, "to_json"):
        return obj.to_json()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _sha256(path: str) -> str | None:
    if not os.path.isfile(path):
        return None
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _input_record(volume: Volume) -> dict:
    rec = {
        "path": volume.source,
        "shape": list(volume.shape),
        "affine": np.round(volume.affine, 6).tolist(),
        "spacing": [round(float(s), 6) for s in volume.spacing],
        "orientation": "".join(volume.axcodes),
        "modality": volume.modality,
        "intensity": volume.intensity,
        "dicom": None,
    }
    for key in ("time_index", "resampled", "reoriented_from", "series_instance_uid"):
        if key in volume.meta:
            rec[key] = volume.meta[key]
    if volume.dicom is not None:
        d = volume.dicom
        rec["dicom"] = {
            "study_instance_uid": d.study_instance_uid,
            "series_instance_uid": d.series_instance_uid,
            "frame_of_reference_uid": d.frame_of_reference_uid,
            "series_description": d.series_description,
            "n_instances": len(d.file_paths),
        }
    return rec


def write_sidecar(out_path, *, volume: Volume, prompts_json, model_name: str | None,
                  checkpoint_sha256: str | None, extra: dict | None = None,
                  precision: str | None = None, click_decoder: dict | None = None) -> str:
    """Write the provenance sidecar of ``out_path`` (see the module docstring); returns its path.

    ``out_path`` is the result already written (its sha256 is recorded when it is a
    file); ``prompts_json`` is any JSON-able prompt record (``Session.to_json()``,
    a prompt file's content); ``precision`` the encoder's (``fp32``/``bf16``/``fp16``,
    :mod:`sam_med.models.precision`); numpy values are converted. Written atomically; never
    onto an input file.
    """
    from ..provenance import versions
    from .atomic import atomic_write_bytes
    from .atomic import in_output_set, readable_path
    from .writers import check_not_input

    out_abs = os.path.abspath(os.fspath(out_path))
    side = sidecar_path(out_abs)
    check_not_input(side, volume)
    if os.path.isdir(side):
        raise OutputError(f"{side}: is a folder")
    if not os.path.isdir(os.path.dirname(side)) and not in_output_set():
        raise OutputError(f"{side}: the output folder does not exist")
    record = {
        "format": FORMAT,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "output": {
            "path": out_abs,
            "name": os.path.basename(out_abs),
            "sha256": _sha256(readable_path(out_abs)),
            "bytes": os.path.getsize(readable_path(out_abs)) if os.path.isfile(readable_path(out_abs)) else None,
        },
        "input": _input_record(volume),
        "model": {"name": model_name, "checkpoint_sha256": checkpoint_sha256,
                  **({"precision": precision} if precision is not None else {}),
                  **({"click_decoder": click_decoder} if click_decoder else {})},
        "prompts": prompts_json,
        "versions": versions(),
        "command": list(sys.argv),
        "extra": extra,
    }
    try:
        data = json.dumps(record, indent=1, default=_jsonable, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise OutputError(f"{side}: provenance is not JSON serialisable: {exc}") from exc
    atomic_write_bytes(Path(side), data)
    return side


def read_sidecar(path) -> dict:
    """Read a sidecar given its own path or the output's path (``x.nii.gz`` or ``x.nii.gz.json``)."""
    p = os.path.abspath(os.fspath(path))
    if not p.endswith(".json"):
        p = sidecar_path(p)
    try:
        with open(p, encoding="utf-8") as fh:
            rec = json.load(fh)
    except (OSError, ValueError) as exc:
        raise InputFileError(f"{p}: cannot read the provenance sidecar ({exc})") from exc
    if not isinstance(rec, dict) or rec.get("format") != FORMAT:
        raise InputFileError(f"{p}: not a sam-med provenance sidecar (format {rec.get('format') if isinstance(rec, dict) else '?'})")
    return rec
