"""`sam-med evaluate DATA --protocol cvpr25`: the CVPR 2025 interactive challenge's protocol
(see sam_med/evaluation/cvpr25). DATA: a folder with imgs/ + gts/, a folder of challenge npz
(``--gts DIR`` for labels kept apart), or any dataset evaluate reads (converted on the fly).
``--fresh-process-per-step`` runs every step as its own ``sam-med segment`` process."""

from __future__ import annotations

import sys


def check_args(args) -> None:
    from ..errors import SamMedError

    bad = [f for f, v in (("--clicks", args.clicks), ("--labels", args.labels)) if v is not None]
    bad += ["--jitter-mm"] if args.jitter_mm else []
    bad += ["--prepare"] if args.prepare else []
    if bad:
        raise SamMedError(f"{', '.join(bad)} do not apply to --protocol cvpr25 (its boxes and 5 clicks are fixed)")
    if args.fresh_process_per_step and args.option:
        raise SamMedError("--option is not passed to the per-step sam-med segment processes; "
                          "drop it or run in process")


def run_cvpr25_cli(args) -> int:
    from ..evaluation.cvpr25.runner import run_cvpr25
    from ..evaluation.distributed import init_distributed, rank_device
    from .common import make_factory, parse_options

    check_args(args)
    if args.gts is not None and args.protocol != "cvpr25":
        from ..errors import SamMedError

        raise SamMedError("--gts applies to --protocol cvpr25")
    options = parse_options(args.option)
    mode = "fresh-process" if args.fresh_process_per_step else "in-process"
    config = {"protocol": "cvpr25", "model": args.model, "options": options, "nsd_tolerance_mm": 2.0,
              "spacing_order": args.spacing_order}
    ctx = init_distributed(args.device)
    try:
        device = rank_device(args.device, ctx)
        seg_args = ["--model", args.model, "--device", device, "--spacing-order", args.spacing_order]
        summary = run_cvpr25(args.dataset, args.out, predictor_factory=make_factory(args.model, device, options),
                             mode=mode, gts_dir=args.gts, segment_args=seg_args, config=config,
                             resume=args.resume, progress=not args.no_progress, limit=args.limit, dist=ctx,
                             spacing_order=args.spacing_order)
    finally:
        ctx.close()
    if summary is None:
        return 0
    _print(summary, args.out)
    if summary["cases"] and summary["cases_failed"] == summary["cases"]:
        print(f"sam-med: error: every case failed; reasons in {args.out}/metrics.csv", file=sys.stderr)
        return 1
    return 0


def _print(s: dict, out) -> None:
    def f(v):
        return "n/a" if v is None else f"{v:.4f}"

    m = s["mean"]
    print(f"cases: {s['cases']} ({s['cases_failed']} failed)")
    for fl in s["failures"]:
        print(f"  FAILED {fl['CaseName']}: {fl['error']}")
    print("mean DSC per step: " + " ".join(f(m.get(f"DSC_{k}")) for k in range(1, 7)))
    print(f"DSC_AUC {f(m['DSC_AUC'])}  NSD_AUC {f(m['NSD_AUC'])}  DSC_Final {f(m['DSC_Final'])}  "
          f"NSD_Final {f(m['NSD_Final'])}")
    if s["over_budget_cases"]:
        print(f"over the 90 s/class budget: {', '.join(s['over_budget_cases'])}")
    print(f"wrote {out}/metrics.csv, per_class.csv, clicks.jsonl, summary.json"
          + "".join(", " + p for p in s.get("plots", [])))
