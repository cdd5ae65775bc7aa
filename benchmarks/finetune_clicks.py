"""Held-out Dice per corrective click: base LiteMedSAM vs the click-aware fine-tune (issue #7).

    python benchmarks/finetune_clicks.py --config configs/finetune/lite_medsam_clicks.yaml \
        --model lite_medsam_clicks [--clicks 5] [--split heldout|sources] [--json out.json]

Samples: ``data.heldout`` of the config (never trained on), cut exactly as for training
(:func:`sam_med.training.sources.extract_source_slices`: every held-out object's largest
slice on each axis plus evenly spread slices, ``slices_per_object`` per axis; embeddings
of the frozen encoder from the config's on-disk cache). Protocol per slice
(:mod:`sam_med.training.clicks`): tight box -> Dice; then 1..N clicks, each at the deepest
pixel of the largest error component, the prompt encoder getting box + all clicks so far.

Both models decode the same embeddings: the fine-tune is decoder-mode (its image encoder
is the base's; checked below). Tables: mean Dice per click for every held-out source,
for the objects' largest slice on the scan's acquisition axis (the issue's measurement),
and overall; object-level paired bootstrap 95 % intervals of (fine-tuned - base).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")


def _fmt_row(name: str, n: int, vals) -> str:
    return f"| {name} | {n} | " + " | ".join(f"{v:.3f}" for v in vals) + " |"


def _boot(diff_by_obj: np.ndarray, rng: np.random.Generator, n: int = 2000) -> tuple[float, float]:
    if len(diff_by_obj) < 2:
        return float("nan"), float("nan")
    idx = rng.integers(0, len(diff_by_obj), size=(n, len(diff_by_obj)))
    m = diff_by_obj[idx].mean(axis=1)
    return float(np.percentile(m, 2.5)), float(np.percentile(m, 97.5))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs/finetune/lite_medsam_clicks.yaml"))
    ap.add_argument("--model", default=None, help="fine-tuned model name (default: the config's name)")
    ap.add_argument("--base", default=None, help="base model (default: the config's base_model)")
    ap.add_argument("--clicks", type=int, default=5)
    ap.add_argument("--split", default="heldout", choices=["heldout", "sources"],
                    help="heldout (default) or the training sources (fit check)")
    ap.add_argument("--mask-input", action="store_true",
                    help="also pass the previous low-res logits as the dense prompt (both models)")
    ap.add_argument("--copies", action="store_true", help="with --split sources: include augmented copies")
    ap.add_argument("--json", default=None, help="write per-sample results here")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch
    import yaml

    torch.set_num_threads(args.threads)
    from sam_med.models import load_model
    from sam_med.predictors.embedding_cache import EmbeddingCache
    from sam_med.training.clicks import click_curves
    from sam_med.training.sources import extract_source_slices, parse_sources

    t_all = time.perf_counter()
    cfg = yaml.safe_load(Path(args.config).read_text())
    base_name = args.base or cfg.get("base_model", "lite_medsam")
    ft_name = args.model or cfg["name"]
    base = load_model(base_name)
    ft = load_model(ft_name)
    be, fe = base.model.image_encoder.state_dict(), ft.model.image_encoder.state_dict()
    if be.keys() != fe.keys() or any(not torch.equal(be[k], fe[k]) for k in be):
        print(f"{ft_name}'s image encoder differs from {base_name}'s: this benchmark needs a decoder-mode fine-tune")
        return 2
    n_ft = sum(p.numel() for n, p in ft.model.named_parameters()
               if n.startswith(("mask_decoder.", "prompt_encoder.")))
    print(f"base {base_name} ({base.sha256[:12]}), fine-tuned {ft_name} ({ft.sha256[:12]}): "
          f"prompt encoder + mask decoder {n_ft:,} parameters")

    cdir = (cfg.get("data") or {}).get("embedding_cache_dir")
    cache = EmbeddingCache(max_bytes=1 << 30, cache_dir=Path(cdir).expanduser() if cdir else None)
    specs = parse_sources(cfg["data"][args.split if args.split == "heldout" else "sources"])
    t0 = time.perf_counter()
    items = extract_source_slices(specs, base, cache, log=print)
    if args.split == "sources" and not args.copies:
        items = [it for it in items if not it["copy"]]
    t_extract = time.perf_counter() - t0
    print(f"{len(items)} slices ({cache.encoded} encoded now, {cache.disk_hits} from the disk cache) "
          f"in {t_extract:.0f}s")

    t0 = time.perf_counter()
    d_base = click_curves(items, base, base.model, args.clicks, args.mask_input)
    t_base = time.perf_counter() - t0
    t0 = time.perf_counter()
    d_ft = click_curves(items, base, ft.model, args.clicks, args.mask_input)
    t_ft = time.perf_counter() - t0
    print(f"decoding: base {t_base:.0f}s, fine-tuned {t_ft:.0f}s")

    groups: dict[str, np.ndarray] = {}
    srcs = sorted({it["source"] for it in items}, key=[s.name for s in specs].index)
    for s in srcs:
        groups[f"{s}: all slices"] = np.array([it["source"] == s for it in items])
    for s in srcs:
        groups[f"{s}: largest slice"] = np.array([it["source"] == s and it["largest_acq"] for it in items])
    for a in (0, 1, 2):
        groups[f"all: axis {a}"] = np.array([it["axis"] == a for it in items])
    groups["all: largest slice"] = np.array([bool(it["largest_acq"]) for it in items])
    groups["all slices"] = np.ones(len(items), bool)

    head = "| samples | n | box | " + " | ".join(f"+{i} click{'s' if i > 1 else ''}" for i in range(1, args.clicks + 1)) + " |"
    sep = "|---|---|" + "---|" * (args.clicks + 1)
    lines = []
    for title, arr in ((f"base {base_name}", d_base), (f"fine-tuned {ft_name}", d_ft),
                       ("difference (fine-tuned - base)", d_ft - d_base)):
        lines += ["", f"**{title}**{' (mask_input on)' if args.mask_input else ''}", "", head, sep]
        for g, m in groups.items():
            if m.any():
                lines.append(_fmt_row(g, int(m.sum()), arr[m].mean(axis=0)))
    # object-level paired bootstrap (slices of one object are not independent)
    objs = sorted({(it["source"], it["case_id"], it["object"]) for it in items})
    oi = np.array([objs.index((it["source"], it["case_id"], it["object"])) for it in items])
    per_obj_b = np.stack([d_base[oi == j].mean(axis=0) for j in range(len(objs))])
    per_obj_f = np.stack([d_ft[oi == j].mean(axis=0) for j in range(len(objs))])
    rng = np.random.default_rng(0)
    lines += ["", f"Object-level paired bootstrap ({len(objs)} objects, mean over each object's slices), "
              "95 % interval of mean(fine-tuned - base):", ""]
    for c in range(args.clicks + 1):
        lo, hi = _boot(per_obj_f[:, c] - per_obj_b[:, c], rng)
        better = int(np.sum(per_obj_f[:, c] > per_obj_b[:, c] + 1e-9))
        worse = int(np.sum(per_obj_f[:, c] < per_obj_b[:, c] - 1e-9))
        lines.append(f"- {'box' if c == 0 else f'+{c} clicks'}: {float(np.mean(per_obj_f[:, c] - per_obj_b[:, c])):+.3f} "
                     f"[{lo:+.3f}, {hi:+.3f}]; objects better/worse: {better}/{worse}")
    # per object, box and last click
    lines += ["", f"Per object (mean over its slices): box and +{args.clicks} clicks, base -> fine-tuned", "",
              "| source | case | object | slices | box base | box ft | last base | last ft |", "|---|---|---|---|---|---|---|---|"]
    for j, (s, c, o) in enumerate(objs):
        name = next(it["name"] for it in items if (it["source"], it["case_id"], it["object"]) == (s, c, o))
        lines.append(f"| {s} | {c} | {o} {name} | {int(np.sum(oi == j))} | {per_obj_b[j, 0]:.3f} | "
                     f"{per_obj_f[j, 0]:.3f} | {per_obj_b[j, -1]:.3f} | {per_obj_f[j, -1]:.3f} |")
    wall = time.perf_counter() - t_all
    lines += ["", f"wall time {wall:.0f}s (slices + embeddings {t_extract:.0f}s, decoding base {t_base:.0f}s, "
              f"fine-tuned {t_ft:.0f}s), {torch.get_num_threads()} thread(s)"]
    print("\n".join(lines))
    if args.json:
        out = {"config": str(args.config), "base": base_name, "model": ft_name, "split": args.split,
               "clicks": args.clicks, "mask_input": args.mask_input, "wall_s": wall,
               "samples": [{k: it[k] for k in ("source", "case_id", "object", "name", "axis", "slice", "copy",
                                                "largest", "largest_acq")}
                           | {"dice_base": d_base[i].tolist(), "dice_ft": d_ft[i].tolist()}
                           for i, it in enumerate(items)],
               "mean_base": d_base.mean(axis=0).tolist(), "mean_ft": d_ft.mean(axis=0).tolist()}
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
