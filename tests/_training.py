"""Shared helpers for the training tests (no tests here): a tiny registered 2D model.

The tiny model has LiteMedSAM's layout and preprocessing (its config is lite_medsam.yaml
with small TinyViT stages and random weights), so the training mechanics are exercised
end to end on real ct_lesion slices in seconds.
"""

from __future__ import annotations

from pathlib import Path

import torch

from _helpers import TINY_ARGS, write_tiny_model  # tests/ is on sys.path

REPO = Path(__file__).resolve().parents[1]
CT_LESION = REPO.parent / "shared" / "data" / "ct_lesion"
CASES = sorted(p.name[:-4] for p in CT_LESION.glob("*.npz"))


def build_tiny(seed: int = 0):
    from sam_med.models.build import build_tinyvit_sam

    torch.manual_seed(seed)
    return build_tinyvit_sam(**TINY_ARGS).eval()


def make_tiny_model(models_dir: Path, name: str = "tiny_sam") -> str:
    """Write ``<name>.pt`` + ``<name>.yaml`` into ``models_dir`` (put it on $SAM_MED_CONFIGS)."""
    write_tiny_model(models_dir, name, seed=0)  # the weights of build_tiny(0)
    return name


def tiny_finetune_config(out_dir: Path, mode: str = "decoder", **extra) -> dict:
    cfg = {
        "name": f"tiny_ft_{mode}", "base_model": "tiny_sam", "mode": mode, "seed": 3, "num_threads": 1,
        "data": {"dataset": str(CT_LESION), "train_cases": [CASES[1]], "val_cases": [],
                 "max_slices_per_case": 4},
        "optim": {"lr": 1e-3, "epochs": 2, "batch_size": 2},
        "prompts": {"click_prob": 0.5, "max_clicks": 2},
        "eval": {"enabled": False},
        "export": {"enabled": False},
        "out_dir": str(out_dir),
    }
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k].update(v)
        else:
            cfg[k] = v
    return cfg
