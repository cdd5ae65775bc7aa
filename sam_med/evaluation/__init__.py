"""Evaluation harness: datasets, seeded prompt protocols, MONAI metrics, runner, reports.

Typical use::

    from sam_med.evaluation import open_dataset, EvalConfig, run_evaluation
    from sam_med.predictors.factory import build_predictor

    ds = open_dataset("../shared/data/ct_lesion")
    cfg = EvalConfig(protocol="box+clicks", clicks=5)
    res = run_evaluation(ds, lambda: build_predictor("lite_medsam"), cfg, "/tmp/ev")
    res.summary["dice_mean_per_click"]

The same run from the shell: ``sam-med evaluate ../shared/data/ct_lesion
--protocol box+clicks --clicks 5 --out /tmp/ev`` (``torchrun --nproc-per-node N
-m sam_med evaluate ...`` shards the cases).
"""

from .datasets import EvalCase, EvalDataset, open_dataset, parse_labels
from .metrics import all_metrics, dice, hd95, nsd
from .protocols import PROTOCOLS, center_point, corrective_click, deepest_point, jittered_box, tight_box
from .runner import EvalConfig, RunResult, evaluate_case, run_evaluation

__all__ = [
    "EvalCase", "EvalDataset", "open_dataset", "parse_labels", "all_metrics", "dice", "hd95", "nsd",
    "PROTOCOLS", "center_point", "corrective_click", "deepest_point", "jittered_box", "tight_box",
    "EvalConfig", "RunResult", "evaluate_case", "run_evaluation",
]
