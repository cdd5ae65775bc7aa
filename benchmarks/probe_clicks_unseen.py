"""Evaluation-only probe of the click decoders on unseen anatomy (issue #27, v2): the
TotalSegmentator example CT (liver, spleen, kidneys; never trained on), 3 slices per organ,
whole-slice and engine zoom-view samples, box by the base model, then 3 CVPR25-rule clicks by
each model (the base: its own clicks, no mask prompt). Prints mean Dice per step.

    nice -n 5 .venv/bin/python benchmarks/probe_clicks_unseen.py
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np, torch, json
from sam_med.models import load_model
from sam_med.predictors.embedding_cache import EmbeddingCache
from sam_med.predictors.slicewise import SliceWisePredictor
from sam_med.training.click_data import load_click_cases
from sam_med.training.interactive_train import score_clicks
from sam_med.evaluation.datasets import EvalCase
torch.set_num_threads(2)
SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "totalseg"
base = load_model("lite_medsam")
pred = SliceWisePredictor(loaded=base, cache=EmbeddingCache(max_bytes=64<<20, cache_dir="/work/cache/emb"))
case = EvalCase(case_id="totalseg_example", image=str(SHARED / "example_ct_sm.nii.gz"),
                label=str(SHARED / "example_seg.nii.gz"), labels=(5, 1, 2, 3),
                label_names={5: "liver", 1: "spleen", 2: "kidney_r", 3: "kidney_l"})
zc = load_click_cases([case], pred, 3, source="totalseg", view="both", zoom={"extent": "volume"})
items = [(c, k, v) for c in zc for (k, v) in sorted(c.labels)]
print(len(items), "samples", [(c.view, k, c.names[v]) for c, k, v in items])
for name in ("lite_medsam", "lite_medsam_clicks_hn_hippo", "lite_medsam_clicks_hn_hippo2"):
    m = load_model(name).model
    d = score_clicks(m, base, items, 3, mask_prompt=name != "lite_medsam", base=None if name == "lite_medsam" else base.model)
    for view in ("whole", "zoom"):
        sel = [i for i, (c, k, v) in enumerate(items) if c.view == view]
        print(name, view, len(sel), np.round(d[sel].mean(0), 3).tolist())
