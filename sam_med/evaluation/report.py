"""Reports of an evaluation run: CSV tables, ``summary.json`` and PNG plots.

Files written to the output folder:

``records.csv``
    every record: one row per (case, object, step); failed cases/objects have
    ``status=failed`` and the reason in ``error``.
``objects.csv``
    the final state of each object (after the last click).
``summary.json``
    ``cases`` (number of cases), ``cases_ok``, ``cases_failed``, ``objects``,
    ``dice_mean``/``_median``/``_ci95``, the same for ``nsd`` and ``hd95`` (on
    the final state of each object; HD95 averages the finite values and
    ``hd95_undefined`` counts objects with an empty prediction),
    ``dice_mean_per_click`` / ``nsd_mean_per_click`` (click protocols; index 0 =
    before any click), ``per_label``, ``per_case``, ``failures``, ``timing``,
    ``memory``, the configuration and versions. CIs are 95 % percentile
    bootstrap intervals over objects (2000 resamples, seed 0).
``dice_vs_clicks.png``, ``dice_per_structure.png``
    when matplotlib is installed (the ``eval`` extra); drawn with the Agg backend.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..io.atomic import atomic_write_bytes
from ..provenance import versions

LEAD_COLUMNS = ["case_id", "label", "name", "protocol", "status", "step", "prompt", "click", "box",
                "carried", "dice", "nsd", "hd95", "pred_voxels", "ref_voxels", "load_s", "prepare_s",
                "step_s", "peak_rss_mb", "peak_cuda_mb", "spacing", "shape", "error"]
N_BOOT = 2000


def bootstrap_ci(values: Sequence[float], n: int = N_BOOT, seed: int = 0,
                 level: float = 0.95) -> list[float] | None:
    """Percentile bootstrap CI of the mean; None for no values, [v, v] for one."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size == 0:
        return None
    if v.size == 1:
        return [float(v[0]), float(v[0])]
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n, v.size))].mean(axis=1)
    a = (1 - level) / 2
    return [float(np.quantile(means, a)), float(np.quantile(means, 1 - a))]


def _stats(values: Sequence[float], name: str) -> dict[str, Any]:
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    return {
        f"{name}_mean": float(np.mean(v)) if v else None,
        f"{name}_median": float(np.median(v)) if v else None,
        f"{name}_std": float(np.std(v)) if v else None,
        f"{name}_ci95": bootstrap_ci(v),
    }


def final_records(records: list[dict]) -> list[dict]:
    """The last ok step of every (case, label) object, in record order."""
    last: "OrderedDict[tuple, dict]" = OrderedDict()
    for r in records:
        if r.get("status") == "ok":
            key = (r["case_id"], r["label"])
            if key not in last or r["step"] >= last[key]["step"]:
                last[key] = r
    return list(last.values())


def summarize(records: list[dict], config=None, dataset=None) -> dict[str, Any]:
    case_ids = list(OrderedDict.fromkeys(r["case_id"] for r in records))
    if dataset is not None:
        case_ids = [c.case_id for c in dataset.cases]
    by_case: dict[str, list[dict]] = {c: [] for c in case_ids}
    for r in records:
        by_case.setdefault(r["case_id"], []).append(r)
    finals = final_records(records)
    failures = [{"case_id": r["case_id"], **({"label": r["label"]} if "label" in r else {}),
                 "error": r.get("error", "")} for r in records if r.get("status") != "ok"]
    missing = [c for c, rs in by_case.items() if not rs]
    failures += [{"case_id": c, "error": "not evaluated (no records)"} for c in missing]
    ok_cases = [c for c, rs in by_case.items() if any(r.get("status") == "ok" for r in rs)]

    s: dict[str, Any] = {
        "cases": len(by_case),
        "cases_ok": len(ok_cases),
        "cases_failed": len(by_case) - len(ok_cases),
        "objects": len(finals),
        "objects_failed": sum(1 for r in records if r.get("status") != "ok" and "label" in r),
    }
    s.update(_stats([r["dice"] for r in finals], "dice"))
    s.update(_stats([r["nsd"] for r in finals], "nsd"))
    s.update(_stats([r["hd95"] for r in finals], "hd95"))
    s["hd95_undefined"] = sum(1 for r in finals if not math.isfinite(r["hd95"]))

    protocol = getattr(config, "protocol", None) or (records[0].get("protocol") if records else None)
    steps = sorted({r["step"] for r in records if r.get("status") == "ok"})
    if protocol in ("box+clicks", "points") or len(steps) > 1:
        per_click: dict[str, list] = {"dice": [], "nsd": []}
        cis = []
        counts = []
        for k in steps:
            at = [r for r in records if r.get("status") == "ok" and r["step"] == k]
            per_click["dice"].append(float(np.mean([r["dice"] for r in at])))
            per_click["nsd"].append(float(np.mean([r["nsd"] for r in at])))
            cis.append(bootstrap_ci([r["dice"] for r in at]))
            counts.append(len(at))
        s["dice_mean_per_click"] = per_click["dice"]
        s["nsd_mean_per_click"] = per_click["nsd"]
        s["dice_ci95_per_click"] = cis
        s["objects_per_click"] = counts

    per_label: dict[str, dict] = {}
    for r in finals:
        per_label.setdefault(f"{r['label']}:{r['name']}", []).append(r)  # type: ignore[arg-type]
    s["per_label"] = {
        k: {"n": len(v), "dice_mean": float(np.mean([r["dice"] for r in v])),
            "nsd_mean": float(np.mean([r["nsd"] for r in v])),
            "hd95_mean": _finite_mean([r["hd95"] for r in v])}
        for k, v in per_label.items()  # type: ignore[union-attr]
    }
    s["per_case"] = []
    for c, rs in by_case.items():
        fr = [r for r in finals if r["case_id"] == c]
        s["per_case"].append({
            "case_id": c,
            "status": "ok" if fr and len(fr) == len({r.get("label") for r in rs}) else
                      ("partial" if fr else "failed"),
            "objects": len(fr),
            "dice_mean": float(np.mean([r["dice"] for r in fr])) if fr else None,
            "nsd_mean": float(np.mean([r["nsd"] for r in fr])) if fr else None,
            "hd95_mean": _finite_mean([r["hd95"] for r in fr]) if fr else None,
            "dice": {str(r["label"]): r["dice"] for r in fr},
        })
    s["failures"] = failures

    ok = [r for r in records if r.get("status") == "ok"]
    first = [r for r in ok if r["step"] == 0]
    clicks = [r for r in ok if r["step"] > 0 and not r.get("carried")]
    case_first = list({r["case_id"]: r for r in ok}.values())
    s["timing"] = {
        "load_s_mean": _finite_mean([r["load_s"] for r in case_first]),
        "prepare_s_mean": _finite_mean([r["prepare_s"] for r in case_first]),
        "first_prompt_s_mean": _finite_mean([r["step_s"] for r in first if r["prompt"] != "none"]),
        "first_prompt_s_median": _finite_median([r["step_s"] for r in first if r["prompt"] != "none"]),
        "click_s_mean": _finite_mean([r["step_s"] for r in clicks]),
        "click_s_median": _finite_median([r["step_s"] for r in clicks]),
    }
    for key in sorted({k for r in ok for k in r if k.startswith("info_")}):
        s["timing"][key[5:] + "_mean"] = _finite_mean([r[key] for r in ok if key in r])
    s["memory"] = {
        "peak_rss_mb_max": _finite_max([r.get("peak_rss_mb") for r in ok]),
        "peak_cuda_mb_max": _finite_max([r.get("peak_cuda_mb") for r in ok]),
    }
    if config is not None:
        from dataclasses import asdict

        s["config"] = asdict(config)
    if dataset is not None:
        s["dataset"] = {"name": dataset.name, "root": dataset.root, "kind": dataset.kind}
    s["versions"] = versions()
    return s


def _finite(vals):
    return [float(v) for v in vals if v is not None and math.isfinite(float(v))]


def _finite_mean(vals):
    v = _finite(vals)
    return float(np.mean(v)) if v else None


def _finite_median(vals):
    v = _finite(vals)
    return float(np.median(v)) if v else None


def _finite_max(vals):
    v = _finite(vals)
    return float(max(v)) if v else None


def write_csv(records: list[dict], path: Path) -> Path:
    cols = [c for c in LEAD_COLUMNS if any(c in r for r in records)]
    cols += sorted({k for r in records for k in r if k not in cols and k != "traceback"})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in records:
        w.writerow({k: _fmt(r.get(k)) for k in cols})
    atomic_write_bytes(Path(path), buf.getvalue().encode())
    return Path(path)


def _fmt(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else repr(v)
    return v


def plot(records: list[dict], summary: dict, out_dir: Path) -> list[str]:
    """Dice-vs-clicks and per-structure box plots; [] when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made = []
    if summary.get("dice_mean_per_click"):
        d = summary["dice_mean_per_click"]
        x = list(range(len(d)))
        fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
        ax.plot(x, d, "o-", label="Dice")
        ci = summary.get("dice_ci95_per_click") or []
        if ci and all(c is not None for c in ci):
            ax.fill_between(x, [c[0] for c in ci], [c[1] for c in ci], alpha=0.2, label="Dice 95% CI")
        ax.plot(x, summary["nsd_mean_per_click"], "s--", label="NSD")
        ax.set_xlabel("corrective clicks")
        ax.set_ylabel("mean over objects")
        ax.set_ylim(0, 1.02)
        ax.set_xticks(x)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
        ax.set_title(f"{summary.get('config', {}).get('protocol', '')}: {summary['objects']} objects")
        fig.tight_layout()
        p = out_dir / "dice_vs_clicks.png"
        fig.savefig(p)
        plt.close(fig)
        made.append(p.name)
    finals = final_records(records)
    if finals:
        groups: "OrderedDict[str, list]" = OrderedDict()
        for r in sorted(finals, key=lambda r: r["label"]):
            groups.setdefault(str(r["name"]), []).append(r["dice"])
        fig, ax = plt.subplots(figsize=(max(4, 0.8 * len(groups) + 2), 3.5), dpi=120)
        ax.boxplot(list(groups.values()), showmeans=True)
        ax.set_xticks(range(1, len(groups) + 1), list(groups.keys()), rotation=30, ha="right")
        ax.set_ylabel("Dice (final)")
        ax.set_ylim(0, 1.02)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        p = out_dir / "dice_per_structure.png"
        fig.savefig(p)
        plt.close(fig)
        made.append(p.name)
    return made


def write_reports(records: list[dict], out_dir, config=None, dataset=None) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(records, out_dir / "records.csv")
    write_csv(final_records(records), out_dir / "objects.csv")
    summary = summarize(records, config, dataset)
    summary["plots"] = plot(records, summary, out_dir)
    text = json.dumps(summary, indent=1, default=str, allow_nan=False) if _no_nan(summary) else \
        json.dumps(_nan_to_none(summary), indent=1, default=str)
    atomic_write_bytes(out_dir / "summary.json", text.encode())
    return summary


def _no_nan(o) -> bool:
    try:
        json.dumps(o, allow_nan=False, default=str)
        return True
    except ValueError:
        return False


def _nan_to_none(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _nan_to_none(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_nan_to_none(v) for v in o]
    return o
