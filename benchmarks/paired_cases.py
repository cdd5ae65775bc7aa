"""Paired per-case comparison of two ``sam-med evaluate --protocol cvpr25`` runs, pooled over sets.

    python benchmarks/paired_cases.py BASE_DIR:NEW_DIR [BASE_DIR:NEW_DIR ...] [--resamples 5000]

Each pair is one data set evaluated twice (the two folders' ``metrics.csv``, matched by case
name). For DSC_Final, DSC_AUC and the first click's DSC (``DSC_2``) it prints the mean difference
NEW - BASE over every matched case of every pair, its 95 % bootstrap interval (cases resampled,
seeded, as the data engine's promotion rule does) and how many cases differ by more than 0.005 either way. Used for the click default in
``docs/engine.md``.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

METRICS = ("DSC_Final", "DSC_AUC", "DSC_2")


def _read(folder: str) -> dict[str, dict]:
    path = Path(folder) / "metrics.csv"
    if not path.is_file():
        raise ValueError(f"{folder}: no metrics.csv (not a sam-med evaluate --protocol cvpr25 folder)")
    with path.open(newline="") as f:
        rows = {r["CaseName"]: r for r in csv.DictReader(f)}
    if not rows or any(m not in next(iter(rows.values())) for m in METRICS):
        raise ValueError(f"{path}: no cases or no {', '.join(METRICS)} columns")
    return rows


def paired(pairs: list[tuple[str, str]], resamples: int = 5000, seed: int = 0) -> dict[str, dict]:
    """``{metric: {"n", "mean", "lo", "hi", "better", "worse"}}`` over the matched cases
    (the interval: :func:`sam_med.dataengine.compare.paired_bootstrap`, the promotion rule's)."""
    from sam_med.dataengine.compare import paired_bootstrap

    vals: dict[str, tuple[list[float], list[float]]] = {m: ([], []) for m in METRICS}
    for base, new in pairs:
        a, b = _read(base), _read(new)
        common = sorted(set(a) & set(b))
        if not common:
            raise ValueError(f"{base} and {new} share no case")
        for m in METRICS:
            vals[m][0].extend(float(a[c][m]) for c in common)
            vals[m][1].extend(float(b[c][m]) for c in common)
    out = {}
    for m, (x, y) in vals.items():
        r = paired_bootstrap(x, y, n=resamples, seed=seed)
        d = np.asarray(y) - np.asarray(x)
        out[m] = {"n": r["n"], "mean": r["mean_diff"], "lo": r["ci"][0], "hi": r["ci"][1],
                  "better": int((d > 0.005).sum()), "worse": int((d < -0.005).sum())}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pairs", nargs="+", metavar="BASE_DIR:NEW_DIR")
    ap.add_argument("--resamples", type=int, default=5000)
    a = ap.parse_args(argv)
    try:
        pairs = []
        for p in a.pairs:
            base, sep, new = p.rpartition(":")
            if not sep or not base or not new:
                raise ValueError(f"{p}: expected BASE_DIR:NEW_DIR")
            pairs.append((base, new))
        res = paired(pairs, a.resamples)
    except ValueError as e:
        print(f"paired_cases: {e}", file=sys.stderr)
        return 2
    for m, r in res.items():
        print(f"{m}: {r['n']} cases, mean diff {r['mean']:+.4f} (95 % CI {r['lo']:+.4f} .. {r['hi']:+.4f}), "
              f"better {r['better']} / worse {r['worse']} (> 0.005)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
