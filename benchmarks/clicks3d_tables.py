"""Markdown tables (per case, per class with its split) of several `sam-med evaluate --protocol
cvpr25` runs, for benchmarks/finetune_clicks3d.md.

    python benchmarks/clicks3d_tables.py --config configs/finetune/lite_medsam_clicks3d.yaml \
        base=/tmp/clicks3d/ev_base new=/tmp/clicks3d/ev_new

Each class of the six CVPR25 cases is tagged with the split of the fine-tune config it belongs
to: ``train`` (data.sources), ``val`` (data.heldout: chose the epoch), ``test`` (data.test:
chose nothing), ``-`` (in none). TotalSeg classes 1..8 are the scan's 8 largest labels with at
least 300 voxels, largest first (the rule of ../shared/cvpr25/make_cases.py); a lesion case's
class 1 is its lesion.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

STEPS = [f"DSC_{k}" for k in range(1, 7)]
SCANS = {"TotalSeg_CT_sm": "example_seg.nii.gz", "TotalSeg_MR_sm": "example_seg_mr.nii.gz"}


def _rows(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def class_values(seg: Path) -> list[int]:
    """Label values of CVPR25 classes 1..8 of a TotalSeg scan (make_cases.py's rule)."""
    import nibabel as nib

    lab = np.asanyarray(nib.load(str(seg)).dataobj).astype(int)
    ids, counts = np.unique(lab[lab > 0], return_counts=True)
    return [int(i) for i, c in sorted(zip(ids, counts), key=lambda t: -t[1]) if c >= 300][:8]


def split_of(cfg: dict) -> dict[tuple[str, int], tuple[str, str]]:
    """``(case, class) -> (split, structure name)`` for the six CVPR25 cases."""
    from sam_med.training.sources import parse_sources

    shared = None
    out: dict[tuple[str, int], tuple[str, str]] = {}
    for split, key in (("train", "sources"), ("val", "heldout"), ("test", "test")):
        for s in parse_sources(cfg["data"].get(key), f"data.{key}"):
            if s.dataset and Path(s.dataset).name == "ct_lesion":
                for c in s.cases or []:
                    out[(c, 1)] = (split, "lesion")
            elif s.label:
                lab = Path(s.label)
                shared = lab.parent
                case = next((k for k, v in SCANS.items() if v == lab.name), None)
                if case is None:
                    continue
                values = class_values(lab)
                for v in s.labels or ():
                    if v in values:
                        out[(case, values.index(v) + 1)] = (split, s.label_names.get(v, str(v)))
    if shared is not None:  # name the classes no split holds
        for case, f in SCANS.items():
            for i, _v in enumerate(class_values(shared / f), 1):
                out.setdefault((case, i), ("-", f"class {i}"))
    return out


def main(argv=None) -> int:
    from sam_med.training import load_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("runs", nargs="+", help="TAG=OUT_DIR of a cvpr25 evaluation")
    a = ap.parse_args(argv)
    runs = {}
    for r in a.runs:
        tag, _, d = r.partition("=")
        if not d or not (Path(d) / "per_class.csv").is_file():
            print(f"error: {r}: expected TAG=DIR with DIR/per_class.csv", file=sys.stderr)
            return 2
        runs[tag] = (_rows(Path(d) / "metrics.csv"), _rows(Path(d) / "per_class.csv"))
    split = split_of(load_config(a.config))
    f = lambda v: f"{float(v):.3f}"  # noqa: E731
    print("| case | run | " + " | ".join(STEPS) + " | DSC_AUC |")
    print("|---|---|" + "---|" * (len(STEPS) + 1))
    cases = [r["CaseName"] for r in next(iter(runs.values()))[0]]
    for c in cases:
        for tag, (m, _) in runs.items():
            row = next((r for r in m if r["CaseName"] == c), None)
            if row is not None and row.get("status", "ok") == "ok":
                print(f"| {c} | {tag} | " + " | ".join(f(row[s]) for s in STEPS) + f" | {float(row['DSC_AUC']):.2f} |")
    print()
    print("| case | class | structure | split | run | DSC_1 (box) | DSC_6 (final) | final - box | min step change |")
    print("|---|---|---|---|---|---|---|---|---|")
    groups: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for c in cases:
        ks = sorted({int(r["class"]) for r in next(iter(runs.values()))[1] if r["CaseName"] == c})
        for k in ks:
            sp, name = split.get((c, k), ("-", f"class {k}"))
            for tag, (_, pc) in runs.items():
                row = next((r for r in pc if r["CaseName"] == c and int(r["class"]) == k), None)
                if row is None:
                    continue
                d = [float(row[s]) for s in STEPS]
                steps = np.diff(d)  # box -> click 1 -> ... -> click 5
                print(f"| {c} | {k} | {name} | {sp} | {tag} | {d[0]:.3f} | {d[-1]:.3f} | {d[-1] - d[0]:+.3f} | "
                      f"{steps.min():+.3f} |")
                groups.setdefault((sp, tag), []).append((d[0], d[-1]))
    print()
    print("| split | run | classes | mean DSC_1 (box) | mean DSC_6 (final) |")
    print("|---|---|---|---|---|")
    for (sp, tag), v in sorted(groups.items()):
        arr = np.array(v)
        print(f"| {sp} | {tag} | {len(v)} | {arr[:, 0].mean():.3f} | {arr[:, 1].mean():.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
