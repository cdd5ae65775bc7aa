"""`sam-med evaluate`: run a predictor over a labelled dataset under a prompt protocol.

    sam-med evaluate DATASET --protocol box|point|box+clicks|points [--clicks N] --out DIR
                     [--model NAME] [--device cpu|cuda|auto] [--labels 1,2,5] [--resume]
                     [--jitter-mm X] [--seed S] [--limit N] [--nsd-tolerance MM]
                     [--option KEY=VALUE ...] [--prepare] [--no-progress]

DATASET: an MSD/nnU-Net folder (dataset.json), a folder of research npz files,
or a CSV (image,label[,labels_of_interest]; relative paths are relative to the
CSV's folder). ``--model threshold`` is the model-free baseline;
``--model pkg.module:factory`` calls ``factory(device=..., **options)``.
Under ``torchrun --nproc-per-node N -m sam_med evaluate ...`` cases are
sharded across ranks and rank 0 writes the reports.

Exit status: 0 when at least one case was evaluated, 1 when every case failed,
2 for bad arguments.
"""

from __future__ import annotations

import os
import shutil

import argparse
import sys

from .common import guard_outputs, make_factory, parse_options


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate a predictor on a labelled dataset (Dice, NSD, HD95, timing)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dataset", help="MSD/nnU-Net folder, accepted-results folder, folder of .npz cases, or a .csv file")
    p.add_argument("--protocol", default="box", choices=["box", "point", "box+clicks", "points", "cvpr25"],
                   help="cvpr25: the CVPR 2025 interactive challenge (box + 5 clicks, official metrics)")
    p.add_argument("--clicks", type=int, default=None,
                   help="corrective clicks (box+clicks: default 5; points: total clicks, default 5)")
    p.add_argument("--out", required=True, help="output folder (records.csv, summary.json, plots)")
    p.add_argument("--model", default="lite_medsam",
                   help="predictor registry name, 'threshold' (baseline) or 'module:factory'")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument("--labels", default=None, help="label values to evaluate, e.g. 1,2,5 (default: all)")
    p.add_argument("--resume", action="store_true", help="skip cases already finished in --out")
    p.add_argument("--jitter-mm", type=float, default=0.0, help="box face jitter, uniform ±X mm")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N cases")
    p.add_argument("--nsd-tolerance", type=float, default=2.0, help="NSD tolerance in mm (default 2)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="predictor option, YAML-typed (mask_prompt=false, context=5, window=[40,400]); "
                        "repeatable; an option the predictor does not take is an error")
    p.add_argument("--prepare", action="store_true",
                   help="call the predictor's prepare() first (e.g. encode every slice up front); "
                        "off by default: predictors encode what each prompt needs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--gts", default=None, help="cvpr25: folder of label npz ('gts') beside the challenge images")
    p.add_argument("--fresh-process-per-step", action="store_true",
                   help="cvpr25: run each step as its own `sam-med segment` process (the official loop)")
    p.add_argument("--spacing-order", choices=("zyx", "xyz"), default="zyx",
                   help="cvpr25: order of a challenge file's 'spacing' (default zyx, the challenge's)")
    p.set_defaults(func=run)


def check_report_folder(out, dataset_path, dataset, model=None) -> None:
    """``--out`` must not be (or hold) the dataset's index file, images or labels, the model
    config or checkpoint, nor lie inside a DICOM case folder (the one output guard)."""
    from pathlib import Path

    root = Path(dataset_path)
    index = [root] if root.is_file() else [p for p in (root / "dataset.json",) if p.is_file()]
    extra = index + [p for c in dataset.cases for p in (c.image, c.label) if p]
    # a results folder inside the dataset stays allowed
    guard_outputs({}, {"--out": out}, extra=extra, model=model)


def run(args) -> int:
    from .. import dataengine  # noqa: F401  (registers the accepted-results folder as a dataset layout)
    from ..errors import SamMedError
    from ..evaluation.datasets import open_dataset, parse_labels
    from ..evaluation.distributed import init_distributed, rank_device
    from ..evaluation.runner import EvalConfig, run_evaluation

    if args.protocol == "cvpr25":
        from .evaluate_cvpr25 import run_cvpr25_cli

        return run_cvpr25_cli(args)
    clicks = args.clicks
    if clicks is None:
        clicks = 5 if args.protocol in ("box+clicks", "points") else 0
    elif args.protocol in ("box", "point") and clicks:
        raise SamMedError(f"--clicks applies to the box+clicks and points protocols, not {args.protocol!r}")
    if args.limit is not None and args.limit < 1:
        raise SamMedError(f"--limit must be >= 1, got {args.limit}")
    options = parse_options(args.option)
    config = EvalConfig(protocol=args.protocol, clicks=clicks, jitter_mm=args.jitter_mm, seed=args.seed,
                        nsd_tolerance_mm=args.nsd_tolerance, model=args.model, device=args.device,
                        options=options, prepare=args.prepare)
    dataset = open_dataset(args.dataset, labels=parse_labels(args.labels), limit=args.limit)
    check_report_folder(args.out, args.dataset, dataset, args.model)  # before any model loads or folder is made
    made = not os.path.exists(args.out)
    ctx = init_distributed(args.device)
    try:
        device = rank_device(args.device, ctx)
        res = run_evaluation(dataset, make_factory(args.model, device, options), config, args.out,
                             resume=args.resume, progress=not args.no_progress, dist=ctx)
    except BaseException:
        if made and ctx.is_main:  # a failed run (a full disk, Ctrl-C) leaves no half report behind
            shutil.rmtree(args.out, ignore_errors=True)
        raise
    finally:
        ctx.close()
    if not ctx.is_main:
        return 0
    s = res.summary
    _print_summary(s, res.out_dir)
    if res.all_failed:
        print(f"sam-med: error: every case failed ({s['cases']}); reasons in {res.out_dir / 'records.csv'}",
              file=sys.stderr)
        return 1
    return 0


def _print_summary(s: dict, out_dir) -> None:
    def f(v, nd=4):
        return "n/a" if v is None else f"{v:.{nd}f}"

    print(f"cases: {s['cases']} ({s['cases_failed']} failed), objects: {s['objects']}")
    for row in s["per_case"]:
        if row["objects"]:
            print(f"  {row['case_id']:<40} dice {f(row['dice_mean'])}  nsd {f(row['nsd_mean'])}  "
                  f"hd95 {f(row['hd95_mean'], 2)} mm")
    for fl in s["failures"]:
        print(f"  FAILED {fl['case_id']}" + (f" label {fl['label']}" if "label" in fl else "")
              + f": {fl['error']}")
    ci = s.get("dice_ci95")
    ci = f"[{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "n/a"
    print(f"dice {f(s['dice_mean'])} (95% CI {ci}), nsd {f(s['nsd_mean'])}, "
          f"hd95 {f(s['hd95_mean'], 2)} mm")
    if s.get("dice_mean_per_click"):
        print("dice per click: " + " ".join(f"{d:.4f}" for d in s["dice_mean_per_click"]))
    print(f"wrote {out_dir}/summary.json, records.csv, objects.csv"
          + (", " + ", ".join(s["plots"]) if s.get("plots") else ""))
