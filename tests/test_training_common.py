"""Shared helpers for the training tests (no tests here): a tiny registered 2D model.

The tiny model has LiteMedSAM's layout and preprocessing (its config is lite_medsam.yaml
with small TinyViT stages and random weights), so the training mechanics are exercised
end to end on real ct_lesion slices in seconds.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
CT_LESION = REPO.parent / "shared" / "data" / "ct_lesion"
CASES = sorted(p.name[:-4] for p in CT_LESION.glob("*.npz"))
TINY_ARGS = {"image_size": 256, "embed_dims": [16, 32, 32, 64], "depths": [1, 1, 1, 1],
             "num_heads": [1, 1, 1, 2], "window_sizes": [7, 7, 14, 7]}


def build_tiny(seed: int = 0):
    from sam_med.models.build import build_tinyvit_sam

    torch.manual_seed(seed)
    return build_tinyvit_sam(**TINY_ARGS).eval()


def make_tiny_model(models_dir: Path, name: str = "tiny_sam") -> str:
    """Write ``<name>.pt`` + ``<name>.yaml`` into ``models_dir`` (put it on $SAM_MED_CONFIGS)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    w = models_dir / f"{name}.pt"
    torch.save(build_tiny().state_dict(), w)
    cfg = yaml.safe_load((REPO / "configs" / "models" / "lite_medsam.yaml").read_text())
    cfg["name"] = name
    cfg["architecture_args"] = dict(TINY_ARGS, image_size="@image_size")
    cfg["checkpoint"] = {"path": str(w), "sha256": None}
    (models_dir / f"{name}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
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
