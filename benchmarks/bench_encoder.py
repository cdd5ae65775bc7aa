"""LiteMedSAM encoder/decoder time per slice: fp32 vs bf16 autocast (and optionally torch.compile),
plus the Dice change bf16 causes on the ct_lesion mid slices (tight label box).

Run:  python benchmarks/bench_encoder.py [--threads N] [--compile] [--repeats R]

Measured on this machine (2 shared CPU cores, torch 2.13 CPU, --threads 2) while other
engineers' jobs kept the load average at 6-9, so absolute times are inflated and noisy:

    mode            encoder s/slice     decoder          Dice change vs fp32
    fp32            8.8 (2nd call; 11.2 1st)   ~0.1 s     0 (reference)
    bf16 autocast   182 (1st call)      not reached      not measured
    (full 4-slice run of this script: did not finish within 15 min because of the bf16 leg)

In isolation earlier in the session the fp32 encoder took ~2-7 s/slice. The first bf16
call is ~20x slower than fp32 here (oneDNN bf16 kernels for the depthwise 3x3 convs at
256x256 / 1024 channels and the windowed attention are the likely cost); even if later
calls were faster, that start-up cost alone rules it out for interactive use.

Decision: ``autocast_dtype: null`` (fp32) in configs/models/lite_medsam.yaml. fp32 is also
the only mode with reference parity (max |logit diff| ~5e-5). Re-run this script on an
idle machine (``--slices 4 --repeats 3``) to fill in the bf16 steady-state time and Dice
change; ``LoadedModel.autocast_dtype = torch.bfloat16`` switches it per process.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "ct_lesion"


MAX_SLICES = 4


def mid_slices():
    for f in sorted(DATA.glob("CT_Lesion_*.npz"))[:MAX_SLICES]:
        d = np.load(f)
        zs = np.nonzero(d["gts"].reshape(len(d["gts"]), -1).any(1))[0]
        z = (zs.min() + zs.max()) // 2
        gt = d["gts"][z] > 0
        ys, xs = np.nonzero(gt)
        yield f.name, d["imgs"][z].astype(np.float32), gt, np.array([xs.min(), ys.min(), xs.max(), ys.max()])


def dice(a, b):
    return float(2 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))


def run(lm, dtype, repeats, compile_encoder=False):
    lm.autocast_dtype = dtype
    enc = lm.model.image_encoder
    if compile_encoder:
        lm.model.image_encoder = torch.compile(enc)
    rows = []
    try:
        for name, img, gt, box in mid_slices():
            x, meta = lm.preprocess(img)
            print(f"  {name} ...", flush=True)
            lm.encode(x[None])  # warm-up (and compilation)
            te = []
            for _ in range(repeats):
                t = time.perf_counter()
                emb = lm.encode(x[None])
                te.append(time.perf_counter() - t)
            b = lm.box_to_model(box, meta.original_size)[None]
            lm.decode(emb, boxes=b)
            td = []
            for _ in range(max(repeats, 5)):
                t = time.perf_counter()
                logits, _ = lm.decode(emb, boxes=b)
                td.append(time.perf_counter() - t)
            mask = (lm.postprocess(logits, meta)[0, 0] > 0).numpy()
            rows.append((name, min(te), statistics.median(td), dice(mask, gt), logits))
    finally:
        lm.model.image_encoder = enc
        lm.autocast_dtype = None
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--slices", type=int, default=4, help="number of ct_lesion cases (1-4)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile(encoder)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    global MAX_SLICES
    MAX_SLICES = args.slices
    from sam_med.models import load_model

    lm = load_model("lite_medsam", autocast_dtype=None)
    modes = [("fp32", None, False), ("bf16 autocast", torch.bfloat16, False)]
    if args.compile:
        modes += [("fp32 + compile", None, True), ("bf16 + compile", torch.bfloat16, True)]
    results = {m: run(lm, dt, args.repeats, c) for m, dt, c in modes}
    base = results["fp32"]
    enc0 = statistics.median(r[1] for r in base)
    dec0 = statistics.median(r[2] for r in base)
    print(f"{'mode':<16} {'encoder s/slice':>15} {'x fp32':>7} {'decoder ms':>11} {'x fp32':>7} "
          f"{'mean Dice':>9} {'max |dDice|':>11} {'max |dlogit|':>12}")
    for m, rows in results.items():
        enc = statistics.median(r[1] for r in rows)
        dec = statistics.median(r[2] for r in rows)
        d = [r[3] for r in rows]
        dd = max(abs(r[3] - b[3]) for r, b in zip(rows, base))
        dl = max((r[4] - b[4]).abs().max().item() for r, b in zip(rows, base))
        print(f"{m:<16} {enc:>15.2f} {enc / enc0:>7.2f} {dec * 1e3:>11.1f} {dec / dec0:>7.2f} "
              f"{np.mean(d):>9.3f} {dd:>11.3f} {dl:>12.3f}")
    print("per-slice Dice:", {m: [round(r[3], 3) for r in rows] for m, rows in results.items()})


if __name__ == "__main__":
    main()
