"""TinyViT encoder: channels-last (the default) vs NCHW, interleaved in one process.

Run:  python benchmarks/bench_channels_last.py [--sizes 256 192 128] [--repeats 5] [--threads 2]

For each input size and precision (fp32, and bf16 autocast where the CPU has native bf16) it
times both layouts on the same random slice, alternating, and prints the median seconds per
slice, the ratio channels-last / NCHW, and the largest output difference against NCHW fp32.
Print `lscpu` flags with the numbers (the script prints torch's CPU capability).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from sam_med.models.registry import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 192, 128])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precisions", nargs="+", default=["bf16", "fp32"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{args.threads} threads")
    enc_cl = load_model("lite_medsam", precision="fp32", cache=False).model.image_encoder
    enc_nchw = copy.deepcopy(enc_cl).to(memory_format=torch.contiguous_format)
    enc_nchw.channels_last = False
    encoders = {"nchw": enc_nchw, "channels_last": enc_cl}
    dtypes = {"fp32": None, "bf16": torch.bfloat16}
    gen = torch.Generator().manual_seed(0)
    print("size precision  nchw_s  channels_last_s  ratio  maxdiff_vs_nchw_fp32")
    for size in args.sizes:
        x = torch.rand(1, 3, size, size, generator=gen)
        with torch.inference_mode():
            ref = enc_nchw(x)
        for pname in args.precisions:
            dt = dtypes[pname]

            def run(enc):
                with torch.inference_mode(), torch.autocast("cpu", dtype=dt or torch.bfloat16,
                                                            enabled=dt is not None):
                    return enc(x).float()

            times = {k: [] for k in encoders}
            outs = {k: run(e) for k, e in encoders.items()}  # warm-up
            for _ in range(args.repeats):
                for k, e in encoders.items():
                    t = time.perf_counter()
                    run(e)
                    times[k].append(time.perf_counter() - t)
            med = {k: statistics.median(v) for k, v in times.items()}
            diff = float((outs["channels_last"] - ref).abs().max())
            print(f"{size:4d} {pname:9s} {med['nchw']:.3f}   {med['channels_last']:.3f}"
                  f"            {med['channels_last'] / med['nchw']:.2f}   {diff:.2e}", flush=True)


if __name__ == "__main__":
    main()
