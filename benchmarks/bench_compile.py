"""Faster kernels for the LiteMedSAM encoder and decoder on this CPU (issue #16): eager
PyTorch vs ``torch.compile`` (inductor), fp32 and bf16 autocast, in one run, interleaved.

Run: python benchmarks/bench_compile.py [--repeats 5] [--size 256] [--json out.json]

One MNI152 T1 slice, preprocessed as the slice-wise predictor does. For each variant the
first call (compilation, kernel creation) is timed apart (``first_s``), then ``--repeats``
rounds in which the variants alternate, so machine load hits all alike; the median per
call is reported with the ratio against eager of the same precision, the largest
difference of the embeddings from eager fp32, and the decoder (one box prompt) the same
way. The inductor cache lives in ``$TORCHINDUCTOR_CACHE_DIR`` (default under /tmp), so a
second run of this script shows what a warm on-disk cache costs at first call.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
MNI = ROOT.parent / "shared" / "data" / "mni152" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


def cpu_flags() -> str:
    text = Path("/proc/cpuinfo").read_text()
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    return " ".join(f for f in flags if f.startswith(("avx", "amx")))


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def main() -> None:
    from sam_med import io
    from sam_med.models import load_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--json")
    a = ap.parse_args()
    vol = io.load(str(MNI))
    img = np.take(vol.array, vol.shape[vol.slice_axis] // 2, axis=vol.slice_axis).astype(np.float32)
    lm = load_model("lite_medsam", precision="fp32")
    x = (lm.preprocess(img)[0] if a.size == lm.image_size else lm.preprocess_at(a.size)(img)[0])[None]
    enc = lm.model.image_encoder.eval()
    enc_c = torch.compile(enc, dynamic=False)
    bf16 = torch.autocast("cpu", dtype=torch.bfloat16)
    no_ac = torch.autocast("cpu", enabled=False)

    def run_enc(model, ac):
        with torch.inference_mode(), ac:
            return model(x).float()

    variants = {"eager fp32": (enc, no_ac), "compiled fp32": (enc_c, no_ac),
                "eager bf16": (enc, bf16), "compiled bf16": (enc_c, bf16)}
    first, outs, times = {}, {}, {k: [] for k in variants}
    for k, (m, ac) in variants.items():
        first[k], outs[k] = timed(run_enc, m, ac)
    for _ in range(a.repeats):
        for k, (m, ac) in variants.items():
            times[k].append(timed(run_enc, m, ac)[0])
    ref = outs["eager fp32"]
    med = {k: statistics.median(v) for k, v in times.items()}

    emb = ref
    box = torch.tensor([[60.0, 60.0, 200.0, 200.0]])
    dec = lm.model.decode
    dec_c = torch.compile(lm.model.mask_decoder, dynamic=False)

    def run_dec(compiled: bool):
        with torch.inference_mode():
            if not compiled:
                return dec(emb, boxes=box)[0]
            hw = tuple(int(v) for v in emb.shape[-2:])
            sparse, dense = lm.model.prompt_encoder(points=None, boxes=box[:, None, :], masks=None, embedding_hw=hw)
            return dec_c(image_embeddings=emb, image_pe=lm.model.prompt_encoder.get_dense_pe(hw),
                         sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                         multimask_output=False)[0]

    dfirst, dout, dtimes = {}, {}, {"eager": [], "compiled": []}
    for k in dtimes:
        try:
            dfirst[k], dout[k] = timed(run_dec, k == "compiled")
        except Exception as e:  # a decoder signature we do not know: report, do not fake
            dfirst[k], dout[k] = None, None
            print(f"decoder {k}: {type(e).__name__}: {e}")
    for _ in range(a.repeats):
        for k in dtimes:
            if dout[k] is not None:
                dtimes[k].append(timed(run_dec, k == "compiled")[0])
    res = {
        "cpu_flags": cpu_flags(), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "capability": torch.backends.cpu.get_cpu_capability(), "load": os.getloadavg(), "size": a.size,
        "encoder": {k: {"first_s": round(first[k], 2), "median_s": round(med[k], 3),
                        "ratio_vs_eager_same_precision": round(med[k] / med["eager " + k.split()[1]], 3),
                        "max_abs_diff_vs_eager_fp32": float((outs[k] - ref).abs().max())}
                    for k in variants},
        "decoder": {k: {"first_s": None if dfirst[k] is None else round(dfirst[k], 2),
                        "median_ms": round(1000 * statistics.median(v), 1) if v else None}
                    for k, v in dtimes.items()},
    }
    if dout.get("eager") is not None and dout.get("compiled") is not None:
        res["decoder"]["max_abs_diff"] = float((dout["eager"] - dout["compiled"]).abs().max())
    print(json.dumps(res, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
