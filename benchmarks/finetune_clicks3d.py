"""Train configs/finetune/lite_medsam_clicks3d.yaml, select the epoch on its validation split,
export that epoch, and measure the click decode per split on 2D samples of the model's own 3D
errors (sam_med/training/errors3d.py).

    OMP_NUM_THREADS=1 python benchmarks/finetune_clicks3d.py --config configs/finetune/lite_medsam_clicks3d.yaml \
        --json /tmp/clicks3d/summary.json

Per epoch: the mean 2D Dice, on the validation samples (``data.heldout``), of the slice decoded
from the predictor's box + the slice's clicks. The best epoch (epoch 0 = the base model) is
exported under the config's name. Then, on the validation and test (``data.test``) samples:
Dice of the predictor's mask before the click, after the default disk edit, and of the click
decode with the base model and with the selected weights. The test split chooses nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def _state(model) -> dict:
    from sam_med.training import trainable_parameters

    return {n: p.detach().clone() for n, p in trainable_parameters(model)}


def _load(model, state: dict) -> None:
    from sam_med.training import trainable_parameters

    with torch.no_grad():
        for n, p in trainable_parameters(model):
            p.copy_(state[n])


def _table(name: str, items: list[dict], models: dict, lm, mp: bool = False) -> dict:
    from sam_med.training.errors3d import click_dice, edit_dice, refine_rule_dice

    before, edit = edit_dice(items)
    row = {"n": len(items), "mask_before": float(before.mean()), "disk_edit": float(edit.mean())}
    for tag, model in models.items():
        row[f"decode_{tag}"] = float(click_dice(model, lm, items, mask_prompt=mp).mean())
        d, kept = refine_rule_dice(model, lm, items, mask_prompt=mp)
        row[f"refine_rule_{tag}"], row[f"kept_{tag}"] = float(d.mean()), float(kept.mean())
    by_source: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        by_source.setdefault(f"{it['source']}:{it['name']}", []).append(i)
    row["per_object"] = {}
    for key, idx in sorted(by_source.items()):
        sub = [items[i] for i in idx]
        b, e = edit_dice(sub)
        row["per_object"][key] = {"n": len(sub), "mask_before": float(b.mean()), "disk_edit": float(e.mean()),
                                  **{f"decode_{t}": float(click_dice(m, lm, sub, mask_prompt=mp).mean())
                                     for t, m in models.items()}}
    print(f"[{name}] " + json.dumps({k: v for k, v in row.items() if k != "per_object"}), flush=True)
    return row


def main(argv=None) -> int:
    from sam_med.training import Trainer, load_config
    from sam_med.training.errors3d import click_dice
    from sam_med.training.export import export_finetuned
    from sam_med.training.sources import check_disjoint, extract_source_slices, parse_sources

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--json", required=True)
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args(argv)
    cfg = load_config(a.config, a.overrides)
    dc = cfg["data"]
    train_s, val_s, test_s = (parse_sources(dc.get(k), f"data.{k}") for k in ("sources", "heldout", "test"))
    if not val_s or not test_s:
        print("error: the config needs data.heldout (validation) and data.test", file=sys.stderr)
        return 2
    check_disjoint(train_s, test_s)
    check_disjoint(val_s, test_s)
    mp = bool(cfg["prompts"].get("click_mask_input"))  # the mask as the dense prompt
    t0 = time.perf_counter()
    epochs: list[dict] = []
    best = {"epoch": 0, "dice": None, "state": None}
    holder: dict = {}

    def log(msg: str) -> None:
        print(msg, flush=True)
        tr = holder.get("trainer")
        if tr is None or not msg.startswith("[finetune] epoch "):
            return
        d = float(click_dice(tr.model, tr.lm, holder["val"], mask_prompt=mp).mean())
        e = int(msg.split()[2].split("/")[0])
        epochs.append({"epoch": e, "val_decode_dice": d, "t_s": round(time.perf_counter() - t0, 1)})
        print(f"[select] epoch {e}: validation decode Dice {d:.4f}", flush=True)
        if best["dice"] is None or d > best["dice"]:
            best.update(epoch=e, dice=d, state=_state(tr.model))

    tr = Trainer(cfg, log)
    tr.setup()  # extracts the training samples (encodes through the shared cache)
    holder["val"] = extract_source_slices(val_s, tr.lm, tr.cache, log=print)
    holder["test"] = extract_source_slices(test_s, tr.lm, tr.cache, log=print)
    base_val = float(click_dice(tr.lm.model, tr.lm, holder["val"], mask_prompt=mp).mean())
    epochs.append({"epoch": 0, "val_decode_dice": base_val})
    best.update(epoch=0, dice=base_val, state=_state(tr.model))
    print(f"[select] epoch 0 (base): validation decode Dice {base_val:.4f}; "
          f"{len(tr.items)} train / {len(holder['val'])} val / {len(holder['test'])} test samples", flush=True)
    holder["trainer"] = tr
    tr.setup = lambda: None  # run() would set up again; the data is ready
    summary = tr.run()
    _load(tr.model, best["state"])
    summary.update(best_epoch=best["epoch"], selection={"metric": "validation click-decode 2D Dice",
                                                          "epochs": epochs})
    summary["export"] = export_finetuned(tr, summary)
    models = {"base": tr.lm.model, "new": tr.model}
    out = {"config": str(Path(a.config).resolve()), "train_samples": len(tr.items), "epochs": epochs,
           "best_epoch": best["epoch"], "export": summary["export"],
           "val": _table("val", holder["val"], models, tr.lm, mp), "test": _table("test", holder["test"], models, tr.lm, mp),
           "wall_s": round(time.perf_counter() - t0, 1)}
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=1, default=str))
    print(f"[done] best epoch {best['epoch']}, exported {summary['export']['name']}, {out['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
