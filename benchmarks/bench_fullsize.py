"""Full-size scans (issue #16): wall time, time to the first mask, further objects, cost
growth with the object's slice count, and peak RSS, each case in a cold process.

Usage::

    python benchmarks/bench_fullsize.py all [--baseline-code ../ref-checkout] [--json out.json]
        [--variants "default;whole_res_alt=none;slice_step=1"] [--parts brain,table,rss]
    python benchmarks/bench_fullsize.py case --object brain [--opt slice_step=1 ...]
        [--further wm]            # one cold process, prints one JSON line
    python benchmarks/bench_fullsize.py rss [--budget-mb 256] [--depth 300] [--opt ...]

Objects (tight 3D box of the reference, the slice-wise engine's defaults + ``--opt``):
``brain`` = MNI152 2009a T1, gm + wm > 127 (~154 slices along the acquisition axis);
``wm`` = white matter (wm > 127, ~150 slices); ``brain100`` = the brain within 100 slices
(54..153); ``liver`` = TotalSegmentator CT liver (30 slices; also ``spleen``,
``kidney_right``, ``stomach`` of the same scan, for ``--further``); ``lesion`` = CT lesion
000015 (13 slices). ``case`` runs in a fresh process with an empty in-memory cache and
reports: model load, time to the key slice's mask after the box (``first_mask_s``, from
``init_state`` to ``add_prompts`` returning), the whole object (``predict_s``), Dice
against the reference, encoder calls, and with ``--further`` a second object on the
already-encoded scan. ``all`` runs the cases of ``--parts`` one after another as separate
processes (``--baseline-code``: the same case with another checkout's ``sam_med``, e.g.
today's main, so both see the same machine load), measures this CPU's matmul GFLOP/s
(the encoder's floor: 74.5 GFLOP per 256² slice) and prints lscpu flags; a variant item
``SAM_MED_X=v`` sets that environment variable for the case (``SAM_MED_PRECISION=fp32``). ``rss``: the
TotalSegmentator DICOM CT label grid (512 x 512 x 20) tiled to ``depth`` slices, liver
box over 24 slices, cache budget ``--budget-mb``: peak RSS and cache bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

T_START = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
MNI = DATA / "mni152" / "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
GFLOP_PER_SLICE = 74.5  # LiteMedSAM encoder, one 256 x 256 slice (torch FLOP counter)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def parse_opts(items) -> dict:
    import yaml

    out = {}
    for it in items or []:
        k, _, v = it.partition("=")
        out[k.strip()] = yaml.safe_load(v)
    return out


def load_object(name: str):
    """``(Volume, bool reference mask)`` of a named object (see the module docstring)."""
    import numpy as np

    from sam_med import io

    if name in ("brain", "wm", "brain100"):
        vol = io.load(str(MNI).format("t1"))
        gm = io.load(str(MNI).format("gm")).array.astype(np.int32)
        wm = io.load(str(MNI).format("wm")).array.astype(np.int32)
        ref = (wm > 127) if name == "wm" else (gm + wm > 127)
        if name == "brain100":
            ax = vol.slice_axis
            keep = np.zeros(ref.shape[ax], bool)
            keep[54:154] = True
            ref = ref & keep.reshape([-1 if i == ax else 1 for i in range(3)])
        return vol, ref
    ct_labels = {"liver": 5, "spleen": 1, "kidney_right": 2, "stomach": 6}
    if name in ct_labels:
        vol = io.load(str(DATA / "totalseg" / "example_ct_sm.nii.gz"))
        return vol, io.load_label(str(DATA / "totalseg" / "example_seg.nii.gz"), vol).array == ct_labels[name]
    if name == "lesion":
        case = io.read_npz(str(next((DATA / "ct_lesion").glob("CT_Lesion_000015*.npz"))))
        return case.image, case.label.array > 0
    raise SystemExit(f"unknown object {name!r}")


def run_object(pred, vol, ref, first_only: bool = False) -> dict:
    """Segment ``ref`` from its tight box with ``pred``; timings, Dice, encoder calls and
    encoder GFLOP (74.5 x (input / 256)² per encoded slice: a load-free cost measure).
    ``first_only``: stop after the key slice's mask."""
    from sam_med.evaluation.metrics import dice
    from sam_med.prompts import ObjectPrompts, box_from_mask

    box = box_from_mask(ref)
    enc0, dec0, n0 = pred.timings["encode"], pred.timings["decode"], pred.cache.encoded
    t0 = time.perf_counter()
    st = pred.init_state(vol, ObjectPrompts(box=box))
    k, _ = pred.add_prompts(st)
    t_first = time.perf_counter() - t0
    first = {"first_mask_s": round(t_first, 2), "first_encode_s": round(pred.timings["encode"] - enc0, 2),
             "first_decode_s": round(pred.timings["decode"] - dec0, 2)}
    if first_only:
        return {**first, "key": int(k), "encoded": pred.cache.encoded - n0}
    for _ in pred.propagate(st):
        pass
    mask = pred.volume_mask(st)
    t_all = time.perf_counter() - t0
    lo, hi = box.int_bounds()
    n_box = int(hi[st.axis] - lo[st.axis] + 1)
    res = st.res or pred.size
    n_enc = pred.cache.encoded - n0
    return {**first, "predict_s": round(t_all, 2), "box_slices": n_box,
            "encoder_gflop": round(n_enc * GFLOP_PER_SLICE * (res / 256) ** 2, 1),
            "s_per_slice": round(t_all / n_box, 3), "dice": round(float(dice(mask, ref)), 4),
            "encoded": pred.cache.encoded - n0, "encode_s": round(pred.timings["encode"] - enc0, 2),
            "input_size": st.res or pred.size, "crop": st.crop}


def cmd_case(a) -> None:
    import torch

    from sam_med.models import load_model
    from sam_med.predictors.embedding_cache import EmbeddingCache
    from sam_med.predictors.slicewise import SliceWisePredictor

    vol, ref = load_object(a.object)
    t0 = time.perf_counter()
    loaded = load_model("lite_medsam", device=a.device)
    t_load = time.perf_counter() - t0
    pred = SliceWisePredictor(loaded=loaded, cache=EmbeddingCache(), **parse_opts(a.opt))
    out = {"object": a.object, "opts": a.opt or [], "code": str(Path(sys.modules["sam_med"].__file__).parents[1]),
           "precision": getattr(loaded, "precision", None), "threads": torch.get_num_threads(),
           "load_s": round(t_load, 2), **run_object(pred, vol, ref, a.first_only)}
    if a.further:
        vol2, ref2 = load_object(a.further)
        f = run_object(pred, vol2, ref2)
        out["further"] = {"object": a.further, **{k: f[k] for k in ("predict_s", "first_mask_s", "dice", "encoded")}}
    out["process_s"] = round(time.perf_counter() - T_START, 2)
    out["peak_rss_mb"] = round(peak_rss_mb())
    print(json.dumps(out))


def cmd_rss(a) -> None:
    import numpy as np

    from sam_med import io
    from sam_med.models import load_model
    from sam_med.predictors.embedding_cache import EmbeddingCache
    from sam_med.predictors.slicewise import SliceWisePredictor
    from sam_med.prompts import ObjectPrompts, box_from_mask
    from sam_med.volume import Volume

    rss0 = peak_rss_mb()
    src = io.load(str(DATA / "totalseg" / "example_ct_dicom"))
    lab = io.load_label(str(DATA / "totalseg" / "example_seg_dicom.nii.gz"), src).array == 5
    ax = src.slice_axis
    reps = -(-a.depth // src.shape[ax])
    arr = np.concatenate([src.array] * reps, axis=ax).take(range(a.depth), axis=ax)
    ref = np.concatenate([lab] * reps, axis=ax).take(range(a.depth), axis=ax)
    keep = np.zeros(a.depth, bool)
    keep[a.depth // 2 - 12: a.depth // 2 + 12] = True
    ref &= keep.reshape([-1 if i == ax else 1 for i in range(3)])
    vol = Volume(arr, src.affine, modality="CT", intensity=src.intensity, slice_axis=ax)
    del src
    loaded = load_model("lite_medsam")
    rss_model = peak_rss_mb()
    cache = EmbeddingCache(max_bytes=int(a.budget_mb * 2**20))
    pred = SliceWisePredictor(loaded=loaded, cache=cache, **parse_opts(a.opt))
    pred.bind(vol)
    rss_bound = peak_rss_mb()
    r = pred.predict(vol, ObjectPrompts(box=box_from_mask(ref)))
    print(json.dumps({"volume_shape": list(vol.shape), "volume_dtype": str(vol.array.dtype),
                      "budget_mb": a.budget_mb, "cache_mb": round(cache.nbytes / 2**20, 1),
                      "cache_entries": len(cache), "encoded": cache.encoded, "object_slices": len(r.info.slices),
                      "rss_start_mb": round(rss0), "rss_after_volume_and_model_mb": round(rss_model),
                      "rss_after_bind_mb": round(rss_bound), "peak_rss_mb": round(peak_rss_mb()),
                      "seconds": round(r.info.seconds, 1)}))


def cpu_report() -> dict:
    import torch

    flags = ""
    try:
        flags = next(ln for ln in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                     if ln.startswith("Flags")).split(":", 1)[1].split()
    except Exception:  # noqa: BLE001 - lscpu missing
        flags = []
    model = next((ln.split(":", 1)[1].strip() for ln in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines() if ln.startswith("Model name")), "?")
    return {"cpu": model, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "capability": torch.backends.cpu.get_cpu_capability(), "load": os.getloadavg(),
            "lscpu_flags": " ".join(flags)}


def matmul_gflops(dtype_name: str, n: int = 1024, reps: int = 20) -> float:
    """This CPU's dense matmul rate (GFLOP/s, torch's threads) at the encoder's precision."""
    import torch

    dt = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    x, y = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
    for _ in range(3):
        x @ y
    t0 = time.perf_counter()
    for _ in range(reps):
        x @ y
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def child(code: str, args: list[str]) -> dict:
    """Run ``args`` in a fresh process importing ``sam_med`` from ``code``; ``--opt
    SAM_MED_X=v`` items become environment variables (e.g. ``SAM_MED_PRECISION=fp32``)."""
    env = dict(os.environ, PYTHONPATH=code)
    keep = []
    for i, x in enumerate(args):
        if i and args[i - 1] == "--opt" and x.startswith("SAM_MED_"):
            k, _, v = x.partition("=")
            env[k] = v
            keep.pop()
        else:
            keep.append(x)
    args = keep
    p = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env)
    if p.returncode:
        return {"args": args, "code": code, "error": p.stderr.strip().splitlines()[-1:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def cmd_all(a) -> None:
    from sam_med.models.precision import resolve_precision

    rep = {"cpu": cpu_report()}
    prec = resolve_precision("auto", "cpu")[0]
    rep["gflops"] = {p: round(matmul_gflops(p), 1) for p in ("fp32", "bf16")}
    rep["floor_s_per_slice"] = {p: round(GFLOP_PER_SLICE / g, 3) for p, g in rep["gflops"].items()}
    rep["auto_precision"] = prec
    print(json.dumps(rep, indent=1), flush=True)
    parts = a.parts.split(",")
    variants = [v.strip() for v in a.variants.split(";") if v.strip()]
    ours = str(ROOT)

    def opts(v):
        return [] if v == "default" else sum((["--opt", kv] for kv in v.split(",")), [])

    if "brain" in parts:
        rows = []
        if a.baseline_code:
            rows.append(child(a.baseline_code, ["case", "--object", "brain", "--further", "wm"]))
            rows[-1]["variant"] = "baseline (" + a.baseline_code + ")"
            print(json.dumps(rows[-1]), flush=True)
        for v in variants:
            rows.append(child(ours, ["case", "--object", "brain", "--further", "wm", *opts(v)]))
            rows[-1]["variant"] = v
            print(json.dumps(rows[-1]), flush=True)
        rep["brain"] = rows
    if "table" in parts:
        rows = []
        for obj in ("lesion", "liver", "brain100", "brain"):
            for v in variants if a.table_all else variants[-1:]:
                rows.append(child(ours, ["case", "--object", obj, *opts(v)]))
                rows[-1]["variant"] = v
                print(json.dumps(rows[-1]), flush=True)
        rep["table"] = rows
    if "rss" in parts:
        rep["rss"] = child(ours, ["rss", "--budget-mb", str(a.budget_mb), *opts(variants[-1])])
        print(json.dumps(rep["rss"]), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rep, indent=1))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("case")
    c.add_argument("--object", required=True)
    c.add_argument("--further")
    c.add_argument("--opt", action="append")
    c.add_argument("--device", default="cpu")
    c.add_argument("--first-only", action="store_true", help="stop after the key slice's mask")
    r = sub.add_parser("rss")
    r.add_argument("--budget-mb", type=float, default=256)
    r.add_argument("--depth", type=int, default=300)
    r.add_argument("--opt", action="append")
    al = sub.add_parser("all")
    al.add_argument("--baseline-code")
    al.add_argument("--variants", default="default")
    al.add_argument("--parts", default="brain,table,rss")
    al.add_argument("--table-all", action="store_true", help="every variant in the table (else the last)")
    al.add_argument("--budget-mb", type=float, default=256)
    al.add_argument("--json")
    a = ap.parse_args(argv)
    {"case": cmd_case, "rss": cmd_rss, "all": cmd_all}[a.cmd](a)


if __name__ == "__main__":
    main()
