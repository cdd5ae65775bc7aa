#!/usr/bin/env python
"""MedSAM2's cost per 512^2 slice on this machine, against LiteMedSAM's per slice in the same run.

Per tracked slice MedSAM2 runs: the Hiera-T encoder at 512^2 (once per slice: cached), the
memory attention over a full bank (1 prompted slice + 6 recent memories + 16 object
pointers), the decoder (3 candidate masks) and the memory encoder. LiteMedSAM, slice-wise,
runs its TinyViT encoder at 256^2 and its decoder for a box. Random weights of each model's
layout (speed does not depend on the values); medians of ``--repeats`` after one warm-up.

    python benchmarks/bench_medsam2.py [--repeats 5] [--device cpu|cuda] [--json out.json]

Compare the ratio, not absolute times, across machines (the CPU flags are printed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def medsam2_parts(device: str) -> dict:
    """name -> a closure running that part once (inputs made here)."""
    import torch

    from sam_med.models.sam2 import build_sam2

    torch.manual_seed(0)
    m = build_sam2().to(device).eval()
    x = torch.randn(1, 3, 512, 512, device=device)
    with torch.inference_mode():
        f = m.encode_frames(x)
        mem = torch.randn(1, 64, 32, 32, device=device)
        ptr = torch.randn(1, 256, device=device)
        cond = {0: (mem, ptr)}
        recent = {t: (mem if t >= 14 else None, ptr) for t in range(5, 20)}  # 6 memories, 15 pointers
        pix = m.condition(f, 20, 200, cond, recent, False, False)
        d = m.decode(pix, f.high_res, multimask=True)
    return {"encoder": lambda: m.encode_frames(x),
            "memory attention": lambda: m.condition(f, 20, 200, cond, recent, False, False),
            "decoder": lambda: m.decode(pix, f.high_res, multimask=True),
            "memory encoder": lambda: m.encode_memory(f, d.high_res, d.object_score, False)}


def lite_parts(device: str, precision: str) -> dict:
    import torch

    from sam_med.models.build import build_lite_medsam
    from sam_med.models.precision import resolve_precision

    torch.manual_seed(0)
    m = build_lite_medsam().to(device).eval()
    _, dtype = resolve_precision(precision, torch.device(device))
    x = torch.randn(1, 3, 256, 256, device=device)
    box = torch.tensor([[60.0, 70.0, 150.0, 160.0]], device=device)

    def enc():
        if dtype is None:
            return m.image_encoder(x)
        with torch.autocast(device_type=torch.device(device).type, dtype=dtype):
            return m.image_encoder(x)

    with torch.inference_mode():
        emb = enc().float()
    return {"encoder": enc, "decoder": lambda: m.decode(emb, boxes=box)}


def measure(parts: dict, repeats: int, sync) -> dict:
    """Round robin over every part of every model (load changes hit all alike); medians."""
    import torch

    times: dict = {k: [] for k in parts}
    with torch.inference_mode():
        for k, fn in parts.items():  # warm-up
            fn()
        for _ in range(repeats):
            for k, fn in parts.items():
                sync()
                t = time.perf_counter()
                fn()
                sync()
                times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None) -> int:
    import torch

    from bench_fullsize import cpu_report

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
    rep = {"machine": cpu_report(), "device": a.device}
    models = {"medsam2 fp32 (512^2)": medsam2_parts(a.device),
              "lite_medsam fp32 (256^2)": lite_parts(a.device, "fp32"),
              "lite_medsam auto (256^2)": lite_parts(a.device, "auto")}
    flat = {(name, part): fn for name, parts in models.items() for part, fn in parts.items()}
    med = measure(flat, a.repeats, sync)
    for name, parts in models.items():
        rep[name] = {part: med[(name, part)] for part in parts}
        rep[name]["per slice"] = sum(rep[name].values())
    base = rep["lite_medsam fp32 (256^2)"]["per slice"]
    print(f"{rep['machine']['cpu']}; torch {rep['machine']['torch']}, {rep['machine']['threads']} threads, "
          f"{rep['machine']['capability']}, load {tuple(round(v, 1) for v in rep['machine']['load'])}")
    print("| model | part | ms per slice | x LiteMedSAM fp32 per slice |")
    print("|---|---|---|---|")
    for name in ("medsam2 fp32 (512^2)", "lite_medsam fp32 (256^2)", "lite_medsam auto (256^2)"):
        for part, s in rep[name].items():
            print(f"| {name} | {part} | {s * 1000:.0f} | {s / base:.2f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(rep, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
