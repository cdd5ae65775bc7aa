"""Labelled datasets for evaluation: one :class:`EvalCase` per (image, label map).

Adapters (chosen by :func:`open_dataset` from what ``path`` is):

* **MSD / nnU-Net raw layout** -- a folder with ``dataset.json`` and
  ``imagesTr/`` + ``labelsTr/``. Label names come from ``dataset.json``
  (MSD ``{"labels": {"0": "background", "1": "liver"}}`` or nnU-Net v2
  ``{"labels": {"background": 0, "liver": 1}}``). Cases are the ``training``
  list (MSD) or the files of ``labelsTr/`` paired with ``imagesTr/<case>_0000``
  (nnU-Net v2; only channel 0 is evaluated).
* **Folder of research npz files** -- ``imgs`` (D, H, W), ``gts``, ``spacing``
  (x, y, z), optional ``direction``/``origin``/``boxes`` (the
  ``../shared/data/ct_lesion`` format, read by :func:`sam_med.io.read_npz`).
  Case id = file name without ``.npz``.
* **Accepted-results folder** -- ``dataset.json`` with ``"format": "sam-med-accepted/1"``
  (written by ``Session.accept`` / ``segment --accept-to`` / napari's Accept; see
  ``docs/dataengine.md``): one case per entry, its objects the labels (with their names);
  every scan's checksum is verified when the dataset is opened.
* **CSV** -- a header with columns ``image,label`` and optionally
  ``labels_of_interest`` (label values separated by ``;`` or spaces, or by
  commas inside a quoted cell), ``label_names`` (names in the same order) and
  ``case_id``. Images may be anything :func:`sam_med.io.load` reads (NIfTI,
  NRRD, MHA, npz, DICOM folders). **Relative paths are resolved against the
  folder that contains the CSV file** (not the current directory), so a CSV
  can be moved together with its data.

Every label value of interest becomes its own object. ``labels`` passed to
:func:`open_dataset` (the CLI's ``--labels``) override the per-case choice;
without either, every non-zero value present in the label map is evaluated.

Loading happens in :meth:`EvalCase.load`, inside the runner, so that a missing
file or a label whose geometry disagrees with its image becomes a failure
record for that case instead of stopping the run.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputFileError, SamMedError
from ..volume import Volume

_EXTS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".npz", ".dcm")


def case_name(path: str | os.PathLike) -> str:
    """File name without the image extension (``a/b/x.nii.gz`` -> ``x``)."""
    name = Path(path).name
    for ext in _EXTS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def parse_labels(text) -> tuple[int, ...] | None:
    """``"1,2,5"`` / ``"1;2;5"`` / ``"1 2 5"`` / ``[1, 2, 5]`` -> (1, 2, 5); empty -> None."""
    if text is None:
        return None
    if isinstance(text, (list, tuple)):
        vals = list(text)
    else:
        text = str(text).strip()
        if not text:
            return None
        vals = [v for v in re.split(r"[,;\s]+", text) if v]
    try:
        out = tuple(int(v) for v in vals)
    except ValueError:
        raise SamMedError(f"labels must be integers, got {text!r}") from None
    if any(v <= 0 for v in out):
        raise SamMedError(f"labels must be positive (0 is background), got {list(out)}")
    return out or None


@dataclass
class EvalCase:
    """One image + label map to evaluate. Nothing is read until :meth:`load`."""

    case_id: str
    image: str
    label: str | None = None  # None: the label lives in the image file (npz ``gts``)
    labels: tuple[int, ...] | None = None  # values of interest; None = all present
    label_names: dict[int, str] = field(default_factory=dict)

    def load(self) -> tuple[Volume, Volume]:
        """Read (image, label map) on the same grid; raises a :class:`SamMedError` with the reason."""
        from .. import io

        for p in (self.image, self.label):
            if p is not None and not os.path.exists(p):
                raise InputFileError(f"{p}: file not found")
        if self.label is None:
            npz = io.read_npz(self.image)
            if npz.label is None:
                raise InputFileError(f"{self.image}: npz has no 'gts' label")
            return npz.image, io.load_label(self.image, like=npz.image)
        image = io.load(self.image)
        label = io.load_label(self.label, like=image)
        return image, label

    def objects(self, label: Volume) -> list[tuple[int, str]]:
        """(label value, name) of every object to evaluate in this case."""
        if self.labels is not None:
            values = list(self.labels)
        else:
            values = [int(v) for v in np.unique(label.array) if v != 0]
        return [(v, self.label_names.get(v, f"label {v}")) for v in values]

    def to_json(self) -> dict:
        return {"case_id": self.case_id, "image": self.image, "label": self.label,
                "labels": list(self.labels) if self.labels else None}


@dataclass
class EvalDataset:
    name: str
    root: str
    kind: str  # "msd", "npz", "csv", "accepted"
    cases: list[EvalCase]

    def __len__(self) -> int:
        return len(self.cases)


#: folder readers other packages register (``(claims(path) -> bool, open(path) -> EvalDataset)``),
#: tried before the built-in layouts: the data engine registers its accepted-results folder here,
#: so evaluation does not import the packages above it
FOLDER_READERS: list[tuple] = []


def register_folder_reader(claims, opener) -> None:
    """Register a dataset folder layout (see :data:`FOLDER_READERS`); registering twice is a no-op."""
    if (claims, opener) not in FOLDER_READERS:
        FOLDER_READERS.append((claims, opener))


def open_dataset(path: str | os.PathLike, labels: Sequence[int] | None = None,
                 limit: int | None = None) -> EvalDataset:
    """Open a dataset (MSD/nnU-Net folder, a registered folder layout such as an accepted-results
    folder, npz folder or CSV); see the module docstring."""
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{p}: dataset not found")
    if p.is_file():
        if p.suffix.lower() != ".csv":
            raise InputFileError(f"{p}: a dataset is a folder (MSD/nnU-Net, npz files) or a .csv file")
        ds = _open_csv(p)
    elif (reader := next((o for c, o in FOLDER_READERS if c(p)), None)) is not None:
        ds = reader(p)
    elif (p / "dataset.json").is_file():
        ds = _open_msd(p)
    elif any(p.glob("*.npz")):
        ds = _open_npz_folder(p)
    else:
        raise InputFileError(
            f"{p}: not a dataset: expected dataset.json (MSD/nnU-Net layout), *.npz files or a .csv file"
        )
    if labels:
        labels = tuple(int(v) for v in labels)
        for c in ds.cases:
            c.labels = labels
    if limit is not None:
        ds.cases = ds.cases[: int(limit)]
    if not ds.cases:
        raise InputFileError(f"{p}: the dataset has no cases")
    seen = set()
    for c in ds.cases:
        if c.case_id in seen:
            raise SamMedError(f"{p}: case id {c.case_id!r} appears twice; give a case_id column")
        seen.add(c.case_id)
    return ds


def _open_npz_folder(p: Path) -> EvalDataset:
    cases = [EvalCase(case_id=f.name[:-4], image=str(f.resolve()), label=None, label_names={1: "lesion"}
                      if f.name.startswith("CT_Lesion") else {})
             for f in sorted(p.glob("*.npz"))]
    return EvalDataset(name=p.resolve().name, root=str(p.resolve()), kind="npz", cases=cases)


def _msd_label_names(meta: dict) -> dict[int, str]:
    names: dict[int, str] = {}
    for k, v in (meta.get("labels") or {}).items():
        if isinstance(v, (int, float)) or (isinstance(v, str) and v.isdigit() and not k.isdigit()):
            names[int(v)] = str(k)  # nnU-Net v2: name -> value
        elif isinstance(v, list):  # nnU-Net v2 region-based: name -> [values]; skip
            continue
        else:
            names[int(k)] = str(v)  # MSD: value -> name
    names.pop(0, None)
    return names


def _open_msd(p: Path) -> EvalDataset:
    try:
        meta = json.loads((p / "dataset.json").read_text())
    except (OSError, ValueError) as exc:
        raise InputFileError(f"{p / 'dataset.json'}: cannot read ({exc})") from exc
    names = _msd_label_names(meta)
    cases: list[EvalCase] = []
    training = meta.get("training")
    if isinstance(training, list) and training and isinstance(training[0], dict) and "label" in training[0]:
        for item in training:  # MSD: paths relative to the dataset root
            img = (p / item["image"]).resolve()
            lab = (p / item["label"]).resolve()
            cases.append(EvalCase(case_name(lab), str(img), str(lab), None, dict(names)))
    else:  # nnU-Net v2: labelsTr/<case><ending>, imagesTr/<case>_0000<ending>
        ending = meta.get("file_ending", ".nii.gz")
        for lab in sorted((p / "labelsTr").glob(f"*{ending}")):
            cid = lab.name[: -len(ending)]
            img = p / "imagesTr" / f"{cid}_0000{ending}"
            cases.append(EvalCase(cid, str(img.resolve()), str(lab.resolve()), None, dict(names)))
    return EvalDataset(name=str(meta.get("name") or p.name), root=str(p.resolve()), kind="msd", cases=cases)


def _open_csv(p: Path) -> EvalDataset:
    base = p.resolve().parent
    try:
        with open(p, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise InputFileError(f"{p}: cannot read ({exc})") from exc
    if not rows or "image" not in rows[0] or "label" not in rows[0]:
        raise InputFileError(f"{p}: CSV needs a header with 'image' and 'label' columns")

    def resolve(s: str) -> str:
        s = os.path.expanduser(s.strip())
        return str(Path(s) if os.path.isabs(s) else (base / s).resolve())

    cases = []
    counts: dict[str, int] = {}
    for n, row in enumerate(rows, start=2):
        if not (row.get("image") or "").strip():
            raise InputFileError(f"{p}, line {n}: empty 'image'")
        img = resolve(row["image"])
        lab = resolve(row["label"]) if (row.get("label") or "").strip() else None
        labs = parse_labels(row.get("labels_of_interest"))
        names: dict[int, str] = {}
        if (row.get("label_names") or "").strip():
            nm = [s for s in re.split(r"[;,]", row["label_names"]) if s.strip()]
            if labs is None or len(nm) != len(labs):
                raise InputFileError(f"{p}, line {n}: label_names must list one name per labels_of_interest value")
            names = {v: s.strip() for v, s in zip(labs, nm)}
        cid = (row.get("case_id") or "").strip() or case_name(img)
        if not row.get("case_id"):
            counts[cid] = counts.get(cid, 0) + 1
            if counts[cid] > 1:
                cid = f"{cid}#{counts[cid]}"
        cases.append(EvalCase(cid, img, lab, labs, names))
    return EvalDataset(name=p.stem, root=str(base), kind="csv", cases=cases)
