"""LiteMedSAM encoder time per 256² slice, fp32 vs bf16 autocast, interleaved in one run.

Run:  python benchmarks/bench_precision.py [--slices 4] [--repeats 3]

Both precisions are loaded through ``load_model(precision=...)`` (what ``auto`` picks on
this machine is printed too); each is warmed up once (the first bf16 call builds oneDNN
kernels), then the two are timed alternately on the same slices so that load from other
processes hits both alike. Prints the median seconds per slice of each, their ratio, the
max |embedding difference|, and the CPU flags that decide ``auto``. Results and the Dice
check: benchmarks/precision.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "ct_lesion"


def slices(n: int) -> list[np.ndarray]:
    """Mid-lesion axial slices of the ct_lesion npz cases (already windowed 0..255)."""
    out = []
    for f in sorted(DATA.glob("CT_Lesion_*.npz")):
        d = np.load(f)
        zs = np.nonzero(d["gts"].reshape(len(d["gts"]), -1).any(1))[0]
        out.append(d["imgs"][(zs.min() + zs.max()) // 2].astype(np.float32))
        if len(out) == n:
            break
    return out


def main() -> None:
    from sam_med.models import load_model
    from sam_med.models.precision import _cpu_flags, cpu_has_native_bf16, resolve_precision

    ap = argparse.ArgumentParser()
    ap.add_argument("--slices", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    models = {p: load_model("lite_medsam", precision=p) for p in ("fp32", "bf16")}
    pre = models["fp32"].preprocess
    batch = torch.stack([pre(s)[0] for s in slices(a.slices)])
    emb, times = {}, {p: [] for p in models}
    for p, lm in models.items():  # warm-up
        emb[p] = lm.encode(batch[:1])
    for _ in range(a.repeats):
        for p, lm in models.items():
            t0 = time.perf_counter()
            for i in range(len(batch)):  # one slice per call, as the slice-wise engine encodes
                e = lm.encode(batch[i:i + 1])
                if i == 0:
                    emb[p] = e
            times[p].append((time.perf_counter() - t0) / len(batch))
    med = {p: statistics.median(t) for p, t in times.items()}
    flags = sorted(_cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni"})
    print(json.dumps({
        "slices": len(batch), "repeats": a.repeats, "threads": torch.get_num_threads(),
        "s_per_slice": {p: round(v, 3) for p, v in med.items()},
        "all_s_per_slice": {p: [round(v, 3) for v in t] for p, t in times.items()},
        "bf16_over_fp32": round(med["bf16"] / med["fp32"], 3),
        "max_abs_embedding_diff": float((emb["bf16"] - emb["fp32"]).abs().max()),
        "auto_resolves_to": resolve_precision("auto", "cpu")[0], "native_bf16": cpu_has_native_bf16(),
        "cpu_flags": flags, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }, indent=1))


if __name__ == "__main__":
    main()
