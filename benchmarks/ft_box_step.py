"""The CVPR25 box step alone, base vs a fine-tune's weights, per structure: Dice, z-extent and
voxel count of the 3D result against the label (where a fine-tune's masks grow or stop along the
engine's slice-to-slice chain; benchmarks/dataengine_openkbp.md).

    python benchmarks/ft_box_step.py RUN/best.pt DATASET_CSV [--limit 2] [--cache-dir DIR] [--base lite_medsam]

``RUN/best.pt`` is a ``sam-med finetune`` run's selected weights (``{"trainable": state}``).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import pickle
import sys

import numpy as np
import torch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("weights")
    ap.add_argument("dataset")
    ap.add_argument("--limit", type=int, default=2)
    ap.add_argument("--cache-dir")
    ap.add_argument("--base", default="lite_medsam")
    a = ap.parse_args(argv)
    from sam_med.dataengine.compare import cvpr_cases
    from sam_med.evaluation.cvpr25.protocol import InProcessStepper
    from sam_med.evaluation.datasets import open_dataset
    from sam_med.models import load_model
    from sam_med.predictors.embedding_cache import EmbeddingCache
    from sam_med.predictors.slicewise import SliceWisePredictor

    base = load_model(a.base)
    ft = dataclasses.replace(base, model=copy.deepcopy(base.model))  # the registry shares base.model
    try:
        state = torch.load(a.weights, map_location="cpu", weights_only=True)["trainable"]
        res = ft.model.load_state_dict(state, strict=False)
    except (OSError, RuntimeError, KeyError, TypeError, pickle.UnpicklingError) as exc:
        print(f"ft_box_step: {a.weights}: not a sam-med finetune checkpoint ({str(exc).splitlines()[0]})", file=sys.stderr)
        return 2
    if res.unexpected_keys:
        print(f"ft_box_step: {a.weights}: not {a.base}'s tensors: {res.unexpected_keys[:3]}", file=sys.stderr)
        return 2
    cache = EmbeddingCache(cache_dir=a.cache_dir)  # decoder-only: both share the encodes
    print("| case | structure | label voxels, z | base Dice | voxels, z | fine-tuned Dice | voxels, z |")
    print("|---|---|---|---|---|---|---|")
    for c in cvpr_cases(open_dataset(a.dataset, limit=a.limit).cases):
        case = c.load()
        segs = {}
        for tag, lm in (("base", base), ("ft", ft)):
            st = InProcessStepper(case, SliceWisePredictor(loaded=lm, cache=cache))
            try:
                segs[tag] = st.boxes(case.boxes)
            finally:
                st.close()
        for cl in case.classes:
            g = case.gts == cl
            cells = [f"{int(g.sum())}, {_z(g)}"]
            for tag in ("base", "ft"):
                m = segs[tag] == cl
                cells += [f"{2 * (g & m).sum() / max(g.sum() + m.sum(), 1):.2f}", f"{int(m.sum())}, {_z(m)}"]
            print(f"| {c.case_id} | {case.class_names.get(cl, cl)} | " + " | ".join(cells) + " |")
    return 0


def _z(m: np.ndarray) -> str:
    z = np.flatnonzero(m.any(axis=(1, 2)))
    return f"z {z.min()}-{z.max()}" if z.size else "none"


if __name__ == "__main__":
    raise SystemExit(main())
