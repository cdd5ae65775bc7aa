"""The 2D model's ceiling under the CVPR25 key-slice boxes (issue #15).

For every class of the CVPR25 cases, this script compares two masks with the ground truth:

* **box step**: what the slice-wise engine makes from the official key-slice box (the protocol's
  step 1, as ``sam-med evaluate --protocol cvpr25`` runs it);
* **oracle**: every labelled slice decoded from *its own tight ground-truth box*, in the same
  view (crop, encoder input) the engine chose for that class. No propagation, no stop rule, no
  box search: the best a box-prompted 2D model can do slice by slice with perfect boxes.

Where the oracle is not above the target, propagation is not what limits the result: the 2D
model is, and only clicks (or other weights) can close the gap.

    python benchmarks/oracle_boxes.py ../shared/cvpr25/cases [--option cache_dir=DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sam_med.cli.evaluate import make_factory  # noqa: E402
from sam_med.evaluation.metrics import dice  # noqa: E402
from sam_med.evaluation.cvpr25.cases import open_cases  # noqa: E402
from sam_med.evaluation.cvpr25.protocol import InProcessStepper  # noqa: E402
from sam_med.predictors.planes import PlaneGeometry, mask_bbox  # noqa: E402


def oracle_mask(pred, st, gt: np.ndarray) -> np.ndarray:
    """Each slice of ``gt`` (volume grid, bool) decoded from its own tight box in ``st``'s view."""
    geo = PlaneGeometry(st.axis, gt.shape)
    out = np.zeros_like(gt)
    for k in range(geo.n_slices):
        g = geo.slice_of(gt, k)
        if g.any():
            emb = pred.view_embeddings(st, geo, [k])[k]
            geo.set_slice(out, k, pred.decode_slice(geo, k, st.view, emb, mask_bbox(g)).mask)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cases")
    ap.add_argument("--option", action="append", default=[], help="a slice-wise option KEY=VALUE")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args(argv)
    opts = dict(kv.split("=", 1) for kv in args.option)
    pred = make_factory("lite_medsam", "cpu", opts)()
    rows = []
    for cs in open_cases(args.cases)[1]:
        case = cs.load()
        stepper = InProcessStepper(case, pred)
        stepper.boxes(list(case.boxes))
        gts = np.ascontiguousarray(case.gts.transpose(2, 1, 0))  # (z, y, x) -> the volume's (x, y, z)
        for c, obj in sorted(stepper.session.objects.items()):
            g = gts == c
            st = obj.result.state
            rows.append({"case": cs.case_id, "class": int(c), "slices": int(g.any(axis=(0, 1)).sum()),
                         "view": "crop" if st.crop is not None else "whole", "res": st.res or pred.size,
                         "box_step": round(float(dice(obj.mask, g)), 4), "oracle": round(float(dice(oracle_mask(pred, st, g), g)), 4)})
            print(json.dumps(rows[-1]), flush=True)
    print("\n| case | class | view | box step | oracle (tight box per slice) |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['class']} | {r['view']} {r['res']} | {r['box_step']:.4f} | {r['oracle']:.4f} |")
    by: dict[str, list] = {}
    for r in rows:
        by.setdefault(r["case"], []).append(r)
    print("\n| case | box step | oracle |\n|---|---|---|")
    for cid, rs in by.items():
        print(f"| {cid} | {np.mean([r['box_step'] for r in rs]):.4f} | {np.mean([r['oracle'] for r in rs]):.4f} |")
    les = [r for r in rows if r["case"].startswith("CT_Lesion")]
    if les:
        print(f"| CT lesions, mean | {np.mean([r['box_step'] for r in les]):.4f} | {np.mean([r['oracle'] for r in les]):.4f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
