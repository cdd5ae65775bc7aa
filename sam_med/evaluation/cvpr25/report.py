"""Reports of a cvpr25 run in OUT/: ``metrics.csv`` (the official evaluator's columns, one row
per case, plus ``over_budget`` and ``status``/``error``), ``per_class.csv`` (DSC_k / NSD_k
per case and class), ``clicks.jsonl`` (the clicks placed), ``summary.json`` (means overall,
per modality and per dataset; failed cases listed) and ``dsc_per_step.png`` (mean DSC and
NSD per step; needs matplotlib)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from .cases import modality_of

STEPS = range(1, 7)
OFFICIAL_COLUMNS = (["CaseName", "TotalRunningTime"] + [f"RunningTime_{k}" for k in STEPS]
                    + ["DSC_AUC", "NSD_AUC", "DSC_Final", "NSD_Final"] + [f"DSC_{k}" for k in STEPS]
                    + [f"NSD_{k}" for k in STEPS] + ["num_class", "runtime_upperbound"])
EXTRA_COLUMNS = ["over_budget", "status", "error"]
MEAN_KEYS = ["DSC_AUC", "NSD_AUC", "DSC_Final", "NSD_Final"] + [f"DSC_{k}" for k in STEPS] + \
    [f"NSD_{k}" for k in STEPS] + ["TotalRunningTime"]


def _write_csv(rows: list[dict], cols: list[str], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})


def _means(rows: list[dict]) -> dict:
    out = {"cases": len(rows)}
    for k in MEAN_KEYS:
        vals = [float(r[k]) for r in rows if r.get(k) is not None and math.isfinite(float(r[k]))]
        out[k] = float(np.mean(vals)) if vals else None
    out["over_budget"] = sum(bool(r.get("over_budget")) for r in rows)
    return out


def summarize(results: list[dict], dataset: str, config: dict) -> dict:
    ok = [r["row"] for r in results if r["row"].get("status") == "ok"]
    failed = [{"CaseName": r["row"]["CaseName"], "error": r["row"].get("error")} for r in results
              if r["row"].get("status") != "ok"]
    by_mod: dict[str, list] = {}
    for r in ok:
        by_mod.setdefault(modality_of(r["CaseName"]), []).append(r)
    return {"dataset": dataset, "protocol": "cvpr25", "config": config, "cases": len(results),
            "cases_failed": len(failed), "failures": failed, "mean": _means(ok),
            "per_modality": {m: _means(rs) for m, rs in sorted(by_mod.items())},
            "per_dataset": {dataset: _means(ok)},
            "budget_s_per_class": 90.0,
            "over_budget_cases": [r["CaseName"] for r in ok if r.get("over_budget")]}


def plot(summary: dict, results: list[dict], path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for r in results:
        if r["row"].get("status") == "ok":
            ax.plot(list(STEPS), [r["row"][f"DSC_{k}"] for k in STEPS], color="0.8", lw=0.8)
    m = summary["mean"]
    if m.get("DSC_1") is not None:
        ax.plot(list(STEPS), [m[f"DSC_{k}"] for k in STEPS], "o-", label="mean DSC")
        ax.plot(list(STEPS), [m[f"NSD_{k}"] for k in STEPS], "s--", label="mean NSD")
    ax.set_xticks(list(STEPS), ["box"] + [f"click {k}" for k in range(1, 6)])
    ax.set_ylim(0, 1)
    ax.set_ylabel("score")
    ax.set_title(f"cvpr25 protocol: {summary['dataset']}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


def write_reports(results: list[dict], out: Path, dataset: str, config: dict) -> dict:
    rows = [r["row"] for r in results]
    _write_csv(rows, OFFICIAL_COLUMNS + EXTRA_COLUMNS, out / "metrics.csv")
    pcols = ["CaseName", "class", "name"] + [f"DSC_{k}" for k in STEPS] + [f"NSD_{k}" for k in STEPS]
    _write_csv([pc for r in results for pc in r.get("per_class", [])], pcols, out / "per_class.csv")
    with open(out / "clicks.jsonl", "w") as fh:
        for r in results:
            fh.write(json.dumps({"CaseName": r["row"]["CaseName"], "clicks": r.get("clicks", [])}) + "\n")
    summary = summarize(results, dataset, config)
    png = plot(summary, results, out / "dsc_per_step.png")
    summary["plots"] = [png] if png else []
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
