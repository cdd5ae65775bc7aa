"""Accept existing label maps as "corrected" masks into an accepted-results folder, through
``Session.accept`` (what napari's Accept calls): the data engine's intake without a GUI.

    python benchmarks/accept_labels.py --to DIR IMAGE LABEL [--labels 1,2,5] [IMAGE LABEL ...]
    python benchmarks/accept_labels.py --to DIR --dataset CSV_OR_FOLDER [--limit N]

Each IMAGE LABEL pair becomes one entry holding every label value (or ``--labels``, which
applies to every pair) as an object, named from a ``labels.json`` next to LABEL when it has
an entry for that file (``{"<label file>": {"<value>": {"name": ...}}}``), else ``label N``.
``--dataset`` takes anything ``sam-med evaluate`` reads (a CSV with ``labels_of_interest`` /
``label_names``, an MSD folder, ...): each case becomes one entry with the dataset's labels and
names. The scans are referenced by path and checksum, never copied.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def label_names(label: Path) -> dict[int, str]:
    f = label.parent / "labels.json"
    if not f.is_file():
        return {}
    table = json.loads(f.read_text()).get(label.name) or {}
    return {int(k): str(v.get("name") if isinstance(v, dict) else v) for k, v in table.items()}


def accept_volumes(folder: Path, vol, lab, values=None, names=None):
    from sam_med.session import Session

    names = names or {}
    present = [int(v) for v in np.unique(lab.array) if v != 0]
    chosen = [v for v in present if values is None or v in values]
    s = Session(vol, None, max_undo=0)
    for v in chosen:
        s.add_object(names.get(v, f"label {v}"), id=v)
        s.set_mask(v, lab.array == v)
    from sam_med.dataengine import accept_session

    return accept_session(s, folder)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--to", required=True, type=Path, help="the accepted-results folder (made when new)")
    ap.add_argument("--labels", help="label values to accept (default: every value present)")
    ap.add_argument("--dataset", type=Path, help="an evaluation dataset (CSV or folder) to accept instead of pairs")
    ap.add_argument("--limit", type=int, help="with --dataset: the first N cases")
    ap.add_argument("pairs", nargs="*", type=Path, metavar="IMAGE LABEL")
    a = ap.parse_args(argv)
    if len(a.pairs) % 2 or bool(a.pairs) == bool(a.dataset):
        ap.error("give IMAGE LABEL pairs or --dataset")
    import sys

    from sam_med.errors import SamMedError
    from sam_med.evaluation import parse_labels

    try:
        values = set(parse_labels(a.labels) or ()) or None
        items = _items(a, values)
        for load, _, _, _ in items:  # every pair reads before anything is written (a bad one: nothing written)
            load()
        for load, want, names, what in items:
            vol, lab = load()
            e = accept_volumes(a.to, vol, lab, want, names)
            print(f"{e.id}: {len(e.objects)} objects from {what}")
    except (SamMedError, OSError) as exc:
        print(f"accept_labels: {exc}", file=sys.stderr)
        return 2
    return 0


def _items(a, values) -> list:
    """(load -> (image, label), label values, names, what) per entry to accept."""
    if a.dataset:
        from sam_med.evaluation.datasets import open_dataset

        return [(c.load, values or (set(c.labels) if c.labels else None), c.label_names, c.case_id)
                for c in open_dataset(a.dataset, limit=a.limit).cases]
    from sam_med import io

    def pair(image: Path, label: Path):
        def load():
            vol = io.load(str(image))
            return vol, io.load_label(str(label), like=vol)
        return load, values, label_names(label), label.name

    return [pair(i, l) for i, l in zip(a.pairs[::2], a.pairs[1::2])]


if __name__ == "__main__":
    raise SystemExit(main())
