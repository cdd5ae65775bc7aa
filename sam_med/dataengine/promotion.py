"""Promotion with evidence: after ``sam-med finetune --from DIR`` trains, the base and the new
weights are compared on the validation scans, and the new weights become a named model
only if they win.

Evaluation (:mod:`.compare`): every validation structure under the CVPR25 protocol (box, then
``eval_clicks`` clicks on each model's own errors; in process) and the box protocol, for
both models with the same prompts. Per metric: the mean paired difference (new - base) over
structures and its 95 % percentile bootstrap interval (``bootstrap`` resamples, seeded).

The rule (``promotion.json`` records it with the numbers):

1. there is a validation split (a train-only run is never promoted) and some epoch beat the
   base on it during training (else the selected weights are the base's: nothing to compare);
2. at least ``min_structures`` validation structures (a zero-width interval from one or two
   structures is no evidence);
3. the lower bound of the interval of the **primary metric** (``primary``: the CVPR25
   ``DSC_AUC`` by default, or ``DSC_Final``) is above 0;
4. the box protocol's Dice does not get worse beyond doubt (its interval's upper bound is not
   below 0), unless ``box_guard`` is false.

On a win the weights and config are written to the models directory
(:func:`sam_med.training.export.export_finetuned`) and the config gets a ``provenance``
section: base model (name, sha256), data (folder, manifest hash = sha256 over the entries'
(id, scan sha256, mask sha256), train / validation entry ids), versions, checkpoint sha256
and the evaluation summary (napari's model menu shows it). Otherwise it prints
``not promoted: <reason>`` and registers nothing; the selected weights stay in
``out_dir/best.pt`` and the report in ``out_dir/promotion.{json,md}``.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any, Callable

from ..errors import SamMedError

__all__ = ["PROMOTION_DEFAULTS", "decide", "evaluate_and_promote", "add_provenance", "summary_line"]

#: promotion options (``from.KEY=VALUE``)
#: ``extra_cvpr25`` (+ ``extra_cases``, an fnmatch pattern): other CVPR25 cases to compare the
#: two models on (e.g. ../shared/cvpr25/cases, CT_Lesion_*): reported, not part of the rule
PROMOTION_DEFAULTS: dict[str, Any] = {"primary": "DSC_AUC", "eval_clicks": 5, "bootstrap": 2000,
                                      "min_structures": 3, "box_guard": True, "promote": True,
                                      "extra_cvpr25": None, "extra_cases": "*"}


def _fmt_ci(s: dict) -> str:
    if not s or s.get("mean_diff") is None:
        return "n/a"
    lo, hi = s["ci"]
    return (f"{s['base_mean']:.3f} -> {s['new_mean']:.3f} ({s['mean_diff']:+.3f}, "
            f"95% CI {lo:+.3f}..{hi:+.3f}, {s['n']} structures)")


def summary_line(evaluation: dict, primary: str) -> str:
    """One line for menus and logs: the primary metric and the box Dice, base -> new."""
    c = (evaluation.get("cvpr25") or {}).get("metrics", {}).get(primary)
    b = (evaluation.get("box") or {}).get("metrics", {}).get("dice")
    return f"CVPR25 {primary} {_fmt_ci(c)}; box Dice {_fmt_ci(b)}"


def decide(evaluation: dict | None, opts: dict) -> tuple[bool, str]:
    """(promoted, reason) by the rule in the module docstring."""
    primary = str(opts["primary"])
    if not evaluation:
        return False, "no validation scans (a train-only run, --val-fraction 0), so nothing shows it is better"
    s = evaluation["cvpr25"]["metrics"][primary]
    if s["n"] < int(opts["min_structures"]):
        return False, (f"only {s['n']} validation structure(s); the rule needs at least {opts['min_structures']} "
                       "for an interval to mean something (accept more scans)")
    lo = s["ci"][0]
    if not lo > 0:
        return False, (f"CVPR25 {primary} {_fmt_ci(s)}: the interval's lower bound is not above 0")
    box = evaluation["box"]["metrics"]["dice"]
    if opts.get("box_guard", True) and box.get("ci") is not None and box["ci"][1] < 0:
        return False, f"box-protocol Dice got worse: {_fmt_ci(box)}"
    return True, f"CVPR25 {primary} {_fmt_ci(s)}: lower bound above 0"


def evaluate(trainer, rows: list[dict], opts: dict, log: Callable[[str], None]) -> dict:
    """Base vs the trainer's selected weights on the validation rows (both protocols)."""
    from ..predictors.embedding_cache import EmbeddingCache
    from .compare import BOX_METRICS, CVPR25_METRICS, box_scores, compare_scores, cvpr25_scores
    from .compare import challenge_cases, cvpr_cases, eval_cases_of, model_view

    cases = eval_cases_of(rows)
    encoder_changed = trainer.cfg["mode"] not in ("decoder", "prompt")  # prompt: encoder frozen too
    new_lm = model_view(trainer.lm, trainer.model, encoder_changed)
    new_cache = trainer.cache if not encoder_changed else EmbeddingCache()
    popt = dict(trainer.cfg["eval"].get("predictor") or {})
    n_boot, seed = int(opts["bootstrap"]), int(trainer.cfg["seed"])
    out: dict[str, Any] = {"n_clicks": int(opts["eval_clicks"]), "cases": [c.case_id for c in cases]}
    sets = [("cvpr25", cvpr_cases(cases))]
    if opts.get("extra_cvpr25"):  # reported, never part of the rule
        sets.append(("extra", challenge_cases(Path(str(opts["extra_cvpr25"])).expanduser(),
                                              str(opts.get("extra_cases") or "*"))))
    for key, cc in sets:
        base_c = cvpr25_scores(cc, trainer.lm, trainer.cache, opts["eval_clicks"], popt, log,
                               label=f"base {trainer.cfg['base_model']}")
        new_c = cvpr25_scores(cc, new_lm, new_cache, opts["eval_clicks"], popt, log, label=f"new {trainer.cfg['name']}")
        out[key] = compare_scores(base_c, new_c, CVPR25_METRICS, n_boot, seed)
        if key == "extra":
            out[key]["data"] = str(opts["extra_cvpr25"])
    base_b = box_scores(cases, trainer.lm, trainer.cache, popt)
    new_b = box_scores(cases, new_lm, new_cache, popt)
    out["box"] = compare_scores(base_b, new_b, BOX_METRICS, n_boot, seed)
    return out


def add_provenance(cfg_path: str | Path, provenance: dict) -> None:
    """Add ``provenance`` to an exported model config (atomically; the header comment kept)."""
    import yaml

    from ..io.atomic import atomic_write_text

    p = Path(cfg_path)
    text = p.read_text()
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    data = yaml.safe_load(text) or {}
    data["provenance"] = json.loads(json.dumps(provenance, default=str))
    atomic_write_text(p, header + yaml.safe_dump(data, sort_keys=False))


def _register(trainer, summary: dict, info: dict, evaluation: dict, opts: dict, log) -> dict:
    from ..models.registry import clear_model_cache, register_model_config
    from ..provenance import versions
    from ..training.export import export_finetuned

    trainer.cfg["export"] = dict(trainer.cfg["export"], enabled=True)
    exp = export_finetuned(trainer, summary)
    prov = {"base_model": {"name": trainer.cfg["base_model"], "sha256": trainer.lm.sha256},
            "data": {"folder": info["folder"], "manifest_hash": info["manifest_hash"],
                     "train": info["train"], "val": info["val"]},
            "versions": versions(), "checkpoint_sha256": exp["sha256"],
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "evaluation": {"primary": opts["primary"], "n_clicks": evaluation["n_clicks"],
                           "summary": summary_line(evaluation, opts["primary"]),
                           "cvpr25": evaluation["cvpr25"]["metrics"], "box": evaluation["box"]["metrics"]},
            "report": str(Path(summary["out_dir"]) / "promotion.json")}
    add_provenance(exp["config"], prov)
    register_model_config(exp["config"], exp["name"])
    clear_model_cache()
    return exp


def write_markdown(report: dict, path: Path) -> None:
    """``promotion.md``: the decision, the per-metric intervals, the per-structure table."""
    from ..io.atomic import atomic_write_text

    ev = report.get("evaluation")
    lines = [f"# Promotion of `{report['name']}` (base `{report['base_model']}`)", "",
             f"**{'promoted' if report['promoted'] else 'not promoted'}**: {report['reason']}", "",
             f"Data: {report['folder']} (manifest sha256 `{report['manifest_hash'][:16]}`), "
             f"{len(report['train'])} train / {len(report['val'])} validation entries "
             f"({report['scans']['train']} / {report['scans']['val']} scans), split by scan.", ""]
    if ev:
        lines += [f"CVPR25 protocol in process, box + {ev['n_clicks']} clicks; box protocol: tight 3D box. "
                  "Mean difference new - base over structures, 95 % paired bootstrap interval.", "",
                  "| protocol | metric | base | new | diff | 95 % CI | n |", "|---|---|---|---|---|---|---|"]
        for proto in ("cvpr25", "box"):
            for m, s in ev[proto]["metrics"].items():
                if s["mean_diff"] is None:
                    continue
                lines.append(f"| {proto} | {m} | {s['base_mean']:.4f} | {s['new_mean']:.4f} | {s['mean_diff']:+.4f} "
                             f"| {s['ci'][0]:+.4f} .. {s['ci'][1]:+.4f} | {s['n']} |")
        lines += ["", "| case | structure | CVPR25 DSC_AUC base | new | DSC_Final base | new | box Dice base | new |",
                  "|---|---|---|---|---|---|---|---|"]
        box = {(r["case"], r["name"]): r for r in ev["box"]["per_structure"]}
        for r in ev["cvpr25"]["per_structure"]:
            b = box.get((r["case"], r["name"]), {})
            lines.append(f"| {r['case']} | {r['name']} | {r['DSC_AUC_base']:.4f} | {r['DSC_AUC_new']:.4f} | "
                         f"{r['DSC_Final_base']:.4f} | {r['DSC_Final_new']:.4f} | "
                         f"{b.get('dice_base', float('nan')):.4f} | {b.get('dice_new', float('nan')):.4f} |")
    if ev and ev.get("extra"):
        x = ev["extra"]
        lines += ["", f"Also compared (not part of the rule): {x['data']}, CVPR25, per structure.", "",
                  "| case | structure | DSC_AUC base | new | DSC_Final base | new |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['case']} | {r['name']} | {r['DSC_AUC_base']:.4f} | {r['DSC_AUC_new']:.4f} | "
                  f"{r['DSC_Final_base']:.4f} | {r['DSC_Final_new']:.4f} |" for r in x["per_structure"]]
        lines += [""] + [f"- {m}: {_fmt_ci(st)}" for m, st in x["metrics"].items() if m in ("DSC_AUC", "DSC_Final")]
    if report.get("registered"):
        lines += ["", f"Registered: `{report['registered']['config']}` (weights sha256 "
                  f"`{report['registered']['sha256']}`)."]
    atomic_write_text(path, "\n".join(lines) + "\n")


def evaluate_and_promote(trainer, summary: dict, info: dict, log: Callable[[str], None] | None = None) -> dict:
    """Evaluate, decide, write ``promotion.json`` + ``promotion.md`` in the trainer's out_dir,
    register on a win. Returns the report (``promoted``, ``reason``, ``evaluation``, ...)."""
    from ..io.atomic import atomic_write_text

    log = log or print
    opts = info["options"]
    if str(opts["primary"]) not in ("DSC_AUC", "DSC_Final"):
        raise SamMedError(f"from.primary must be DSC_AUC or DSC_Final, got {opts['primary']!r}")
    val_rows = [r for r in info["manifest"] if r["split"] == "val"]
    if val_rows and summary.get("best_epoch") == 0:
        evaluation = None
        promoted, reason = False, ("no epoch beat the base model's validation Dice (best epoch 0), so the "
                                   "selected weights are the base's own")
    else:
        evaluation = evaluate(trainer, val_rows, opts, log) if val_rows else None
        promoted, reason = decide(evaluation, opts)
    if promoted and not opts.get("promote", True):
        promoted, reason = False, f"{reason}; but from.promote=false"
    out = Path(summary["out_dir"])
    report = {"format": "sam-med-promotion/1", "name": trainer.cfg["name"], "base_model": trainer.cfg["base_model"],
              "mode": trainer.cfg["mode"], "promoted": promoted, "reason": reason,
              "rule": {k: opts[k] for k in PROMOTION_DEFAULTS}, "folder": info["folder"],
              "manifest_hash": info["manifest_hash"], "train": info["train"], "val": info["val"],
              "scans": info["scans"], "best_epoch": summary.get("best_epoch"),
              "early_stopped_at": summary.get("early_stopped_at"), "weights": str(out / "best.pt"),
              "evaluation": evaluation, "registered": None}
    if promoted:
        report["registered"] = _register(trainer, summary, info, evaluation, opts, log)
    atomic_write_text(out / "promotion.json", json.dumps(report, indent=2, default=str))
    write_markdown(report, out / "promotion.md")
    return report
