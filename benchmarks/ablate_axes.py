"""Fusing slice-wise predictions along two or three axes (issue #4): does it beat the
acquisition axis alone?

Usage::

    python benchmarks/ablate_axes.py [--cache-dir .cache/emb] [--json out.json]

For each object (tight 3D box of its label) of the isotropic TotalSegmentator CT and MR
samples, runs the slice-wise predictor along axis 2 (the acquisition axis, the default),
axis 0 and axis 1, and scores each alone, the majority vote of the three, and the
intersection / union of pairs, and the axis whose slices the model rates best (mean
predicted IoU over the segmented slices: a per-object choice needing no label). The CT-lesion cases are not used: their voxels are
0.3-1.0 mm in-plane and 5 mm between slices, so a sagittal or coronal plane holds the
lesion in 7-13 rows of 5 mm, a 16:1 pixel aspect the 2D model never saw.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "totalseg"
SETS = [
    ("ct", SHARED / "example_ct_sm.nii.gz", SHARED / "example_seg.nii.gz",
     {1: "spleen", 2: "kidney_right", 3: "kidney_left", 5: "liver", 52: "aorta"}),
    ("mr", SHARED / "example_mr_sm.nii.gz", SHARED / "example_seg_mr.nii.gz",
     {1: "spleen", 2: "kidney_right", 3: "kidney_left", 5: "liver", 6: "stomach", 7: "pancreas",
      19: "vertebrae", 23: "aorta"}),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cache-dir", default=str(ROOT / ".cache" / "emb"))
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    from sam_med import io
    from sam_med.evaluation.metrics import dice
    from sam_med.models import load_model
    from sam_med.predictors.embedding_cache import EmbeddingCache
    from sam_med.predictors.slicewise import SliceWisePredictor
    from sam_med.prompts import ObjectPrompts, box_from_mask

    loaded = load_model("lite_medsam")
    cache = EmbeddingCache(cache_dir=args.cache_dir)
    preds = {a: SliceWisePredictor(loaded=loaded, cache=cache, axis=a) for a in (0, 1, 2)}
    rows = []
    for name, img_path, seg_path, labels in SETS:
        vol = io.load(str(img_path))
        seg = io.load_label(str(seg_path), like=vol).array
        print(f"{name}: {vol.shape} spacing {np.round(vol.spacing, 2).tolist()}", flush=True)
        for value, organ in labels.items():
            g = seg == value
            if not g.any():
                continue
            box = box_from_mask(g)
            m, secs, score = {}, {}, {}
            for a, p in preds.items():
                t0 = time.perf_counter()
                r = p.predict(vol, ObjectPrompts(box=box))
                secs[a] = time.perf_counter() - t0
                m[a] = r.mask
                rated = [so.score for so in r.state.slices.values() if so.mask.any() and so.score > 0]
                score[a] = float(np.mean(rated)) if rated else 0.0
            best = max(score, key=score.get)
            vote = (m[0].astype(int) + m[1] + m[2]) >= 2
            row = {"set": name, "organ": organ, **{f"axis{a}": dice(m[a], g) for a in m},
                   "vote3": dice(vote, g),
                   "and_2_0": dice(m[2] & m[0], g), "and_2_1": dice(m[2] & m[1], g),
                   "or_2_0": dice(m[2] | m[0], g),
                   "best_rated": dice(m[best], g), "best_axis": best,
                   "mean_iou_pred": {a: round(v, 3) for a, v in score.items()},
                   "seconds": {a: round(v, 2) for a, v in secs.items()}}
            rows.append(row)
            print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()
                              }), flush=True)
    keys = ["axis2", "axis0", "axis1", "vote3", "and_2_0", "and_2_1", "or_2_0", "best_rated"]
    summary = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    for s in ("ct", "mr"):
        summary[s] = {k: float(np.mean([r[k] for r in rows if r["set"] == s])) for k in keys}
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
