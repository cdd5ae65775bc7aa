"""Export fine-tuned weights as a loadable, named model ("domain weights").

Writes into the user models directory (``export.models_dir``, else the first entry of
``$SAM_MED_CONFIGS``, else ``~/.config/sam-med/models``):

* ``<name>.pt``: plain tensors (``torch.load(weights_only=True)``):
  decoder mode -> the mask decoder (+ prompt encoder) tensors only; lora mode -> the LoRA
  adapters (``<module>.lora_A``/``.lora_B``) + the mask decoder; full -> the whole model;
  prompt -> the prompt tokens only (``prompt_tuning.*``, :mod:`.prompt_tuning`).
* ``<name>.yaml``: the base model's config (same architecture and *the same intensity and
  slice preprocessing*, copied verbatim) with ``name``, ``checkpoint`` (absolute path +
  sha256 of the file above), ``base_model`` (name + sha256 of the weights it was trained
  from), ``delta`` (``kind: partial | lora | prompt``, absent for full weights), for prompt
  tuning a ``prompt_tuning: {tokens, dense_bias}`` section, and a ``training``
  section: config, data summary, trainable parameters, Dice before/after, wall time.

:func:`sam_med.models.load_model` finds it by name (the directory is on the config search
path, and the file is also registered in-process) and, for a delta, loads the base
weights (sha256-checked) and applies the delta (``registry._load_base_plus_delta``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .lora import lora_state_dict

__all__ = ["export_finetuned", "user_models_dir", "delta_state_dict"]


def user_models_dir(explicit: str | os.PathLike | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    env = [p for p in os.environ.get("SAM_MED_CONFIGS", "").split(os.pathsep) if p]
    if env:
        return Path(env[0]).expanduser()
    return Path.home() / ".config" / "sam-med" / "models"


def delta_state_dict(model: torch.nn.Module, mode: str, train_prompt_encoder: bool = False) -> dict:
    """The tensors an export of ``mode`` saves (keys: names in the plain base model)."""
    if mode == "prompt":
        from ..models.prompt_tokens import prompt_state_dict
        return prompt_state_dict(model)
    if mode == "full":
        from .lora import remove_lora
        import copy
        m = copy.deepcopy(model)
        remove_lora(m)
        return {k: v.detach().clone().contiguous() for k, v in m.state_dict().items()}
    sd = {f"mask_decoder.{k}": v.detach().clone() for k, v in model.mask_decoder.state_dict().items()}
    if train_prompt_encoder:
        sd.update({f"prompt_encoder.{k}": v.detach().clone() for k, v in model.prompt_encoder.state_dict().items()})
    if mode == "lora":
        sd.update(lora_state_dict(model))
    return {k: v.contiguous() for k, v in sd.items()}


def export_finetuned(trainer, summary: dict) -> dict:
    """Write weights + config for ``trainer``'s (best) model; returns paths and sha256."""
    import yaml

    from ..io.atomic import atomic_torch_save, atomic_write_text
    from ..models.checkpoint import sha256_file
    from ..models.registry import clear_model_cache, find_model_config, register_model_config

    cfg = trainer.cfg
    name = str(cfg["name"])
    mode = cfg["mode"]
    out = user_models_dir(cfg["export"].get("models_dir"))
    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"{name}.pt"
    atomic_torch_save(delta_state_dict(trainer.model, mode, bool(cfg["train_prompt_encoder"])), weights)
    digest = sha256_file(weights)

    base_path = find_model_config(cfg["base_model"])
    model_cfg = yaml.safe_load(Path(base_path).read_text()) or {}
    model_cfg["name"] = name
    if cfg["data"].get("sources"):
        data_name = "sources " + ", ".join(str(s.get("name")) for s in cfg["data"]["sources"])
    else:
        data_name = Path(str(cfg["data"]["dataset"])).name
    model_cfg["description"] = (f"{cfg['base_model']} fine-tuned ({mode}) on "
                                f"{data_name}: cases {', '.join(trainer.train_ids)}")
    model_cfg["checkpoint"] = {"path": str(weights.resolve()), "file_name": weights.name, "sha256": digest,
                               "size_bytes": weights.stat().st_size}
    model_cfg["base_model"] = {"name": cfg["base_model"], "sha256": trainer.lm.sha256}
    if mode == "lora":
        lc = cfg["lora"]
        model_cfg["delta"] = {"kind": "lora", "lora_rank": int(lc["rank"]), "lora_alpha": float(lc["alpha"]),
                              "lora_scaling": float(lc["alpha"]) / int(lc["rank"]),
                              "lora_modules": sorted(trainer.lora_names)}
    elif mode == "decoder":
        model_cfg["delta"] = {"kind": "partial"}
    elif mode == "prompt":
        pt = trainer.model.prompt_tuning
        model_cfg["delta"] = {"kind": "prompt"}
        model_cfg["prompt_tuning"] = {"tokens": int(pt.num_tokens), "dense_bias": pt.dense_bias is not None}
    else:
        model_cfg.pop("delta", None)
    model_cfg["training"] = {
        "mode": mode, "seed": cfg["seed"], "world_size": summary.get("world_size"),
        "dataset": str(cfg["data"]["dataset"]) if cfg["data"].get("dataset") else data_name,
        "train_cases": trainer.train_ids, "val_cases": trainer.val_ids,
        **({"sources": summary["sources"], "heldout": cfg["data"].get("heldout")} if summary.get("sources") else {}),
        "train_slices": len(trainer.items), "trainable_params": trainer.n_trainable,
        "optim": dict(cfg["optim"]), "prompts": dict(cfg["prompts"]), "best_epoch": summary.get("best_epoch"),
        "metrics": {"protocol": cfg["eval"].get("protocol", "box"), "metric": "3D Dice, slice-wise predictor",
                    "before": summary.get("dice_before"), "after": summary.get("dice_after")},
        "wall_s": round(float(summary.get("wall_s", 0.0)), 1),
    }
    cfg_path = out / f"{name}.yaml"
    atomic_write_text(cfg_path, f"# written by sam-med finetune ({mode}) from {cfg.get('config_path', 'a config dict')}\n"
                      + yaml.safe_dump(model_cfg, sort_keys=False))
    if cfg["export"].get("register", True):
        register_model_config(cfg_path, name)
    clear_model_cache()
    trainer.log(f"[finetune] exported {name}: {weights} ({weights.stat().st_size / 1e6:.1f} MB), {cfg_path}")
    return {"name": name, "weights": str(weights), "config": str(cfg_path), "sha256": digest}
