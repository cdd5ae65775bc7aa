"""An accepted-results folder as an evaluation dataset (``sam-med evaluate DIR``; also the
CVPR25 protocol, which converts these cases): one :class:`AcceptedCase` per entry, its
objects the case's labels (value = the object's ``label``, named after the object)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..evaluation.datasets import EvalCase, EvalDataset
from ..volume import Volume
from .accepted import AcceptedDataset, AcceptedEntry

__all__ = ["AcceptedCase", "open_accepted"]


@dataclass
class AcceptedCase(EvalCase):
    """An :class:`EvalCase` read through its entry: the scan is verified (checksum) and read
    with the recorded series / time point, the mask checked to lie on the scan's grid."""

    entry: AcceptedEntry | None = None

    def load(self) -> tuple[Volume, Volume]:
        if self.entry is None:
            return super().load()
        image = self.entry.load_scan()
        return image, self.entry.load_mask(like=image)

    def to_json(self) -> dict:
        out = super().to_json()
        out["entry"] = self.entry.id if self.entry is not None else None
        return out


def open_accepted(path) -> EvalDataset:
    """The dataset of ``path``'s entries (sorted by id). Every scan is verified here, so a
    scan changed or moved since it was accepted stops the run with one
    :class:`~sam_med.errors.SamMedError` ("scan changed since it was accepted: PATH")."""
    ds = AcceptedDataset(path)
    cases = []
    for e in ds.entries():
        e.verify()
        labels = tuple(int(o["label"]) for o in e.objects)
        names = {int(o["label"]): str(o["name"]) for o in e.objects}
        cases.append(AcceptedCase(case_id=e.id, image=e.scan_path, label=str(e.mask_path), labels=labels,
                                  label_names=names, entry=e))
    return EvalDataset(name=Path(ds.root).name, root=str(ds.root), kind="accepted", cases=cases)
