"""Export click-trained decoder weights as a registered model: base LiteMedSAM + a delta.

Writes ``<name>.pt`` (the prompt encoder + mask decoder tensors, fp16 with ``export.fp16``:
the registry's strict load casts them back into the fp32 model) and ``<name>.yaml`` (the base
model's config verbatim, with ``checkpoint``, ``base_model`` (name + sha256), ``delta: {kind:
partial}`` and a ``training`` section naming the data, split, licences and the command).
With ``export.package: true`` the files go inside the package (``sam_med/data/<name>.pt`` found
as the package resource ``sam_med:data/<name>.pt``, and ``sam_med/configs/models/<name>.yaml``),
otherwise into the user models directory (:func:`.export.user_models_dir`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

__all__ = ["export_click_model", "PACKAGE_ROOT"]

PACKAGE_ROOT = Path(__file__).resolve().parents[1]

_LICENCES = {
    "openkbp": "OpenKBP (ababier/open-kbp, MIT; scans from TCIA collections; Babier et al., Med Phys 48:5549, 2021)",
    "hippocampus": "MSD Task04 hippocampus (CC-BY-SA 4.0: weights trained on it are shared alike)",
}


def _rel(path) -> str:
    """``path`` relative to the checkout (the retrain command works from its root), else as given."""
    try:
        return str(Path(path).resolve().relative_to(PACKAGE_ROOT.parent))
    except (ValueError, OSError, TypeError):
        return str(path)


def export_click_model(cfg: dict, loaded, state: dict[str, torch.Tensor], summary: dict,
                       log: Callable[[str], None] | None = None) -> dict:
    """Write the weights + model config of a click-trained decoder (see the module docstring)."""
    import yaml

    from ..io.atomic import atomic_torch_save, atomic_write_text
    from ..models.checkpoint import sha256_file
    from ..models.registry import clear_model_cache, find_model_config, register_model_config
    from .export import user_models_dir

    name = str(cfg["name"])
    exp = dict(cfg.get("export") or {})
    fp16 = bool(exp.get("fp16", True))
    sd = {k: (v.half() if fp16 and v.is_floating_point() else v).contiguous() for k, v in state.items()}
    if exp.get("package"):
        weights = PACKAGE_ROOT / "data" / f"{name}.pt"
        cfg_path = PACKAGE_ROOT / "configs" / "models" / f"{name}.yaml"
    else:
        out = user_models_dir(exp.get("models_dir"))
        out.mkdir(parents=True, exist_ok=True)
        weights, cfg_path = out / f"{name}.pt", out / f"{name}.yaml"
    atomic_torch_save(sd, weights)
    digest = sha256_file(weights)
    model_cfg = yaml.safe_load(Path(find_model_config(cfg["base_model"])).read_text()) or {}
    sets = cfg["data"]["click_sets"]
    model_cfg["name"] = name
    # the base's click model answers the base's clicks; this model's own decoder answers its own
    model_cfg.pop("click_model", None)
    views = sorted({str(s.get("view", "whole")) for s in sets})
    kinds = "whole-slice" if views == ["whole"] else "whole-slice and engine zoom-view"
    model_cfg["description"] = (
        f"{cfg['base_model']} with its prompt encoder + mask decoder trained to take clicks (SAM's interactive "
        f"recipe: box, then corrective clicks in the error with the previous logits as the mask prompt) on "
        f"{summary.get('train_objects')} objects ({summary.get('train_samples')} {kinds} samples) of "
        + ", ".join(str(s["name"]) for s in sets) + "; the image encoder is the base's, untouched.")
    ck = {"file_name": weights.name, "sha256": digest, "size_bytes": weights.stat().st_size}
    if exp.get("package"):
        ck["package_resource"] = f"sam_med:data/{weights.name}"
    else:
        ck["path"] = str(weights.resolve())
    model_cfg["checkpoint"] = ck
    model_cfg["base_model"] = {"name": cfg["base_model"], "sha256": loaded.sha256}
    model_cfg["delta"] = {"kind": "partial"}
    lic = sorted({v for k, v in _LICENCES.items() if any(k in str(s.get(x) or "") for s in sets
                                                          for x in ("train", "dataset"))})
    model_cfg["training"] = {
        "recipe": "interactive", "command": f"sam-med finetune --config {_rel(cfg.get('config_path', '<config>'))}",
        "data": [{k: v for k, v in s.items() if k in ("name", "train", "val", "dataset", "n_val", "slices_per_case",
                                                       "val_slices_per_case", "share_slices_with", "limit", "view",
                                                       "max_objects", "val_max_objects", "extent", "jitter")}
                 for s in sets],
        "split": "OpenKBP train/validation files; hippocampus: the last n_val case ids are validation",
        "licences": lic, "options": summary.get("options"), "best_epoch": summary.get("best_epoch"),
        "train_cases": summary.get("train_cases"), "train_slices": summary.get("train_slices"),
        "train_samples": summary.get("train_samples"), "train_objects": summary.get("train_objects"),
        "validation": [{"epoch": h["epoch"], **{k: h["val"][k] for k in ("dice", "auc")}}
                       for h in summary.get("history", []) if "val" in h],
        "wall_s": summary.get("wall_s"),
    }
    text = (f"# written by sam-med finetune (recipe interactive) from {_rel(cfg.get('config_path', 'a config dict'))}\n"
            + yaml.safe_dump(model_cfg, sort_keys=False))
    atomic_write_text(cfg_path, text)
    if exp.get("register", True):
        register_model_config(cfg_path, name)
    clear_model_cache()
    if log:
        log(f"[finetune] exported {name}: {weights} ({weights.stat().st_size / 1e6:.1f} MB), {cfg_path}")
    return {"name": name, "weights": str(weights), "config": str(cfg_path), "sha256": digest}
