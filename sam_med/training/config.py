"""Fine-tune configuration: :data:`DEFAULTS`, YAML + ``key=value`` overrides, checks, identity.

A config is a nested dict: ``DEFAULTS <- YAML file (or data) <- overrides`` (see
:func:`load_config`); :func:`config_identity` hashes the keys a resumed run must share.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

from ..errors import SamMedError
from .data import DEFAULT_AUGMENT
from ..models.prompt_tokens import PROMPT_DEFAULTS

from .paths import REPO_ROOT, resolve_dataset

__all__ = ["DEFAULTS", "REPO_ROOT", "apply_overrides", "config_identity", "load_config", "resolve_dataset"]


DEFAULTS: dict[str, Any] = {
    "name": None,                 # exported model name (required)
    # slices: the slice trainer (sam_med.training.trainer); interactive: SAM's click-simulation
    # recipe on cached whole-slice embeddings (sam_med.training.interactive, data.click_sets)
    "recipe": "slices",
    "base_model": "lite_medsam",
    "mode": "decoder",            # decoder | lora | full | prompt
    "train_prompt_encoder": False,
    "seed": 0,
    "device": "cpu",
    "num_threads": None,          # torch intra-op threads (None = torch's default); 1 on a shared CPU
    "amp": "auto",                # auto (bf16 on CUDA when supported, fp32 on CPU) | bf16 | off
    "data": {
        "dataset": None,          # anything sam_med.evaluation.open_dataset reads
        # or several datasets/volumes, axes, slice caps, encoded copies (sam_med.training.sources);
        # heldout: the same form, never trained on (checked for overlap; read by benchmarks)
        "sources": None,
        "heldout": None,
        # val_sources: the same form as sources (other scans), validated with the box protocol
        # after each epoch like data.val_cases (best epoch kept, eval.patience stops early)
        "val_sources": None,
        "labels": None,
        "train_cases": None,      # case ids; None = all cases not in val_cases
        "val_cases": [],
        "max_slices_per_case": None,
        "cache_embeddings": "auto",  # auto = on in decoder mode
        "embedding_cache_dir": None,  # on-disk store of the frozen base encoder's embeddings
        "click_sets": None,       # recipe interactive: sam_med.training.click_data.parse_click_sets
        "augment": dict(DEFAULT_AUGMENT),
    },
    # mask_prompt_prob: also give the decoder the low-res logits of a neighbouring slice as its
    # dense prompt, as the slice-wise predictor does while propagating (mask_prompt=True)
    # iterative: SAM-style click simulation with a loss at every iteration (box, then box + 1,
    # 2, ... clicks; see Trainer._iterative_loss); click_point: where a click lands in the largest
    # error component (random | center = its deepest pixel, the evaluation's rule | mixed);
    # click_mask_input: also pass the previous iteration's low-res logits as the dense prompt
    # (true/false, or the probability per sample)
    "prompts": {"box_outward_px": 4.0, "box_inward_px": 1.0, "click_prob": 0.0, "max_clicks": 2,
                "mask_prompt_prob": 0.0, "iterative": False, "click_point": "random",
                "click_mask_input": False},
    # schedule: constant | cosine (from lr to 0 over all steps, after warmup_steps linear warm-up)
    "optim": {"name": "adamw", "lr": 1e-5, "weight_decay": 0.0, "epochs": 3, "batch_size": 4, "grad_clip": 1.0,
              "samples_per_epoch": None, "schedule": "constant", "warmup_steps": 0},
    # mode prompt: K learnable tokens appended to the decoder's sparse prompts, all else frozen
    # (sam_med.models.prompt_tokens); dense_bias: also a learnable bias on the dense embedding
    "prompt_tuning": dict(PROMPT_DEFAULTS),
    "lora": {"rank": 4, "alpha": 4.0, "targets": ["attn.qkv"], "include": ["image_encoder"]},
    # patience: stop after this many validations without a better validation Dice (None = never;
    # sam_med.training.early_stop)
    "eval": {"enabled": True, "protocol": "box", "every_epochs": 1, "train_before_after": True,
             "predictor": {}, "patience": None},
    # recipe interactive (sam_med.training.interactive.INTERACTIVE_DEFAULTS fills the rest)
    "interactive": {},
    "checkpoint_every_steps": 0,
    "progress": True,              # a tqdm bar over each epoch's batches (rank 0; off when stderr is not a terminal)
    "stop_after_steps": None,     # stop (after checkpointing) at this global step: tests / time boxes
    "resume": True,
    "out_dir": "~/.cache/sam-med/finetune/{name}",
    "export": {"enabled": True, "models_dir": None, "register": True},
}
#: keys that may differ between an interrupted run and its resumption
_RESUME_FREE = ("stop_after_steps", "resume", "export", "eval", "device")



def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def apply_overrides(cfg: dict, overrides: Sequence[str]) -> dict:
    """``["optim.lr=1e-4", "data.val_cases=[a]"]`` -> nested updates (values parsed as YAML,
    :func:`sam_med.predictors.base.parse_option_pairs`: the CLI's one ``key=value`` syntax)."""
    from ..predictors.base import parse_option_pairs

    cfg = copy.deepcopy(cfg)
    for key, val in parse_option_pairs(overrides, what="override").items():
        node = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[parts[-1]] = val
    return cfg


def load_config(path: str | os.PathLike | None = None, overrides: Sequence[str] = (),
                data: dict | None = None) -> dict:
    """Defaults <- YAML file (or ``data``) <- ``key=value`` overrides; checked."""
    import yaml

    raw: dict = dict(data or {})
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise SamMedError(f"fine-tune config not found: {p}")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise SamMedError(f"{p}: not valid YAML: {e}") from e
        raw.setdefault("config_path", str(p.resolve()))
    unknown = set(raw) - set(DEFAULTS) - {"config_path", "description"}
    if unknown:
        raise SamMedError(f"fine-tune config: unknown keys {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    cfg = apply_overrides(_merge(DEFAULTS, raw), overrides)
    if not cfg.get("name"):
        raise SamMedError("fine-tune config needs a 'name' (the exported model's name)")
    if cfg["mode"] not in ("decoder", "lora", "full", "prompt"):
        raise SamMedError(f"mode must be decoder, lora, full or prompt, got {cfg['mode']!r}")
    if cfg["mode"] == "prompt":
        from ..models.prompt_tokens import prompt_spec
        prompt_spec(cfg.get("prompt_tuning"))
        if cfg.get("train_prompt_encoder"):
            raise SamMedError("mode prompt trains the prompt tokens only; train_prompt_encoder must be false")
    dc = cfg["data"]
    if cfg.get("recipe", "slices") not in ("slices", "interactive"):
        raise SamMedError(f"recipe must be slices or interactive, got {cfg.get('recipe')!r}")
    if cfg["recipe"] == "interactive":
        from .click_data import parse_click_sets
        from .interactive import interactive_options
        parse_click_sets(dc.get("click_sets"))
        interactive_options(cfg)
        return cfg
    if bool(dc.get("dataset")) == bool(dc.get("sources")):
        raise SamMedError("fine-tune config needs data.dataset or data.sources (one of them)")
    if dc.get("sources"):
        from .sources import parse_sources
        parse_sources(dc["sources"], "data.sources")
        parse_sources(dc.get("heldout"), "data.heldout")
        parse_sources(dc.get("val_sources"), "data.val_sources")
        if dc.get("val_cases") or dc.get("train_cases"):
            raise SamMedError("data.sources selects cases per source; train_cases/val_cases are for data.dataset")
        if cfg["eval"].get("enabled", True) and not dc.get("val_sources"):
            raise SamMedError("data.sources: set eval.enabled: false or give data.val_sources (the 3D "
                              "validation needs data.dataset or data.val_sources; benchmarks evaluate data.heldout)")
    elif dc.get("val_sources"):
        raise SamMedError("data.val_sources goes with data.sources; with data.dataset use data.val_cases")
    from .early_stop import check_patience
    check_patience(cfg["eval"].get("patience"))
    if str(cfg["prompts"].get("click_point", "random")) not in ("random", "center", "mixed"):
        raise SamMedError("prompts.click_point must be random, center or mixed")
    return cfg


def config_identity(cfg: dict) -> str:
    """16 hex digits of the settings a resumed run must share with the interrupted one."""
    d = {k: v for k, v in cfg.items() if k not in _RESUME_FREE and k != "config_path"}
    if d.get("mode") != "prompt":  # the section is read only in mode prompt (older runs resume)
        d.pop("prompt_tuning", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]
