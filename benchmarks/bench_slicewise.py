"""Speed of the slice-wise predictor against the CVPR 2024 LiteMedSAM recipe, same process.

Usage::

    python benchmarks/bench_slicewise.py [--data ../shared/data/ct_lesion] [--json out.json]

For each CT-lesion case (tight 3D box of ``gts``), runs the plain recipe
(``recipe_cvpr24.py``: whole slice, encoder per slice, fp32, the encoder run as the
reference code runs it: ``plain_encoder``), the same recipe on our encoder's inference
fast paths (BatchNorm folding, stage-0 strips: isolates what the predictor's own
choices buy), and our predictor with an empty embedding cache, interleaved so all
see the same machine load. Reports wall time per case, the ratios ours/recipe
(median), the encoder's share of our time, Dice, and peak RSS. Then refinement
latency with cached embeddings: a corrective click → updated mask on the clicked
slice (median over clicks; the target), the whole click including re-propagation,
and a full re-propagation of each object from cached embeddings.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ct_lesion"))
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    import torch

    from recipe_cvpr24 import plain_encoder, recipe_segment
    from sam_med import io
    from sam_med.evaluation.metrics import dice
    from sam_med.evaluation.protocols import corrective_click
    from sam_med.models import load_model
    from sam_med.predictors.embedding_cache import EmbeddingCache
    from sam_med.predictors.slicewise import SliceWisePredictor
    from sam_med.prompts import ObjectPrompts, box_from_mask
    from sam_med.session import Session

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load {os.getloadavg()}")
    loaded = load_model("lite_medsam")
    rows = []
    for f in sorted(glob.glob(os.path.join(args.data, "*.npz"))):
        case = io.read_npz(f)
        g = case.label.array > 0
        box = box_from_mask(g)
        with np.load(f) as z:
            imgs, gts = z["imgs"], z["gts"] > 0
        b = box.int_bounds()
        box6 = [b[0][0], b[0][1], b[0][2], b[1][0], b[1][1], b[1][2]]
        t0 = time.perf_counter()
        with plain_encoder(loaded):
            segs = recipe_segment(loaded, imgs, box6)
        t_recipe = time.perf_counter() - t0
        d_recipe = dice(segs > 0, gts)
        t0 = time.perf_counter()
        recipe_segment(loaded, imgs, box6)
        t_recipe_fast = time.perf_counter() - t0

        pred = SliceWisePredictor(loaded=loaded, cache=EmbeddingCache())
        t0 = time.perf_counter()
        r = pred.predict(case.image, ObjectPrompts(box=box))
        t_ours = time.perf_counter() - t0
        rows.append({"case": Path(f).stem, "recipe_s": t_recipe, "recipe_fast_encoder_s": t_recipe_fast,
                     "ours_s": t_ours, "ratio": t_ours / t_recipe,
                     "ratio_vs_recipe_fast_encoder": t_ours / t_recipe_fast,
                     "view": f"{r.info.zoom_crop} @ {r.info.input_size}",
                     "encoder_share": r.info.encode_seconds / t_ours, "encoded": pred.cache.encoded,
                     "dice_recipe": d_recipe, "dice_ours": dice(r.mask, g)})
        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in rows[-1].items()}), flush=True)

        # refinement latency with cached embeddings
        s = Session(case.image, pred)
        o = s.add_object("lesion")
        s.set_box(o.id, box)
        lat, lat_slice = [], []
        for _ in range(3):
            c = corrective_click(s.mask(o.id), g, case.image.spacing)
            if c is None:
                break
            t0 = time.perf_counter()
            s.add_point(o.id, c.ijk, c.positive)
            lat.append(time.perf_counter() - t0)
            lat_slice.append(s.get(o.id).result.info.click_slice_seconds)
        t0 = time.perf_counter()
        s.run(o.id)  # whole object re-propagated from cached embeddings
        rows[-1]["click_s"] = lat
        rows[-1]["click_slice_s"] = lat_slice
        rows[-1]["repropagate_s"] = time.perf_counter() - t0
        rows[-1]["slices"] = int(g.any(axis=(0, 1)).sum())

    ratios = [r["ratio"] for r in rows]
    clicks = [x for r in rows for x in r["click_s"]]
    clicks_slice = [x for r in rows for x in r["click_slice_s"]]
    summary = {
        "median_ratio_ours_over_recipe": float(np.median(ratios)),
        "median_ratio_vs_recipe_on_fast_encoder": float(np.median([r["ratio_vs_recipe_fast_encoder"] for r in rows])),
        "mean_dice_recipe": float(np.mean([r["dice_recipe"] for r in rows])),
        "mean_dice_ours": float(np.mean([r["dice_ours"] for r in rows])),
        "median_encoder_share": float(np.median([r["encoder_share"] for r in rows])),
        "median_click_slice_s": float(np.median(clicks_slice)) if clicks_slice else None,
        "median_click_with_repropagation_s": float(np.median(clicks)) if clicks else None,
        "repropagate_s": [round(r["repropagate_s"], 3) for r in rows],
        "peak_rss_mb": peak_rss_mb(),
    }
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({"cases": rows, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
