"""``sam-med finetune``: fine-tune a 2D model from a YAML config (see :mod:`sam_med.training`)."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "finetune", help="fine-tune a model (decoder-only, LoRA, full) and export named weights",
        description="Fine-tune a model on a labelled dataset and register the result by name. "
                    "Runs under torchrun too: torchrun --nproc-per-node 2 -m sam_med finetune --config ...",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  sam-med finetune --config configs/finetune/lite_medsam_ct_lesion_decoder.yaml\n"
               "  sam-med finetune --config configs/finetune/lite_medsam_ct_lesion_lora.yaml "
               "optim.epochs=1 lora.rank=8\n"
               "then: sam-med segment --model lite_medsam_ct_lesion_decoder ...")
    p.add_argument("--config", required=True, help="fine-tune YAML (configs/finetune/*.yaml)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="override config entries, dotted keys, YAML values (optim.lr=1e-5 data.val_cases=[x])")
    p.add_argument("--print-config", action="store_true", help="print the merged config and exit")
    p.set_defaults(func=run)


def check_exports(cfg: dict, config_path) -> None:
    """The exported weights / config must not overwrite the fine-tune config, the dataset's
    files or the base checkpoint, nor each other."""
    from pathlib import Path

    from ..io.outputs import check_outputs, input_files

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
    check_outputs({"exported weights": out / f"{cfg['name']}.pt", "exported config": out / f"{cfg['name']}.yaml"},
                  input_files(None, [p for p in extra if Path(p).exists()]))


def run(args) -> int:
    from ..training import load_config, train

    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(json.dumps(cfg, indent=2, default=str))
        return 0
    check_exports(cfg, args.config)  # before any training starts
    summary = train(cfg)
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
