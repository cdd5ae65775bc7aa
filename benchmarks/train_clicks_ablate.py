"""Ablations of the interactive click-training recipe (issue #27), one variant per call.

Every variant trains on the same cached whole-slice samples and is validated after each epoch
on the same fixed validation subset (box + 5 clicks, CVPR25 2D click rule; OpenKBP validation +
the last 60 hippocampus ids), so the rows of benchmarks/train_clicks.md compare like with like:

    nice -n 10 .venv/bin/python benchmarks/train_clicks_ablate.py --variant full \
        --config configs/finetune/lite_medsam_clicks_hn_hippo.yaml --cache-dir /work/cache/emb \
        --limit openkbp_organs=60 --limit hippocampus=80 --out /work/cache/train_runs

Appends one JSON line per variant to <out>/ablations.jsonl; the table (the main run's summary
gives the base and the full recipe at the same epoch):

    .venv/bin/python benchmarks/train_clicks_ablate.py --table /work/cache/train_runs \
        /work/cache/train_runs/main/summary.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# the interactive section each variant overrides (the rest is the config's)
VARIANTS = {
    "full": {},                                            # decoder + prompt encoder, mask prompt, 4+1 rounds
    "no_mask_prompt": {"mask_prompt": False},
    "one_click": {"rounds": 1, "extra_rounds": 0},         # box + one click per sample
    "lora": {"train": "lora"},                             # LoRA r8 on the decoder attention + heads + prompt enc.
    "jitter_only": {"neighbour_box": 0.0},                 # no neighbour-mask box starts
}


def table(out: Path, main_summary: Path | None, epoch: int = 1) -> str:
    """Markdown: the base (epoch 0 of the main run), the main run at ``epoch``, each variant."""
    rows = []
    if main_summary is not None and main_summary.is_file():
        m = json.loads(main_summary.read_text())
        for h in m["history"]:
            if h["epoch"] == 0:
                rows.append(("base LiteMedSAM (+ its logits as mask prompt)", h["val"], None))
            if h["epoch"] == epoch:
                rows.append(("full recipe (decoder + prompt encoder, mask prompt, 4 clicks + 1 round)", h["val"],
                             h.get("train_s")))
    for line in (out / "ablations.jsonl").read_text().splitlines() if (out / "ablations.jsonl").is_file() else []:
        r = json.loads(line)
        h = next((h for h in r["history"] if h["epoch"] == epoch and "val" in h), None)
        if h is not None:
            rows.append((f"{r['variant']} {json.dumps(r['overrides'])}", h["val"], h.get("train_s")))
    lines = ["| run | box | click 1 | click 2 | click 3 | click 4 | click 5 | AUC | mean | train s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, v, ts in rows:
        d = v["dice"]
        lines.append(f"| {name} | " + " | ".join(f"{x:.3f}" for x in d) + f" | {v['auc']:.3f} | {v['mean']:.3f} | "
                     + (f"{ts:.0f}" if ts else "") + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--table":
        out = Path(sys.argv[2])
        print(table(out, Path(sys.argv[3]) if len(sys.argv) > 3 else None))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--variant", required=True, choices=sorted(VARIANTS))
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--limit", action="append", default=[], help="SET=N: the first N training cases of a set")
    ap.add_argument("--out", required=True)
    ap.add_argument("overrides", nargs="*", help="interactive.KEY=VALUE for every variant (e.g. interactive.epochs=2)")
    a = ap.parse_args(argv)
    import torch

    from sam_med.models import load_model
    from sam_med.predictors.embedding_cache import EmbeddingCache
    from sam_med.predictors.slicewise import SliceWisePredictor
    from sam_med.training.click_data import load_click_sets, parse_click_sets
    from sam_med.training.config import load_config
    from sam_med.training.interactive_train import train_interactive

    ov = [f"interactive.{k}={json.dumps(v)}" for k, v in VARIANTS[a.variant].items()]
    cfg = load_config(a.config, list(a.overrides) + ov + [f"name=ablate_{a.variant}", "export.enabled=false"])
    torch.set_num_threads(int(cfg.get("num_threads") or 1))
    lm = load_model(cfg["base_model"])
    pred = SliceWisePredictor(loaded=lm, cache=EmbeddingCache(max_bytes=64 << 20, cache_dir=a.cache_dir))
    sets = parse_click_sets(cfg["data"]["click_sets"])
    lim = dict(x.split("=") for x in a.limit)
    tr_sets = [dict(s, limit=int(lim[s["name"]])) if s["name"] in lim else s for s in sets]
    t0 = time.perf_counter()
    train = load_click_sets(tr_sets, "train", pred)
    val = load_click_sets(sets, "val", pred)
    print(f"[ablate] data {time.perf_counter() - t0:.0f}s ({pred.cache.encoded} encoded now)", flush=True)
    out = Path(a.out)
    s = train_interactive(cfg, lambda m: print(m, flush=True), train_cases=train, val_cases=val, loaded=lm,
                          out_dir=out / a.variant)
    row = {"variant": a.variant, "overrides": VARIANTS[a.variant], "best_epoch": s["best_epoch"],
           "train_cases": s["train_cases"], "train_samples": s["train_samples"], "train_objects": s["train_objects"],
           "trainable_params": s["trainable_params"], "wall_s": s["wall_s"],
           "history": [{k: h[k] for k in ("epoch", "val", "loss", "train_s") if k in h} for h in s["history"]]}
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "ablations.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
