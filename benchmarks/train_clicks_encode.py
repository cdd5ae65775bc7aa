"""Encode the click-training slices once (issue #27): the whole-slice views of a click-training
config's sets, through the slice-wise engine's own cache, validation first.

    nice -n 10 .venv/bin/python benchmarks/train_clicks_encode.py \
        --config configs/finetune/lite_medsam_clicks_hn_hippo.yaml --cache-dir /work/cache/emb

Prints cases, samples and slices encoded per split; a rerun finds every entry on disk.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--cache-dir", default=None, help="on-disk embedding cache (default: the config's)")
    ap.add_argument("--splits", default="val,train")
    ap.add_argument("--sets", default=None, help="comma-separated set names (default: all)")
    a = ap.parse_args(argv)
    from sam_med.predictors.factory import build_predictor
    from sam_med.training.click_data import load_click_sets, parse_click_sets
    from sam_med.training.config import load_config

    cfg = load_config(a.config)
    sets = parse_click_sets(cfg["data"]["click_sets"])
    if a.sets:
        sets = [s for s in sets if s["name"] in a.sets.split(",")]
    cache_dir = a.cache_dir or str(Path(cfg["data"]["embedding_cache_dir"]).expanduser())
    pred = build_predictor(cfg["base_model"], "cpu", cache_dir=cache_dir)
    for split in a.splits.split(","):
        t0 = time.perf_counter()
        enc0 = pred.cache.encoded
        cases = load_click_sets(sets, split, pred, log=lambda m: print(m, flush=True))
        n_sl = sum(len(c.slices) for c in cases)
        n_s = sum(len(c.labels) for c in cases)
        n_obj = len({(c.case_id, v) for c in cases for (_k, v) in c.labels})
        print(f"[encode] {split}: {len(cases)} cases, {n_obj} objects, {n_s} samples on {n_sl} slices, "
              f"{pred.cache.encoded - enc0} encoded now, {time.perf_counter() - t0:.0f}s", flush=True)
        del cases
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
