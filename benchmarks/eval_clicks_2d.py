"""Base vs click-trained decoder on held-out 2D interactions (issue #27), per structure.

Every validation sample of a click-training config (OpenKBP validation scans, the last 60
hippocampus ids; whole-slice views from the shared embedding cache) is decoded from its box
(CVPR25 jitter rule, or ``--start neighbour``: a neighbouring slice's mask box + 3 px, as
propagation prompts), then 5 corrective clicks (CVPR25 rule in 2D: the centre of the largest
error component), the decoder seeing box + all clicks (+ its previous low-res logits with
``--mask-prompt``). Dice per step and the CVPR25 DSC_AUC (clicks 1..5), per structure:

    nice -n 10 .venv/bin/python benchmarks/eval_clicks_2d.py --model lite_medsam \
        --config configs/finetune/lite_medsam_clicks_hn_hippo.yaml --cache-dir /work/cache/emb \
        --out /work/cache/eval2d/base.json
    ... --model lite_medsam_clicks_hn_hippo --mask-prompt --out .../new.json
    .venv/bin/python benchmarks/eval_clicks_2d.py --table base.json new.json   # markdown table

``--view zoom`` scores the config's zoom-view validation samples instead (each object in the
crop the slice-wise engine would use: ``view: zoom`` click sets, :mod:`sam_med.training.click_views`);
``--base-start`` decodes the box step with the base model and only the clicks with ``--model``
(what the engine does: its box step is the base's, the click model gets the base's box logits).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def table(paths: list[str]) -> str:
    from sam_med.training.interactive_train import summarise_scores

    runs = []
    for p in paths:  # "a.json+b.json": parts of one run (e.g. split by --sets) joined
        parts = [json.loads(Path(q).read_text()) for q in p.split("+")]
        r = dict(parts[0])
        r["per_sample"] = {k: [x for q in parts for x in q["per_sample"][k]] for k in parts[0]["per_sample"]}
        runs.append(r)
    lines = ["| structure | n | " + " | ".join(f"{r['label']} box | {r['label']} c1 | {r['label']} c5 | "
                                            f"{r['label']} AUC" for r in runs) + " |",
             "|---|---:|" + "---:|" * (4 * len(runs))]
    groups = sorted({g for r in runs for g in r["per_sample"]["group"]}, key=lambda g: (g.split("/")[0], g))
    for g in groups + ["all"]:
        cells, n = [], 0
        for r in runs:
            ps = r["per_sample"]
            d = np.array([x for x, gg in zip(ps["dice"], ps["group"]) if g == "all" or gg == g])
            if len(d) == 0:  # a run that did not score this structure
                cells += ["-"] * 4
                continue
            n = len(d)
            s = summarise_scores(d)
            cells += [f"{s['dice'][0]:.3f}", f"{s['dice'][1]:.3f}", f"{s['dice'][-1]:.3f}", f"{s['auc']:.3f}"]
        lines.append(f"| {g} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def load_pair(config: str, model: str, cache_dir: str, cache_mb: int, tool: str):
    """``(cfg, base, lm, pred)`` for a click evaluation: the training config, its base model,
    the model under test and a slice-wise predictor of the base (its embeddings shared through
    ``cache_dir``); None (with one line on stderr) when ``model`` does not share the base's encoder."""
    import torch

    torch.set_num_threads(1)
    from sam_med.models import load_model
    from sam_med.predictors.embedding_cache import EmbeddingCache
    from sam_med.predictors.slicewise import SliceWisePredictor
    from sam_med.training.config import load_config

    cfg = load_config(config)
    base = load_model(cfg["base_model"])
    lm = load_model(model)
    if lm.encoder_signature() != base.encoder_signature():
        print(f"{tool}: {model} does not share {cfg['base_model']}'s encoder", file=sys.stderr)
        return None
    pred = SliceWisePredictor(loaded=base, cache=EmbeddingCache(max_bytes=cache_mb << 20, cache_dir=cache_dir))
    return cfg, base, lm, pred


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", nargs="+", help="print the markdown table of these result files and exit")
    ap.add_argument("--model", default="lite_medsam")
    ap.add_argument("--config")
    ap.add_argument("--cache-dir")
    ap.add_argument("--mask-prompt", action="store_true")
    ap.add_argument("--start", choices=("jitter", "neighbour"), default="jitter")
    ap.add_argument("--clicks", type=int, default=5)
    ap.add_argument("--label", default=None)
    ap.add_argument("--view", choices=("whole", "zoom"), default="whole",
                    help="score the whole-slice or the zoom-view validation samples of the config")
    ap.add_argument("--val-slices", type=int, default=None,
                    help="validation slices per scan of the scored sets (default: the config's)")
    ap.add_argument("--base-start", action="store_true", help="box step by the base model (as in the engine)")
    ap.add_argument("--sets", default=None, help="comma-separated click sets (default: all; a shared set follows its host)")
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    if a.table:
        print(table(a.table))
        return 0
    if not (a.config and a.cache_dir and a.out):
        print("eval_clicks_2d: --config, --cache-dir and --out are needed", file=sys.stderr)
        return 2
    from sam_med.training.click_data import load_click_sets, parse_click_sets
    from sam_med.training.interactive_train import score_clicks, summarise_scores, val_subset

    pair = load_pair(a.config, a.model, a.cache_dir, 64, "eval_clicks_2d")
    if pair is None:
        return 2
    cfg, base, lm, pred = pair
    sets = parse_click_sets(cfg["data"]["click_sets"])
    if a.sets:
        keep = a.sets.split(",")
        sets = [s for s in sets if s["name"] in keep or s.get("share_slices_with") in keep]
    sets = [s for s in sets if (s.get("view", "whole") == "zoom") == (a.view == "zoom")]
    if a.val_slices:
        sets = [dict(s, val_slices_per_case=a.val_slices) for s in sets]
    val = [c for c in load_click_sets(sets, "val", pred) if c.view == a.view]
    items = val_subset(val, 0)
    t0 = time.perf_counter()
    d = score_clicks(lm.model, base, items, a.clicks, a.mask_prompt, start=a.start,
                     base=base.model if a.base_start else None)
    groups = [f"{c.source}/{c.names.get(v, v)}" for c, _k, v in items]
    label = a.label or f"{a.model}{'+mask' if a.mask_prompt else ''}"
    res = {"label": label, "model": a.model, "mask_prompt": a.mask_prompt, "start": a.start, "n": len(items),
           "view": a.view, "base_start": a.base_start, "val_slices": a.val_slices,
           "seconds": round(time.perf_counter() - t0, 1), "summary": summarise_scores(d),
           "per_sample": {"dice": d.round(5).tolist(), "group": groups,
                          "id": [f"{c.case_id}:{k}:{v}" for c, k, v in items]}}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res))
    print(json.dumps({k: res[k] for k in ("label", "n", "seconds", "summary")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
