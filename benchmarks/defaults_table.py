"""The table behind each engine default: ``sam-med evaluate --protocol cvpr25`` runs of the default
and of one variant per option, on the same cases, side by side (``docs/engine.md``).

    python benchmarks/defaults_table.py NAME=DEFAULT_DIR NAME=VARIANT_DIR [...] [--per-class]

Per run: objects (classes), mean box-step DSC (DSC_1), mean final DSC (after 5 clicks), the mean of
the cases' DSC_AUC, and, against the first run, the objects whose final DSC is higher / lower by more
than 0.01. Runs must cover the same cases (the table says so when they do not).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path


def _read(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def summary(folder: Path) -> dict:
    per_class = {(r["CaseName"], r["class"]): r for r in _read(folder / "per_class.csv")}
    cases = [r for r in _read(folder / "metrics.csv") if r.get("status", "ok") == "ok"]
    steps = sorted(int(k[4:]) for k in next(iter(per_class.values())) if k.startswith("DSC_") and k[4:].isdigit())
    return {"per_class": per_class, "box": {k: float(r["DSC_1"]) for k, r in per_class.items()},
            "final": {k: float(r[f"DSC_{steps[-1]}"]) for k, r in per_class.items()},
            "auc": {r["CaseName"]: float(r["DSC_AUC"]) for r in cases}}


def _mean(d: dict, keys) -> float:
    keys = list(keys)
    return sum(d[k] for k in keys) / len(keys) if keys else float("nan")


def table(runs: list[tuple[str, Path]], per_class: bool = False) -> str:
    s = [(name, summary(folder)) for name, folder in runs]
    base_name, base = s[0]
    common = set(base["final"])
    cases = set(base["auc"])
    for _, r in s[1:]:
        common &= set(r["final"])
        cases &= set(r["auc"])
    lines = [f"{len(common)} objects in {len(cases)} cases common to every run", "",
             "| run | box DSC | final DSC | DSC_AUC | final vs " + base_name + ": better / worse (> 0.01) |",
             "|---|---|---|---|---|"]
    for name, r in s:
        better = sum(r["final"][k] > base["final"][k] + 0.01 for k in common)
        worse = sum(r["final"][k] < base["final"][k] - 0.01 for k in common)
        lines.append(f"| {name} | {_mean(r['box'], common):.4f} | {_mean(r['final'], common):.4f} | "
                     f"{_mean(r['auc'], cases):.3f} | {'—' if name == base_name else f'{better} / {worse}'} |")
    if per_class:
        names = sorted({base["per_class"][k]["name"] for k in common})
        lines += ["", "| structure | " + " | ".join(f"{n} final" for n, _ in s) + " |",
                  "|---|" + "---|" * len(s)]
        for struct in names:
            keys = [k for k in common if base["per_class"][k]["name"] == struct]
            lines.append(f"| {struct} ({len(keys)}) | " + " | ".join(f"{_mean(r['final'], keys):.3f}" for _, r in s) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="NAME=FOLDER, the default first")
    ap.add_argument("--per-class", action="store_true")
    a = ap.parse_args(argv)
    runs = []
    for item in a.runs:
        name, sep, folder = item.rpartition("=")
        if not sep or not (Path(folder) / "per_class.csv").is_file():
            print(f"defaults_table: {item}: expected NAME=FOLDER of a cvpr25 evaluation", file=sys.stderr)
            return 2
        runs.append((name, Path(folder)))
    print(table(runs, a.per_class))
    return 0


if __name__ == "__main__":
    sys.exit(main())
