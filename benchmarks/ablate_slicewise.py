"""Accuracy of slice-wise variants on the CT-lesion cases (tight 3D box of ``gts``).

Usage::

    python benchmarks/ablate_slicewise.py [--cache-dir .cache/emb] [--data ../shared/data/ct_lesion]

Embeddings go through the on-disk cache, so only the first run pays the encoder;
each variant then costs decoder time only. Prints Dice / NSD (2 mm) per case and
the mean per variant. Timing lives in ``bench_slicewise.py``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

VARIANTS = {
    "whole slice": dict(zoom="never", mask_prompt=False),
    "whole + mask prompt": dict(zoom="never", mask_prompt=True),
    "zoom always": dict(zoom="always", mask_prompt=False),
    "zoom always + mask prompt": dict(zoom="always", mask_prompt=True),
    "zoom auto vs whole slice": dict(context=None),
    "zoom auto vs whole + mask prompt": dict(context=None, mask_prompt=True),
    "zoom auto vs context 3": dict(context=3.0),
    "zoom auto vs context 4": dict(context=4.0),
    "zoom auto vs context 6": dict(context=6.0),
    "zoom auto vs context 8": dict(context=8.0),
    "zoom auto vs context 5 (default)": dict(),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ct_lesion"))
    ap.add_argument("--cache-dir", default=str(ROOT / ".cache" / "emb"))
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS))
    ap.add_argument("--json", help="write results here")
    args = ap.parse_args(argv)

    from sam_med import io
    from sam_med.evaluation.metrics import dice, nsd
    from sam_med.predictors.embedding_cache import EmbeddingCache
    from sam_med.predictors.slicewise import SliceWisePredictor
    from sam_med.prompts import ObjectPrompts, box_from_mask

    cases = sorted(glob.glob(os.path.join(args.data, "*.npz")))
    cache = EmbeddingCache(cache_dir=args.cache_dir)
    loaded = [io.read_npz(f) for f in cases]
    results = {}
    for name in args.variants:
        pred = SliceWisePredictor("lite_medsam", cache=cache, **VARIANTS[name])
        rows = []
        for f, c in zip(cases, loaded):
            g = c.label.array > 0
            r = pred.predict(c.image, ObjectPrompts(box=box_from_mask(g)))
            view = f"{r.info['zoom_crop']} @ {r.info['input_size']}"
            rows.append((Path(f).stem, dice(r.mask, g), nsd(r.mask, g, c.image.spacing), view))
        results[name] = rows
        print(f"\n{name}")
        for stem, d, n, crop in rows:
            print(f"  {stem:<34} Dice {d:.3f}  NSD {n:.3f}  view {crop}")
        print(f"  {'mean':<34} Dice {np.mean([r[1] for r in rows]):.3f}  NSD {np.mean([r[2] for r in rows]):.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
