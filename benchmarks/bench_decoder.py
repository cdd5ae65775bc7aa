"""Mask-decoder time per call: this checkout against another checkout's decoder, in one process.

Both decoders run on the same LiteMedSAM weights and the same random embedding and box. The
two are interleaved call by call (the order alternates), so machine noise falls on both alike.
The other checkout's ``MaskDecoder``, ``TwoWayTransformer`` (and its blocks) and
``PromptEncoder`` classes are swapped onto a deep copy of the loaded model.

    python benchmarks/bench_decoder.py --base-code /path/to/other/checkout [--calls 200]

It prints the median and 2.5th-percentile ms per decode and their ratio (this / base) for a
256² input (64 x 64 embedding) and a 160² one (40 x 40), the largest logit difference, and the
decoder's GFLOP per call (torch's FLOP counter) over this CPU's fp32 matmul rate: the floor.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_fullsize import cpu_report, matmul_gflops  # noqa: E402
from sam_med.models import load_model  # noqa: E402


def _import_base(code: str):
    spec = importlib.util.spec_from_file_location("sam_med_base", f"{code}/sam_med/__init__.py",
                                                  submodule_search_locations=[f"{code}/sam_med"])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["sam_med_base"] = mod
    spec.loader.exec_module(mod)
    import sam_med_base.models.mask_decoder as md
    import sam_med_base.models.prompt_encoder as pe
    import sam_med_base.models.transformer as tr
    return md, tr, pe


def _with_base_classes(loaded, md, tr, pe):
    base = copy.deepcopy(loaded)
    m = base.model
    m.mask_decoder.__class__ = md.MaskDecoder
    m.mask_decoder.transformer.__class__ = tr.TwoWayTransformer
    for layer in m.mask_decoder.transformer.layers:
        layer.__class__ = tr.TwoWayAttentionBlock
    m.prompt_encoder.__class__ = pe.PromptEncoder
    return base


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-code", required=True, help="a checkout whose decoder is the reference")
    ap.add_argument("--calls", type=int, default=200)
    args = ap.parse_args(argv)
    new = load_model("lite_medsam")
    base = _with_base_classes(new, *_import_base(args.base_code))
    torch.manual_seed(0)
    out = {**cpu_report(), "fp32_matmul_gflops": round(matmul_gflops("fp32"), 1)}
    box = torch.tensor([[40.0, 50.0, 150.0, 170.0]])
    for hw in (64, 40):
        emb = torch.randn(1, 256, hw, hw)
        times: dict[str, list[float]] = {"base": [], "this": []}
        with torch.inference_mode():
            low_b, _ = base.decode(emb, boxes=box)
            low_n, _ = new.decode(emb, boxes=box)
            for i in range(args.calls):
                order = (("base", base), ("this", new)) if i % 2 else (("this", new), ("base", base))
                for name, m in order:
                    t0 = time.perf_counter()
                    m.decode(emb, boxes=box)
                    times[name].append(time.perf_counter() - t0)
        with torch.inference_mode(), FlopCounterMode(display=False) as fc:
            new.decode(emb, boxes=box)
        gflop = fc.get_total_flops() / 1e9
        q = {k: sorted(v) for k, v in times.items()}
        med = {k: 1000 * v[len(v) // 2] for k, v in q.items()}
        p2 = {k: 1000 * v[len(v) // 40] for k, v in q.items()}
        out[f"{4 * hw}^2"] = {"median_ms": {k: round(v, 2) for k, v in med.items()},
                              "p2.5_ms": {k: round(v, 2) for k, v in p2.items()},
                              "ratio_median": round(med["this"] / med["base"], 3),
                              "decoder_gflop": round(gflop, 3),
                              "floor_ms": round(1000 * gflop / out["fp32_matmul_gflops"], 1),
                              "max_abs_logit_diff": float((low_b - low_n).abs().max()),
                              "mask_pixels_differing": int(((low_b > 0) != (low_n > 0)).sum())}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
