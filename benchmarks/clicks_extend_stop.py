"""What ``click_rule="extend"`` buys when a click *does* land on a slice the mask never reached.

No protocol run on the shared cases produced such a click (benchmarks/clicks_extend.md), so
this simulates the situation on real scans with the real model: each object's tight-box run,
then its last third of segmented slices (at one end) dropped, as if propagation had stopped
early; one positive click at the reference's pixel nearest to its centroid on the middle
dropped slice; Dice of the 3D mask before the click, after it under ``edit`` and ``extend``.

    PYTHONPATH=$PWD python benchmarks/clicks_extend_stop.py ../shared/data/ct_lesion \
        --cache-dir /tmp/ext/emb_lesion
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


def run_case(pred, vol, gt: np.ndarray) -> tuple[float, float, float] | None:
    """(Dice before the click, after it, the first run's Dice) for one object; None when
    fewer than 3 slices are segmented."""
    from sam_med.prompts import ObjectPrompts, Point, box_from_mask

    box = box_from_mask(gt)
    first = pred.predict(vol, ObjectPrompts(box=box))
    full = dice(first.mask, gt)
    st = first.state
    ks = st.mask_slices()
    if len(ks) < 3:
        return None
    drop = ks[-(len(ks) // 3 or 1):]
    for z in drop:
        st.slices.pop(z)
    before = dice(pred.volume_mask(st), gt)
    ax = st.axis
    with_gt = [z for z in drop if np.take(gt, z, axis=ax).any()]
    if not with_gt:
        return None
    z = with_gt[len(with_gt) // 2]
    plane = np.take(gt, z, axis=ax)
    pts = np.argwhere(plane)
    c = pts[np.argmin(((pts - pts.mean(0)) ** 2).sum(1))]
    ijk = [float(v) for v in c]
    ijk.insert(ax, float(z))
    r = pred.predict(vol, ObjectPrompts(box=box, points=[Point(tuple(ijk), True)]), previous=first)
    return before, dice(r.mask, gt), full


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args(argv)
    from sam_med.evaluation.datasets import open_dataset
    from sam_med.predictors.slicewise import SliceWisePredictor

    preds = {rule: SliceWisePredictor(cache_dir=args.cache_dir, click_rule=rule) for rule in ("edit", "extend")}
    print("| case | label | full run | early stop | + click, edit | + click, extend |")
    print("|---|---|---|---|---|---|")
    rows = []
    for case in open_dataset(args.data).cases:
        vol, label = case.load()
        for value, _ in case.objects(label):
            gt = label.array == value
            got = {rule: run_case(p, vol, gt) for rule, p in preds.items()}
            if got["edit"] is None or got["extend"] is None:
                continue
            b, e, full = got["edit"]
            x = got["extend"][1]
            rows.append((b, e, x))
            print(f"| {case.case_id} | {value} | {full:.4f} | {b:.4f} | {e:.4f} | {x:.4f} |")
    if rows:
        m = np.mean(rows, axis=0)
        print(f"| mean | | | {m[0]:.4f} | {m[1]:.4f} | {m[2]:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
