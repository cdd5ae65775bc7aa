"""Saving and loading a :class:`~sam_med.session.Session` (one ``.npz``: a JSON record +
packed masks), and the version record that goes with every output."""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SamMedError
from ..provenance import versions
from ..prompts import ObjectPrompts
from ..volume import Volume
from .objects import SegObject

__all__ = ["session_record", "save_session", "load_session", "versions"]

_PROMPT_KEYS = ("box", "points", "key_slice_box")


def session_record(session) -> dict[str, Any]:
    """The JSON record of ``session`` (see :meth:`Session.to_json`)."""
    return {
        "format": "sam-med-session/1",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": session.volume.source,
        "shape": list(session.volume.shape),
        "affine": session.volume.affine.tolist(),
        "model": getattr(session.predictor, "model_name", None),
        "checkpoint_sha256": getattr(session.predictor, "checkpoint_sha256", None),
        "overlap": session.overlap,
        "versions": versions(),
        "coords": "voxel",
        "objects": [
            {"id": o.id, "name": o.name, "color": list(o.color), "locked": o.locked, **o.prompts.to_json()}
            for o in session.objects.values()
        ],
    }


def save_session(session, path: str | os.PathLike) -> Path:
    """Write ``session`` to ``path`` (see :meth:`Session.save`); returns the path."""
    from ..io.atomic import atomic_write_bytes
    from ..io.outputs import check_outputs, input_files
    from ..io.validate import volume_signature

    path = Path(check_outputs({"session": path}, input_files(session.volume))["session"])
    meta = session_record(session)
    meta["volume_signature"] = volume_signature(session.volume.array)  # which scan, not only which grid
    arrays = {"session_json": np.frombuffer(json.dumps(meta, allow_nan=False).encode(), dtype=np.uint8)}
    for o in session.objects.values():
        if o.mask is not None:
            arrays[f"mask_{o.id}"] = np.packbits(o.mask.ravel())
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_session(cls, path: str | os.PathLike, volume: Volume, predictor=None):
    """A ``cls`` (Session) from ``path`` for ``volume`` (see :meth:`Session.load`)."""
    from ..io.npz import read_npz_arrays
    from ..io.validate import check_session_meta, loads_json, volume_signature

    path = Path(path)
    try:
        arrays = read_npz_arrays(path)  # within every claim; nothing but .npy members read
        raw = bytes(arrays.pop("session_json"))
        packed = arrays
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, SamMedError) as exc:
        raise SamMedError(f"{path}: not a sam-med session file ({' '.join(str(exc).split())})") from None
    meta = loads_json(raw, f"{path}: session record", err=SamMedError)
    check_session_meta(meta, packed, str(path))
    if tuple(meta["shape"]) != volume.shape or not np.allclose(meta["affine"], volume.affine, atol=1e-3):
        raise SamMedError(
            f"{path}: session was saved for a volume of shape {meta['shape']} with a different "
            f"geometry than {volume.source or 'the given volume'} {volume.shape}"
        )
    sig = meta.get("volume_signature")
    if not isinstance(sig, str):
        raise SamMedError(f"{path}: the session record has no volume signature, so nothing says which scan its "
                          "masks belong to; refusing it")
    if sig != volume_signature(volume.array):
        raise SamMedError(
            f"{path}: session was saved for another scan ({meta.get('source') or 'unknown source'}) "
            f"on the same grid; its masks do not belong to {volume.source or 'the given volume'}")
    s = cls(volume, predictor, overlap=meta.get("overlap", "last"))
    n = int(np.prod(volume.shape))
    for o in meta["objects"]:
        has_prompts = any(k in o for k in _PROMPT_KEYS)
        prompts = ObjectPrompts.from_json(o, volume, "voxel") if has_prompts else ObjectPrompts()
        key = f"mask_{o['id']}"
        mask = np.unpackbits(packed[key])[:n].reshape(volume.shape).astype(bool) if key in packed else None
        s.objects[int(o["id"])] = SegObject(
            id=int(o["id"]), name=o["name"], color=tuple(o["color"]), prompts=prompts,
            mask=mask, locked=bool(o.get("locked", False)),
        )
    s.saved_meta = meta
    return s
