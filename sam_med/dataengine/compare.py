"""Base vs fine-tuned weights on the same structures: CVPR25 and box protocol, per structure,
with a paired bootstrap interval of the mean difference.

A *structure* is one object of one validation case (an accepted entry's object). Both
models see exactly the same prompts: the CVPR25 protocol's official key-slice box and its
clicks placed on each model's own errors (:mod:`sam_med.evaluation.cvpr25`, in process,
``n_clicks`` of the challenge's 5 when a quicker comparison is asked for; ``DSC_AUC`` is
the challenge's area over the last 5 steps, so with fewer clicks it includes the box step),
and the box protocol's tight 3D box (:mod:`sam_med.evaluation.protocols`). Scores are per
class of the CVPR25 case (classes renumbered 1..N from the label values in increasing order;
the name identifies it) and per label of the box protocol.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import numpy as np

from ..errors import SamMedError

__all__ = ["paired_bootstrap", "eval_cases_of", "cvpr_cases", "challenge_cases", "cvpr25_scores", "box_scores",
           "compare_scores", "model_view"]

CVPR25_METRICS = ("DSC_AUC", "DSC_Final", "NSD_AUC", "NSD_Final")
BOX_METRICS = ("dice", "nsd")


def paired_bootstrap(base: Sequence[float], new: Sequence[float], n: int = 2000, seed: int = 0,
                     level: float = 0.95) -> dict:
    """Mean of ``new - base`` over paired values and its percentile bootstrap interval
    (``n`` resamples of the pairs, ``numpy.random.default_rng(seed)``). One pair gives a
    zero-width interval, which is why the promotion rule also asks for a minimum count."""
    a, b = np.asarray(base, dtype=float), np.asarray(new, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise SamMedError(f"paired bootstrap needs two equal-length lists, got {a.shape} and {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    out = {"n": int(a.size), "base_mean": None, "new_mean": None, "mean_diff": None, "ci": None,
           "level": level, "resamples": int(n), "seed": int(seed)}
    if a.size == 0:
        return out
    d = b - a
    rng = np.random.default_rng(int(seed))
    means = d[rng.integers(0, d.size, size=(int(n), d.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    out.update(base_mean=float(a.mean()), new_mean=float(b.mean()), mean_diff=float(d.mean()),
               ci=[float(lo), float(hi)])
    return out


def eval_cases_of(rows: Sequence[dict]) -> list:
    """:class:`~sam_med.evaluation.EvalCase` per manifest row (scan + accepted mask + objects)."""
    from ..evaluation import EvalCase

    return [EvalCase(case_id=r["id"], image=r["scan"], label=r["mask"],
                     labels=tuple(int(o["label"]) for o in r["objects"]),
                     label_names={int(o["label"]): str(o["name"]) for o in r["objects"]}) for r in rows]


def model_view(base_lm, model, encoder_changed: bool, tag: str = "finetuned"):
    """``base_lm`` (a LoadedModel) with ``model``'s weights. With the encoder unchanged
    (decoder mode) the embedding-cache namespace stays the base's, so the base's encodes are
    reused; otherwise the checksum gets ``:tag`` and nothing is shared."""
    sha = base_lm.sha256 if not encoder_changed else f"{base_lm.sha256}:{tag}"
    return dataclasses.replace(base_lm, model=model.eval(), sha256=sha)


def _predictor(lm, cache, options: dict | None):
    from ..predictors.slicewise import SliceWisePredictor

    return SliceWisePredictor(loaded=lm, cache=cache, **dict(options or {}))


def cvpr_cases(cases: Sequence) -> list:
    """EvalCases as CVPR25 cases (converted: classes 1..N, the official boxes)."""
    from ..evaluation.cvpr25.cases import CvprCase

    return [CvprCase(c.case_id, c.image, None, c, "converted") for c in cases]


def challenge_cases(path, pattern: str = "*") -> list:
    """The CVPR25 cases of ``path`` (a folder ``sam-med evaluate --protocol cvpr25`` reads)
    whose id matches ``pattern`` (fnmatch)."""
    import fnmatch

    from ..evaluation.cvpr25.cases import open_cases

    cases = [c for c in open_cases(path)[1] if fnmatch.fnmatch(c.case_id, pattern)]
    if not cases:
        raise SamMedError(f"{path}: no CVPR25 case matches {pattern!r}")
    return cases


def cvpr25_scores(cases: Sequence, lm, cache, n_clicks: int = 5, options: dict | None = None,
                  log: Callable[[str], None] | None = None, label: str | None = None) -> list[dict]:
    """Per structure of the CVPR25 ``cases`` (:func:`cvpr_cases`, :func:`challenge_cases`):
    ``case``, ``name``, ``class``, ``DSC_AUC``, ``DSC_Final``, ``NSD_AUC``, ``NSD_Final`` and
    ``DSC_steps`` (box step, then each click) under the CVPR25 protocol."""
    from ..evaluation.cvpr25.metrics import auc
    from ..evaluation.cvpr25.protocol import InProcessStepper, run_case

    out = []
    for c in cases:
        loaded = c.load()
        stepper = InProcessStepper(loaded, _predictor(lm, cache, options))
        try:
            res = run_case(loaded, stepper, n_clicks=int(n_clicks))
        finally:
            stepper.close()
        k = int(n_clicks) + 1
        for pc in res.per_class:
            dsc = [float(pc[f"DSC_{i}"]) for i in range(1, k + 1)]
            # NSD is not computed (None) on a step whose case DSC is below the challenge's floor: 0
            nsd = [float(pc[f"NSD_{i}"] or 0.0) for i in range(1, k + 1)]
            out.append({"case": c.case_id, "name": pc["name"], "class": int(pc["class"]), "DSC_steps": dsc,
                        "DSC_AUC": float(auc(dsc)), "DSC_Final": dsc[-1], "NSD_AUC": float(auc(nsd)),
                        "NSD_Final": nsd[-1]})
        if log:
            log(f"[promotion] cvpr25 {label or lm.name}: {c.case_id} DSC_Final {res.row.get(f'DSC_{k}', float('nan')):.4f}")
    return out


def box_scores(cases: Sequence, lm, cache, options: dict | None = None) -> list[dict]:
    """Per structure: ``case``, ``name``, ``label``, ``dice``, ``nsd`` under the box protocol."""
    from ..evaluation import EvalConfig, evaluate_case

    out = []
    for c in cases:
        recs = evaluate_case(c, _predictor(lm, cache, options), EvalConfig(protocol="box", model=lm.name))
        bad = [r for r in recs if r.get("status") != "ok"]
        if bad:
            raise SamMedError(f"box protocol on {c.case_id} failed: {bad[0].get('error')}")
        last = {int(r["label"]): r for r in recs}  # the last step per object
        for v, r in last.items():
            out.append({"case": c.case_id, "name": r["name"], "label": v, "dice": float(r["dice"]),
                        "nsd": float(r["nsd"])})
    return out


def compare_scores(base: list[dict], new: list[dict], metrics: Sequence[str], n_boot: int = 2000,
                   seed: int = 0) -> dict:
    """``{"per_structure": [{case, name, <metric>_base, <metric>_new, <metric>_diff}],
    "metrics": {metric: paired_bootstrap(...)}}``; structures paired by (case, name)."""
    key = (lambda r: (r["case"], r["name"]))
    nb = {key(r): r for r in new}
    if set(nb) != {key(r) for r in base}:
        raise SamMedError("base and fine-tuned evaluations cover different structures")
    rows = []
    for r in base:
        m = nb[key(r)]
        row = {"case": r["case"], "name": r["name"]}
        for k in metrics:
            row[f"{k}_base"], row[f"{k}_new"] = r[k], m[k]
            row[f"{k}_diff"] = m[k] - r[k] if math.isfinite(m[k]) and math.isfinite(r[k]) else None
        rows.append(row)
    stats = {k: paired_bootstrap([r[f"{k}_base"] for r in rows], [r[f"{k}_new"] for r in rows], n_boot, seed)
             for k in metrics}
    return {"per_structure": rows, "metrics": stats}
