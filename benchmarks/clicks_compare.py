"""Compare two ``sam-med evaluate --protocol cvpr25`` output folders (a reference rule and a
candidate): per case DSC_1 / DSC_Final / DSC_AUC, per class box step and final DSC, the mean
DSC per step, and the two checks of issue #15 (no class ends > 0.02 below its box step; the
mean never drops from one step to the next). Prints markdown tables.

    python benchmarks/clicks_compare.py eval_a/ eval_b/
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path


def _rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _steps(row: dict) -> list[float]:
    return [float(row[f"DSC_{i}"]) for i in range(1, 100) if f"DSC_{i}" in row]


def checks(per_class: list[dict]) -> tuple[list[str], bool]:
    """(classes ending > 0.02 below their box step, whether the mean over classes never drops)."""
    drops = [f"{r['CaseName']}:{r['class']}" for r in per_class if _steps(r)[-1] < _steps(r)[0] - 0.02]
    n = len(_steps(per_class[0]))
    means = [sum(_steps(r)[i] for r in per_class) / len(per_class) for i in range(n)]
    return drops, all(b >= a - 1e-9 for a, b in zip(means, means[1:]))


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: clicks_compare.py REF_DIR CANDIDATE_DIR", file=sys.stderr)
        return 2
    ref, cand = (Path(a) for a in argv)
    for d in (ref, cand):
        if not (d / "metrics.csv").exists() or not (d / "per_class.csv").exists():
            print(f"error: {d} has no metrics.csv / per_class.csv", file=sys.stderr)
            return 2
    mr, mc = _rows(ref / "metrics.csv"), _rows(cand / "metrics.csv")
    print(f"| case | DSC_1 | final {ref.name} | final {cand.name} | DSC_AUC {ref.name} | DSC_AUC {cand.name} |")
    print("|---|---|---|---|---|---|")
    for a, b in zip(mr, mc):
        print(f"| {a['CaseName']} | {float(a['DSC_1']):.3f} | {float(a['DSC_Final']):.4f} | "
              f"{float(b['DSC_Final']):.4f} | {float(a['DSC_AUC']):.4f} | {float(b['DSC_AUC']):.4f} |")
    for name, rows in ((ref.name, mr), (cand.name, mc)):
        n = len(_steps(rows[0]))
        means = [sum(_steps(r)[i] for r in rows) / len(rows) for i in range(n)]
        auc = sum(float(r["DSC_AUC"]) for r in rows) / len(rows)
        print(f"\n{name}: mean DSC per step " + " ".join(f"{m:.4f}" for m in means) + f"; mean DSC_AUC {auc:.4f}")
    pr, pc = _rows(ref / "per_class.csv"), _rows(cand / "per_class.csv")
    print(f"\n| case | class | box | final {ref.name} | final {cand.name} | diff |")
    print("|---|---|---|---|---|---|")
    for a, b in zip(pr, pc):
        fa, fb = _steps(a)[-1], _steps(b)[-1]
        print(f"| {a['CaseName']} | {a['class']} | {_steps(a)[0]:.3f} | {fa:.4f} | {fb:.4f} | {fb - fa:+.4f} |")
    for name, rows in ((ref.name, pr), (cand.name, pc)):
        drops, never = checks(rows)
        print(f"\n{name}: classes ending > 0.02 below their box step: {drops or 'none'}; "
              f"mean over classes never drops: {never}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
