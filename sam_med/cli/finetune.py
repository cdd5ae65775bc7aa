"""``sam-med finetune``: fine-tune a 2D model from a YAML config (see :mod:`sam_med.training`)."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "finetune", help="fine-tune a model (decoder-only, LoRA, full, prompt tokens) and export named weights",
        description="Fine-tune a model on a labelled dataset and register the result by name. "
                    "Runs under torchrun too: torchrun --nproc-per-node 2 -m sam_med finetune --config ...",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  sam-med finetune --config configs/finetune/lite_medsam_ct_lesion_decoder.yaml\n"
               "  sam-med finetune --config configs/finetune/lite_medsam_ct_lesion_lora.yaml "
               "optim.epochs=1 lora.rank=8\n"
               "  sam-med finetune --from accepted/ --name site_v1 --epochs 3\n"
               "then: sam-med segment --model lite_medsam_ct_lesion_decoder ...")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="fine-tune YAML (configs/finetune/*.yaml)")
    src.add_argument("--from", dest="from_dir", metavar="DIR",
                     help="an accepted-results folder (Accept in napari, Session.accept, segment --accept-to): "
                          "split by scan, train, compare with the base on the validation scans (CVPR25 + box "
                          "protocol) and register the weights only if they win")
    p.add_argument("--name", help="--from: the model's name (default <base>_<folder name>)")
    p.add_argument("--base", default="lite_medsam", help="--from: the base model (default lite_medsam)")
    p.add_argument("--mode", choices=("decoder", "lora", "full", "prompt"), default="decoder",
                   help="--from: what trains (default decoder: mask decoder + prompt encoder; prompt: "
                        "learnable prompt tokens only, prompt_tuning.tokens=8)")
    p.add_argument("--val-fraction", type=float, default=0.3,
                   help="--from: share of the scans kept for validation (default 0.3; 0 = train only, never promoted)")
    p.add_argument("--epochs", type=int, help="--from: epochs (default 3; early stop after 2 without a better "
                                               "validation Dice)")
    p.add_argument("--seed", type=int, default=0, help="--from: split / training seed (default 0)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="override config entries, dotted keys, YAML values (optim.lr=1e-5 data.val_cases=[x]); "
                        "with --from also from.axes=[2] from.slices_per_object=3 from.eval_clicks=5 "
                        "from.primary=DSC_AUC|DSC_Final from.min_structures=3 from.clicks=slice "
                        "from.val_scans=[SCAN] from.extra_cvpr25=DIR from.extra_cases='CT_Lesion_*'")
    p.add_argument("--print-config", action="store_true", help="print the merged config and exit")
    p.set_defaults(func=run)


def check_exports(cfg: dict, config_path) -> None:
    """The exported weights / config must not overwrite the fine-tune config, the dataset's
    files or the base checkpoint, nor each other."""
    from pathlib import Path

    from .common import guard_outputs

    exp = cfg.get("export") or {}
    if not isinstance(exp, dict) or not cfg.get("name"):
        return
    from ..training.export import user_models_dir

    out = user_models_dir(exp.get("models_dir"))
    data = cfg.get("data") or {}
    extra = [config_path, data.get("dataset") if isinstance(data, dict) else None]
    if isinstance(data, dict):
        extra += [s.get("path") for s in data.get("sources") or [] if isinstance(s, dict)]
    extra = [str(Path(str(p)).expanduser()) for p in extra if p]
    base = cfg.get("base_model") if isinstance(cfg.get("base_model"), str) else None
    guard_outputs({"exported weights": out / f"{cfg['name']}.pt", "exported config": out / f"{cfg['name']}.yaml"},
                  extra=[p for p in extra if Path(p).exists()], model=base)  # the base config/checkpoint too


def run(args) -> int:
    from ..training import load_config, train

    if args.from_dir is not None:
        return run_from_dir(args)
    given = [f for f, v in (("--name", args.name), ("--epochs", args.epochs)) if v is not None]
    if given:
        from ..errors import SamMedError
        raise SamMedError(f"{', '.join(given)} go with --from; with --config use name=... optim.epochs=...")
    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(json.dumps(cfg, indent=2, default=str))
        return 0
    check_exports(cfg, args.config)  # before any training starts
    summary = train(cfg)
    if summary.get("recipe") == "interactive":
        return _report_interactive(summary)
    if summary.get("stopped_early"):
        print(f"stopped after step {summary['steps']} (stop_after_steps); rerun to resume from "
              f"{summary['out_dir']}/last.pt")
        return 0
    if "export" in summary:
        e = summary["export"]
        print(f"model {e['name']!r}: {e['weights']} + {e['config']} (use --model {e['name']})")
    for split in ("train", "val"):
        b = (summary.get("dice_before") or {}).get(split) or {}
        a = (summary.get("dice_after") or {}).get(split) or {}
        for cid in a:
            print(f"  {split:5s} {cid}: Dice {b.get(cid, float('nan')):.4f} -> {a[cid]:.4f}")
    print(f"trainable parameters: {summary['trainable_params']:,} of {summary['total_params']:,}; "
          f"wall time {summary.get('wall_s', 0):.0f}s")
    return 0


def _report_interactive(summary: dict) -> int:
    """The interactive recipe's summary: validation Dice per step and AUC per epoch, the export."""
    if "export" in summary:
        e = summary["export"]
        print(f"model {e['name']!r}: {e['weights']} + {e['config']} (use --model {e['name']})")
    for h in summary.get("history", []):
        if "val" in h:
            print(f"  epoch {h['epoch']}: validation Dice box..click{len(h['val']['dice']) - 1} "
                  f"{' '.join(f'{v:.3f}' for v in h['val']['dice'])}  AUC {h['val']['auc']:.3f}")
    print(f"best epoch {summary['best_epoch']}; {summary['train_samples']} samples of {summary['train_objects']} "
          f"objects on {summary['train_slices']} slices; trainable parameters {summary['trainable_params']:,}; "
          f"wall time {summary.get('wall_s', 0):.0f}s")
    return 0


def run_from_dir(args) -> int:
    """``--from DIR``: build the config (checked, nothing written on a bad folder), train, promote."""
    from ..dataengine.finetune_from import build_config, run_from

    cfg, info = build_config(args.from_dir, name=args.name, base=args.base, mode=args.mode,
                             val_fraction=args.val_fraction, epochs=args.epochs, seed=args.seed,
                             overrides=args.overrides)
    if args.print_config:
        print(json.dumps({"config": cfg, "split": {k: info[k] for k in ("train", "val", "scans")}},
                         indent=2, default=str))
        return 0
    check_exports(cfg, None)
    print(f"{len(info['train'])} train / {len(info['val'])} validation entries "
          f"({info['scans']['train']} / {info['scans']['val']} scans, split by scan); out_dir {info['out_dir']}")
    res = run_from(cfg, info)
    s, rep = res["summary"], res["promotion"]
    if s.get("stopped_early"):
        print(f"stopped after step {s['steps']} (stop_after_steps); rerun to resume from {s['out_dir']}/last.pt")
        return 0
    if rep is None:
        return 0
    from ..dataengine.promotion import summary_line

    if rep["evaluation"]:
        print(summary_line(rep["evaluation"], rep["rule"]["primary"]))
    if rep["promoted"]:
        e = rep["registered"]
        print(f"promoted: {rep['reason']}")
        print(f"model {e['name']!r}: {e['weights']} + {e['config']} (use --model {e['name']})")
    else:
        print(f"not promoted: {rep['reason']}; weights kept in {s['out_dir']} (best.pt), base stays the default")
    print(f"report: {s['out_dir']}/promotion.md, promotion.json")
    return 0
