#!/usr/bin/env python
"""Speed and memory of the full-size SAM-Med3D (vit_b_ori, 100.5 M parameters) per 128^3 crop.

Random weights (no checkpoint needed; speed does not depend on the values). For each
precision (fp32, bf16 autocast) a fresh worker process builds the model, runs one
warm-up, then times ``encode`` (image encoder, once per crop) and ``decode`` (prompt
encoder + mask decoder, once per click) ``--repeats`` times and reports medians.
Peak memory: on CPU the worker's peak RSS minus its RSS after building the model
(= activations of one crop), plus the total peak; on CUDA ``max_memory_allocated``.
Ratios are against fp32 in the same run (compare ratios, not absolute times, across
machines).

    python benchmarks/bench_sam3d.py                 # CPU, fp32 vs bf16
    python benchmarks/bench_sam3d.py --device cuda   # GPU

Measured (shared 2-core AVX2 VM without AVX-512/AMX, load average ~12 from other jobs,
``--threads 1 --repeats 2``; absolute times are pessimistic, the ratio is the point):

    fp32  encode 46.2 s  decode 0.69 s  peak RSS 856 MiB (activations 239 MiB)
    bf16  encode 104.8 s (2.27x fp32)  decode 1.84 s  peak RSS 748 MiB (activations 130 MiB)

bf16 autocast halves activation memory but is slower on CPUs without native bf16 matmul
(no AVX-512-BF16/AMX here), so the config keeps ``autocast_dtype: null``. No GPU was lent
to this task; run with ``--device cuda`` where one is available.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    """Current resident set size (Linux /proc), MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(precision: str, device: str, repeats: int, threads: int | None) -> dict:
    import torch

    sys.path.insert(0, str(ROOT))
    from sam_med.models.sam3d import Sam3DConfig, build_sam3d

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = torch.device(device)
    model = build_sam3d(Sam3DConfig()).eval().to(dev)
    x = torch.randn(1, 1, 128, 128, 128, device=dev)
    coords = torch.tensor([[[64.0, 60.0, 70.0], [40.0, 64.0, 64.0]]], device=dev)
    labels = torch.tensor([[1, 0]], device=dev)
    prev = torch.zeros(1, 1, 32, 32, 32, device=dev)
    ac = (torch.autocast(device_type=dev.type, dtype=torch.bfloat16) if precision == "bf16"
          else torch.autocast(device_type=dev.type, enabled=False))

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    base_rss = _rss_mb()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_gpu = torch.cuda.memory_allocated() / 2**20
    enc_t, dec_t = [], []
    with torch.inference_mode(), ac:
        emb = model.encode(x)  # warm-up
        model.decode(emb, coords, labels, prev)
        sync()
        for _ in range(repeats):
            t = time.perf_counter()
            emb = model.encode(x)
            sync()
            enc_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            low, iou = model.decode(emb, coords, labels, prev)
            sync()
            dec_t.append(time.perf_counter() - t)
    out = {"precision": precision, "device": device, "threads": torch.get_num_threads(),
           "encode_s": statistics.median(enc_t), "decode_s": statistics.median(dec_t),
           "encode_all_s": enc_t, "low_res_shape": list(low.shape), "emb_dtype": str(emb.dtype)}
    if dev.type == "cuda":
        out["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["gpu_activation_peak_mb"] = out["gpu_peak_mb"] - base_gpu
        out["gpu"] = torch.cuda.get_device_name()
    else:
        out["rss_after_build_mb"] = base_rss
        out["rss_peak_mb"] = _peak_rss_mb()
        out["activation_peak_mb"] = _peak_rss_mb() - base_rss
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        print("RESULT " + json.dumps(worker(a.worker, a.device, a.repeats, a.threads)))
        return 0
    results = []
    for prec in a.precisions.split(","):
        cmd = [sys.executable, __file__, "--worker", prec, "--device", a.device, "--repeats", str(a.repeats)]
        if a.threads:
            cmd += ["--threads", str(a.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not line:
            print(proc.stderr[-2000:], file=sys.stderr)
            return 1
        results.append(json.loads(line[0][7:]))
    ref = results[0]
    print(f"SAM-Med3D vit_b_ori, one 128^3 crop, device={a.device}, threads={ref['threads']}")
    for r in results:
        mem = (f"GPU peak {r['gpu_peak_mb']:.0f} MiB (activations {r['gpu_activation_peak_mb']:.0f})"
               if "gpu_peak_mb" in r else
               f"peak RSS {r['rss_peak_mb']:.0f} MiB (activations {r['activation_peak_mb']:.0f})")
        print(f"  {r['precision']:5s} encode {r['encode_s']:.3f} s ({r['encode_s'] / ref['encode_s']:.2f}x fp32)  "
              f"decode {r['decode_s'] * 1000:.1f} ms  {mem}")
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
