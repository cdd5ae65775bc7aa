"""The accepted-results folder: final masks + prompts + click history + a checksummed scan
reference, one entry per accepted scan result (issue 19; format in ``docs/dataengine.md``).

Layout of a dataset folder ``DIR``::

    DIR/dataset.json                 {"format": "sam-med-accepted/1", "created": ISO}
    DIR/entries/<entry_id>/mask.nii.gz   uint8/uint16 label map on the scan's exact grid
    DIR/entries/<entry_id>/entry.json    scan reference (path, sha256, bytes, shape, affine,
                                         modality, series_uid), model, objects, versions

The scan itself is never copied: ``entry.json`` names it by absolute path with its sha256
and size (for a DICOM folder: the sha256 of the sorted ``relative-name<TAB>file-sha256``
lines of every regular file under it), so a moved or changed scan is detected
(:meth:`AcceptedEntry.verify`).

``entry.json`` also records the mask's sha256 and size, and the mask's NIfTI ``descrip`` names
the scan's sha256, so an edited mask or an entry pointed at another scan is refused on loading.
Atomic per entry: written into ``entries/.tmp-<id>-<pid>/``, renamed onto ``entries/<id>/`` once
complete and fsynced; readers skip ``.tmp-*``; entries are never overwritten (UTC time + random ids).

Arrays are in the volume's index order (i, j, k) = ``Volume.array``'s; prompts and clicks
are voxel coordinates of that grid (:mod:`sam_med.prompts`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io as _io
import json
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import SamMedError
from ..io.atomic import fsync_path, pid_alive
from ..volume import Volume
from .checksum import scan_checksum, scan_stamp

FORMAT = "sam-med-accepted/1"
ENTRY_FORMAT = "sam-med-accepted-entry/1"
ENTRIES = "entries"
MASK_NAME = "mask.nii.gz"
ENTRY_NAME = "entry.json"
TMP_PREFIX = ".tmp-"

__all__ = ["AcceptedDataset", "AcceptedEntry", "write_entry", "scan_checksum", "is_accepted_folder", "check_folder",
           "FORMAT", "ENTRY_FORMAT"]


# ---------------------------------------------------------------- reading
def _read_json(path: Path, what: str) -> dict:
    from ..io.guards import read_bytes_limited
    from ..io.validate import loads_json

    obj = loads_json(read_bytes_limited(path, what=what), str(path), err=SamMedError)
    if not isinstance(obj, dict):
        raise SamMedError(f"{path}: the {what} must be a JSON object")
    return obj


def is_accepted_folder(path) -> bool:
    """True when ``path`` is a folder whose ``dataset.json`` says ``sam-med-accepted/1``."""
    f = Path(path) / "dataset.json"
    if not f.is_file():
        return False
    try:
        return _read_json(f, "dataset index").get("format") == FORMAT
    except SamMedError:
        return False


def _binding(scan_sha256: str) -> str:
    """The mask header's ``descrip`` that ties it to its scan."""
    return f"sam-med:{scan_sha256}"


class AcceptedEntry:
    """One accepted scan result (``entries/<id>/``); ``record`` is its parsed ``entry.json``."""

    def __init__(self, folder, record: dict) -> None:
        self.dir = Path(folder)
        self.record = record
        self.id: str = record["id"]
        scan = record["scan"]
        self.scan_path: str = scan["path"]
        self.scan_sha256: str = scan["sha256"]
        self.scan_bytes: int = int(scan["bytes"])
        self.modality: str | None = scan.get("modality")
        self.series_uid: str | None = scan.get("series_uid")
        self.objects: list[dict] = list(record["objects"])
        self.model: dict = dict(record.get("model") or {})
        self.created: str | None = record.get("created")
        self._verified_stamp: tuple | None = None  # scan_stamp at the last successful verify

    @property
    def mask_path(self) -> Path:
        return self.dir / MASK_NAME

    def __repr__(self) -> str:
        return f"AcceptedEntry({self.id!r}, scan={self.scan_path!r}, objects={[o['name'] for o in self.objects]})"

    @classmethod
    def read(cls, folder) -> "AcceptedEntry":
        """Parse ``folder/entry.json``; raises :class:`SamMedError` naming what is wrong."""
        folder = Path(folder)
        where = folder / ENTRY_NAME
        rec = _read_json(where, "accepted entry")
        if rec.get("format") != ENTRY_FORMAT:
            raise SamMedError(f"{where}: not a sam-med accepted entry (format {rec.get('format')!r}, "
                              f"expected {ENTRY_FORMAT!r})")
        scan = rec.get("scan")
        ok = (isinstance(rec.get("id"), str) and isinstance(scan, dict)
              and isinstance(scan.get("path"), str) and isinstance(scan.get("sha256"), str)
              and isinstance(scan.get("bytes"), int) and isinstance(rec.get("objects"), list) and rec["objects"]
              and isinstance(rec.get("mask"), dict) and isinstance(rec["mask"].get("sha256"), str)
              and isinstance(rec["mask"].get("bytes"), int)
              and all(isinstance(o, dict) and isinstance(o.get("label"), int) and isinstance(o.get("name"), str)
                      for o in rec["objects"]))
        if not ok:
            raise SamMedError(f"{where}: malformed accepted entry (needs id, scan.path/sha256/bytes, "
                              "mask.sha256/bytes and objects with name and label)")
        if rec["id"] != folder.name:
            raise SamMedError(f"{where}: entry id {rec['id']!r} does not match its folder {folder.name!r}")
        return cls(folder, rec)

    def verify(self) -> None:
        """Raise ``SamMedError("scan changed since it was accepted: PATH")`` unless the scan
        still has the recorded size and sha256 (a missing scan is a change too). The checksum
        is computed once per entry object while the files' size, mtime and inode stay the same
        (:func:`~.checksum.scan_stamp`): ``evaluate`` verifies on opening and on loading."""
        stamp = scan_stamp(self.scan_path)
        if stamp is not None and stamp == self._verified_stamp:
            return
        try:
            digest, n = scan_checksum(self.scan_path)
        except SamMedError:
            raise SamMedError(f"scan changed since it was accepted: {self.scan_path} (it is gone; "
                              f"entry {self.id})") from None
        if n != self.scan_bytes or digest != self.scan_sha256:
            raise SamMedError(f"scan changed since it was accepted: {self.scan_path} (entry {self.id})")
        self._verified_stamp = stamp

    def load_scan(self) -> Volume:
        """The scan as a :class:`Volume` (verified first; read with the recorded series /
        time point / resampling), checked to lie on the recorded grid."""
        from .. import io

        self.verify()
        scan = self.record["scan"]
        vol = io.load(self.scan_path, series_uid=self.series_uid, time_index=scan.get("time_index"),
                      resample=bool(scan.get("resampled", False)))
        shape, affine = scan.get("shape"), scan.get("affine")
        if shape is not None and (list(vol.shape) != list(shape)
                                  or not np.allclose(vol.affine, np.asarray(affine, dtype=float), atol=1e-3)):
            raise SamMedError(f"{self.scan_path}: loads onto a grid {vol.shape} other than the accepted one "
                              f"{tuple(shape)} (entry {self.id})")
        return vol

    def verify_mask(self) -> None:
        """Refuse a ``mask.nii.gz`` whose sha256/size differ from ``entry.json``'s, or whose header
        does not name the recorded scan (``descrip`` = ``sam-med:<scan sha256>``)."""
        import zlib

        import nibabel as nib
        from ..io.guards import read_bytes_limited

        rec = self.record.get("mask") or {}
        data = read_bytes_limited(self.mask_path, 1 << 31, "accepted mask")
        if len(data) != rec.get("bytes") or hashlib.sha256(data).hexdigest() != rec.get("sha256"):
            raise SamMedError(f"{self.mask_path}: the mask differs from the one accepted (sha256/size recorded in "
                              f"{ENTRY_NAME}); entry {self.id} was changed")
        raw = zlib.decompressobj(47).decompress(data, 1 << 16) if data[:2] == b"\x1f\x8b" else data
        hdr = nib.Nifti1Header.from_fileobj(_io.BytesIO(raw[:348])) if len(raw) >= 348 else None
        tag = hdr["descrip"].item().split(b"\0", 1)[0].decode("ascii", "replace") if hdr is not None else ""
        if tag != _binding(self.scan_sha256):
            raise SamMedError(f"{self.dir / ENTRY_NAME}: names scan {self.scan_path} but its mask was accepted for "
                              f"another scan; entry {self.id} was changed")

    def load_mask(self, like: Volume | None = None) -> Volume:
        """The label map (values = the objects' ``label``) as a ``Volume`` with
        ``intensity="label"``, after :meth:`verify_mask`; with ``like``, checked to lie on its grid."""
        from .. import io

        self.verify_mask()
        return io.load_label(str(self.mask_path), like=like)


class AcceptedDataset:
    """A dataset folder of accepted results (see the module docstring)."""

    def __init__(self, path) -> None:
        self.root = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
        index = self.root / "dataset.json"
        if not self.root.is_dir():
            raise SamMedError(f"{self.root}: not an accepted-results folder (no such folder)")
        if not index.is_file():
            raise SamMedError(f"{self.root}: not an accepted-results folder (no dataset.json)")
        meta = _read_json(index, "dataset index")
        if meta.get("format") != FORMAT:
            raise SamMedError(f"{index}: format {meta.get('format')!r} is not {FORMAT!r}; "
                              "not an accepted-results folder")
        self.meta = meta

    def entry_dirs(self) -> list[Path]:
        """Folders of the visible entries (``.tmp-*`` and stray files skipped), sorted by id."""
        base = self.root / ENTRIES
        if not base.is_dir():
            return []
        return sorted((d for d in base.iterdir() if d.is_dir() and not d.name.startswith(".")),
                      key=lambda d: d.name)

    def entries(self) -> list[AcceptedEntry]:
        """Every visible entry, sorted by id; a malformed one raises :class:`SamMedError`."""
        return [AcceptedEntry.read(d) for d in self.entry_dirs()]

    def __len__(self) -> int:
        return len(self.entry_dirs())

    def __repr__(self) -> str:
        return f"AcceptedDataset({str(self.root)!r}, entries={len(self)})"


# ---------------------------------------------------------------- writing
def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _stem(path: str) -> str:
    from ..evaluation.datasets import case_name

    name = case_name(path.rstrip(os.sep)) or "scan"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "scan"


def sweep_partial(root) -> list[str]:
    """Remove ``entries/.tmp-<id>-<pid>`` folders of processes that are gone (what a killed
    writer left); returns the names removed."""
    base, gone = Path(root) / ENTRIES, []
    for d in base.iterdir() if base.is_dir() else ():
        tail = d.name.rsplit("-", 1)[-1] if d.name.startswith(TMP_PREFIX) else ""
        if tail.isdigit() and int(tail) != os.getpid() and not pid_alive(int(tail)):
            shutil.rmtree(d, ignore_errors=True)
            gone.append(d.name)
    return gone


def check_folder(root, outputs=()) -> Path:
    """The absolute dataset folder after checking an entry can be added to it: an existing
    accepted-results folder, an empty folder or a new one under a writable parent; a file,
    a folder of other files (or another kind of ``dataset.json``) and ``outputs`` (other
    files of the same run) inside it are refused. Nothing is created."""
    from ..io.atomic import check_destination

    root = Path(os.path.abspath(os.path.expanduser(os.fspath(root))))
    if root.exists() and not root.is_dir():
        raise SamMedError(f"{root}: is a file, not a dataset folder")
    if root.is_dir() and (root / "dataset.json").exists():
        AcceptedDataset(root)  # refuses another kind of dataset.json
        if not os.access(root, os.W_OK | os.X_OK):
            raise SamMedError(f"{root}: the dataset folder is not writable")
    elif root.is_dir() and any(root.iterdir()):
        raise SamMedError(f"{root}: holds other files and no dataset.json; give an empty or new folder "
                          "for accepted results")
    else:
        check_destination(root / "dataset.json")  # parents: folders, writable
    real = os.path.realpath(root).rstrip(os.sep) + os.sep
    for p in outputs:
        if p is not None and os.path.realpath(os.path.abspath(os.fspath(p))).startswith(real):
            raise SamMedError(f"{root}: the output {p} would lie inside the accepted-results folder; "
                              "write it elsewhere")
    return root


def init_folder(root) -> Path:
    """Make ``root`` an accepted-results folder (``dataset.json`` + ``entries/``) when it is
    missing or empty; an existing one is kept (see :func:`check_folder` for what is refused)."""
    from ..io.atomic import atomic_write_text

    root = check_folder(root)
    if not (root / "dataset.json").exists():
        root.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "created": _now().isoformat(timespec="seconds")}
        atomic_write_text(root / "dataset.json", json.dumps(meta, indent=1) + "\n")
    (root / ENTRIES).mkdir(exist_ok=True)
    return root


def _points_as_clicks(prompts: dict) -> list[dict]:
    return [{"ijk": [float(c) for c in p[:3]], "positive": bool(p[3])} for p in prompts.get("points") or []]


def _object_records(objects: Sequence[dict], labels: np.ndarray) -> list[dict]:
    counts = np.bincount(labels.ravel(), minlength=int(labels.max(initial=0)) + 1)
    out, seen = [], set()
    for n, o in enumerate(objects, 1):
        if not isinstance(o, dict) or "id" not in o:
            raise SamMedError(f"object {n}: needs at least an 'id'")
        oid = int(o["id"])
        label = int(o.get("label", oid))
        name = str(o.get("name") or f"object {oid}")
        if label in seen or not 1 <= label <= 65535:
            raise SamMedError(f"object {oid} ({name!r}): label {label} is repeated or outside 1..65535")
        seen.add(label)
        voxels = int(counts[label]) if label < counts.size else 0
        if voxels == 0:
            raise SamMedError(f"object {oid} ({name!r}): the label map has no voxel of label {label}; "
                              "nothing to accept")
        prompts = o.get("prompts") or {}
        if hasattr(prompts, "to_json"):
            prompts = prompts.to_json()
        clicks = o.get("clicks")
        clicks = _points_as_clicks(prompts) if clicks is None else [
            {"ijk": [float(c) for c in k["ijk"]], "positive": bool(k["positive"])} for k in clicks]
        out.append({"id": oid, "name": name, "label": label, "prompts": dict(prompts), "clicks": clicks,
                    "voxels": voxels})
    extra = sorted(set(np.flatnonzero(counts).tolist()) - seen - {0})
    if extra:
        raise SamMedError(f"the label map holds values {extra[:10]} that no accepted object names")
    if not out:
        raise SamMedError("no objects to accept")
    return out


def _scan_record(volume: Volume) -> dict[str, Any]:
    src = volume.source
    if not src:
        raise SamMedError("this volume has no file on disk (it was built in memory); accepted results "
                          "reference the scan file, so load the scan with sam_med.io.load first")
    src = os.path.abspath(src)
    if not os.path.exists(src):
        raise SamMedError(f"{src}: the scan file is gone; cannot accept a result for it")
    digest, n = scan_checksum(src)
    rec: dict[str, Any] = {"path": src, "sha256": digest, "bytes": n, "shape": list(volume.shape),
                           "affine": np.asarray(volume.affine, dtype=float).tolist(),
                           "modality": (str(volume.modality).upper() if volume.modality else None),
                           "series_uid": volume.dicom.series_instance_uid if volume.dicom is not None else None}
    if volume.meta.get("time_index") is not None:
        rec["time_index"] = int(volume.meta["time_index"])
    if volume.meta.get("resampled"):
        rec["resampled"] = True
    return rec


def write_entry(root, volume: Volume, label_map: np.ndarray, objects: Sequence[dict],
                model: dict | None = None, *, versions: dict | None = None) -> AcceptedEntry:
    """Add one accepted result to the dataset folder ``root`` (made when missing/empty).

    ``volume``: the scan as read from its file (``volume.source`` set; mask written on its
    grid). ``label_map``: (X, Y, Z) integer array, value = object label, 0 = background.
    ``objects``: ``[{"id", "name", "label" (default id), "prompts" (ObjectPrompts or its
    JSON), "clicks" (default: the prompts' points in order)}]``; every label must have
    voxels and every non-zero value must be an object's. ``model``: ``{"name",
    "checkpoint_sha256"}``. Returns the new entry (read back from disk)."""
    from .. import io
    from ..io.atomic import atomic_write_text, in_output_set, signals_as_exceptions
    from ..io.writers import label_array

    if in_output_set():
        raise RuntimeError("write_entry renames a folder of its own; call it outside an OutputSet")
    scan = _scan_record(volume)
    labels = label_array(label_map, volume)
    objs = _object_records(objects, labels)
    root = init_folder(root)
    sweep_partial(root)
    stamp = _now()
    entry_id = f"{_stem(scan['path'])}-{stamp:%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"
    from ..provenance import versions as _versions

    record = {"format": ENTRY_FORMAT, "id": entry_id, "created": stamp.isoformat(timespec="seconds"),
              "scan": scan, "model": {"name": (model or {}).get("name"),
                                      "checkpoint_sha256": (model or {}).get("checkpoint_sha256")},
              "objects": objs, "versions": versions if versions is not None else _versions()}
    base = root / ENTRIES
    tmp = base / f"{TMP_PREFIX}{entry_id}-{os.getpid()}"
    final = base / entry_id
    try:
        with signals_as_exceptions():
            tmp.mkdir()
            io.save_label(labels, tmp / MASK_NAME, like=volume, descrip=_binding(scan["sha256"]))
            data = (tmp / MASK_NAME).read_bytes()
            record["mask"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
            atomic_write_text(tmp / ENTRY_NAME, json.dumps(record, indent=1, allow_nan=False) + "\n")
            for f in (tmp / MASK_NAME, tmp / ENTRY_NAME, tmp):
                fsync_path(f)
            if final.exists():
                raise SamMedError(f"{final}: an entry with this id exists; not overwriting it")
            os.rename(tmp, final)
            fsync_path(base)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return AcceptedEntry.read(final)
