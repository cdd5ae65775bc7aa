"""LiteMedSAM encoder seconds per slice at reduced inputs, fp32 vs bf16, interleaved.

Run: python benchmarks/bench_res_precision.py [--sizes 144,192,256] [--repeats 3]

One MNI152 T1 slice, preprocessed at each size (``preprocess_at``), one slice per call,
after one warm-up call per (precision, size); the precisions and sizes alternate so
machine load hits all alike. Prints the median seconds per (precision, size).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MNI = ROOT.parent / "shared" / "data" / "mni152" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


def main() -> None:
    import os

    from sam_med import io
    from sam_med.models import load_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="144,192,256")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    vol = io.load(str(MNI))
    img = np.take(vol.array, vol.shape[vol.slice_axis] // 2, axis=vol.slice_axis).astype(np.float32)
    models = {p: load_model("lite_medsam", precision=p) for p in ("fp32", "bf16")}
    xs = {s: models["fp32"].preprocess_at(s)(img)[0][None] if s != 256 else models["fp32"].preprocess(img)[0][None]
          for s in sizes}
    times = {(p, s): [] for p in models for s in sizes}
    for p, lm in models.items():
        for s in sizes:
            lm.encode(xs[s])
    for _ in range(a.repeats):
        for s in sizes:
            for p, lm in models.items():
                t0 = time.perf_counter()
                lm.encode(xs[s])
                times[(p, s)].append(time.perf_counter() - t0)
    print(json.dumps({"load": os.getloadavg(), "repeats": a.repeats,
                      "s_per_slice": {f"{p}@{s}": round(statistics.median(t), 3) for (p, s), t in times.items()},
                      "all": {f"{p}@{s}": [round(v, 3) for v in t] for (p, s), t in times.items()}}, indent=1))


if __name__ == "__main__":
    main()
