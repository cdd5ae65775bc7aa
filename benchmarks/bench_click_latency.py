"""Click latency in a live session (issue #15): the time from a click to the updated 3D mask.

What a napari user or a Python user of :class:`sam_med.session.Session` waits for after a
corrective click. For each case of a CVPR 2025-format folder (default
``../shared/cvpr25/cases``): one Session with the default predictor, every class's key-slice
box first (not timed as a click), then ``--clicks`` rounds of the challenge's click rule
(:func:`sam_med.evaluation.cvpr25.clicks.next_click` on the session's current mask), each
click timed on its own around ``Session.add_point`` (which returns with the updated 3D
mask). The box step's slices are encoded by then, as in a live session; a click on a slice
the mask never reached encodes that slice inside the timed call.

Usage::

    python benchmarks/bench_click_latency.py [DATA] [--clicks 5] [--limit N] [--json out.json]
        [--option key=value ...]

Prints the CPU flags that decide the encoder's speed, the load average, one line per case
and the median / p90 / max over all clicks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "cvpr25" / "cases"


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    keep = [f for f in flags if f.startswith(("avx", "amx")) or f in ("fma", "f16c")]
    return " ".join(keep)


def run(data, n_clicks: int, limit: int | None, options: dict) -> dict:
    from sam_med.evaluation.cvpr25.cases import open_cases
    from sam_med.evaluation.cvpr25.clicks import next_click
    from sam_med.evaluation.cvpr25.protocol import InProcessStepper, _point
    from sam_med.predictors.factory import build_predictor

    predictor = build_predictor("lite_medsam", "cpu", **options)
    _, cases = open_cases(data, limit=limit)
    rows, all_lat, all_enc, all_dec = [], [], [], []
    for c in cases:
        case = c.load()
        stepper = InProcessStepper(case, predictor)
        t0 = time.perf_counter()
        segs = stepper.boxes(case.boxes)
        box_s = time.perf_counter() - t0
        lat = []
        for _ in range(n_clicks):
            for cls in case.classes:
                click = next_click(segs == cls, case.gts == cls)
                if click is None:
                    continue
                t = time.perf_counter()
                obj = stepper.session.add_point(cls, _point(click))
                lat.append(time.perf_counter() - t)
                info = getattr(getattr(obj, "result", None), "info", None)
                all_enc.append(float(getattr(info, "encode_seconds", 0.0) or 0.0))
                all_dec.append(float(getattr(info, "decode_seconds", 0.0) or 0.0))
            segs = stepper.segs()
        rows.append({"case": case.case_id, "classes": len(case.classes), "box_step_s": round(box_s, 2),
                     "clicks": len(lat), "median_s": round(float(np.median(lat)), 3) if lat else None,
                     "max_s": round(max(lat), 3) if lat else None})
        print(json.dumps(rows[-1]), flush=True)
        all_lat += lat
    a = np.asarray(all_lat)
    return {"cpu_flags": cpu_flags(), "threads": __import__("torch").get_num_threads(),
            "load_before": LOAD_BEFORE, "load_after": os.getloadavg(), "cases": rows,
            "clicks": int(a.size), "median_s": float(np.median(a)), "p90_s": float(np.percentile(a, 90)),
            "max_s": float(a.max()), "share_le_1s": float((a <= 1.0).mean()),
            "clicks_with_encode": int((np.asarray(all_enc) > 0).sum()),
            "decode_median_s": float(np.median(all_dec)) if all_dec else 0.0}


def main(argv=None) -> int:
    global LOAD_BEFORE
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", nargs="?", default=str(DEFAULT_DATA))
    ap.add_argument("--clicks", type=int, default=5)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--json")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args(argv)
    from sam_med.predictors.base import parse_option_pairs

    LOAD_BEFORE = os.getloadavg()
    out = run(a.data, a.clicks, a.limit, parse_option_pairs(a.option))
    print(f"cpu flags: {out['cpu_flags']}; threads {out['threads']}; load {out['load_before']} -> {out['load_after']}")
    print(f"{out['clicks']} clicks: median {out['median_s']:.3f} s, p90 {out['p90_s']:.3f} s, "
          f"max {out['max_s']:.3f} s, {100 * out['share_le_1s']:.0f} % within 1 s; "
          f"{out['clicks_with_encode']} clicks encoded a slice; decoder median {out['decode_median_s']:.3f} s")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


LOAD_BEFORE = (0.0, 0.0, 0.0)

if __name__ == "__main__":
    sys.exit(main())
