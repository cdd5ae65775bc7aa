"""Fine-tuning loop: decoder-only, LoRA (+decoder) or full, on 2D slice models.

Config (YAML, see ``configs/finetune/*.yaml`` and :data:`DEFAULTS`), run with
``sam-med finetune --config FILE [key=value ...]`` or :func:`train`::

    from sam_med.training import load_config, train
    summary = train(load_config("configs/finetune/lite_medsam_ct_lesion_decoder.yaml",
                                ["optim.epochs=2"]))

Modes and what trains:

* ``decoder``: mask decoder (+ prompt encoder with ``train_prompt_encoder``); the image
  encoder is frozen, so every training slice is encoded **once** into the slice-wise
  predictor's :class:`EmbeddingCache` (the same entries the evaluation reuses) and each
  epoch costs decoder time only. Image augmentations are then impossible (they would
  change the encoder input); prompts are still re-drawn every epoch.
* ``lora``: rank-r adapters on the image encoder's attention ``qkv`` (``lora.include``
  picks the stages) + the mask decoder; augmented images go through the encoder each step.
* ``full``: everything.
* ``prompt``: K learnable prompt tokens (+ optionally a dense bias) appended to the decoder's
  sparse prompts, everything else frozen (:mod:`.prompt_tuning`); embeddings cached as in
  ``decoder`` mode.

Loss: MONAI ``DiceCELoss(sigmoid=True)`` on the low-res logits against the label on the
model grid. Prompts per sample: the label's box on the source slice with jitter
(:func:`~sam_med.training.prompts.jitter_box`), mapped by the model's box rule; with
probability ``prompts.click_prob`` also 1..``max_clicks`` corrective clicks simulated on
the model's own current prediction (so the decoder learns refinement).

Data: ``data.dataset`` (one evaluation dataset, ``train_cases``/``val_cases``) or
``data.sources`` (several datasets/volumes, slicing axes, a slice cap per object and axis,
augmented copies encoded once; ``data.heldout`` is checked to share no object with them; see
:mod:`.sources`). With ``prompts.iterative`` the clicks are simulated SAM-style with a loss at
every round (:meth:`Trainer._iterative_loss`; ``configs/finetune/lite_medsam_clicks.yaml``).

Determinism: ``seed`` fixes the LoRA init, the sample order (per epoch) and every
sample's augmentation + prompts (per (seed, epoch, index)), independent of the number of
processes. Checkpoints: ``out_dir/last.pt`` after every epoch (and every
``checkpoint_every_steps``), holding trainable tensors, optimizer state, position and
history; a rerun with ``resume: true`` continues from it and ends with the same weights as
an uninterrupted run. Validation: the evaluation harness (``evaluate_case``, the
slice-wise predictor, box protocol) on ``data.val_cases`` before training and after each
epoch; the best epoch (mean 3D Dice; the untrained model counts as epoch 0) is kept in
``best.pt`` and exported (:mod:`.export`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import SamMedError
from .checkpointing import CheckpointMixin
from .config import DEFAULTS, apply_overrides, config_identity, load_config, resolve_dataset
from .data import SliceDataset, extract_slices
from .ddp import DistInfo, barrier, broadcast_parameters, init_distributed, shutdown
from .losses import SampleLossMixin
from .loop import EpochLoopMixin
from .trainable import encoder_frozen, set_trainable, trainable_parameters
from .validation import ValidationMixin

__all__ = ["DEFAULTS", "load_config", "apply_overrides", "train", "Trainer", "trainable_parameters",
           "set_trainable"]


class Trainer(SampleLossMixin, EpochLoopMixin, CheckpointMixin, ValidationMixin):
    """One fine-tuning run of a config from :func:`load_config` (see the module docstring):
    :meth:`setup` loads the model and data, :meth:`run` trains, validates and exports."""

    def __init__(self, cfg: dict, log: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.dist: DistInfo = init_distributed(cfg["device"])
        self.log = (log or print) if self.dist.is_main else (lambda *_: None)
        self.device = torch.device(cfg["device"] if not str(cfg["device"]).startswith("cuda")
                                   else f"cuda:{self.dist.local_rank}" if self.dist.enabled else cfg["device"])
        self.out_dir = Path(str(cfg["out_dir"]).format(name=cfg["name"])).expanduser()
        amp = str(cfg.get("amp", "auto")).lower()
        if amp == "auto":
            amp = "bf16" if self.device.type == "cuda" and torch.cuda.is_bf16_supported() else "off"
        self.amp_dtype = torch.bfloat16 if amp in ("bf16", "bfloat16") else None

    # -------------------------------------------------------------- helpers
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    # -------------------------------------------------------------- setup
    def setup(self) -> None:
        from ..evaluation import open_dataset
        from ..models import load_model
        from ..predictors.embedding_cache import EmbeddingCache
        from ..predictors.slicewise import SliceWisePredictor

        cfg, dc = self.cfg, self.cfg["data"]
        seed = int(cfg["seed"])
        if cfg.get("num_threads"):
            torch.set_num_threads(int(cfg["num_threads"]))
        torch.manual_seed(seed)
        np.random.seed(seed % (2**32))
        self.lm = load_model(cfg["base_model"], device=self.device, autocast_dtype=None)
        self.sources = None
        if dc.get("sources"):
            from .sources import check_disjoint, parse_sources, source_cases

            self.sources = parse_sources(dc["sources"], "data.sources")
            check_disjoint(self.sources, parse_sources(dc.get("heldout"), "data.heldout"))
            vsrc = parse_sources(dc.get("val_sources"), "data.val_sources")
            check_disjoint(self.sources, vsrc)
            self.ds = None
            self.cases = {f"{s.name}:{c.case_id}": c for s in vsrc for c in source_cases(s)}
            train_ids = [f"{s.name}:{c.case_id}" for s in self.sources for c in source_cases(s)]
            val = list(self.cases)
        else:
            self.ds = open_dataset(resolve_dataset(dc["dataset"]), labels=dc.get("labels"))
            self.cases = {c.case_id: c for c in self.ds.cases}
            val = list(dc.get("val_cases") or [])
            train_ids = list(dc["train_cases"]) if dc.get("train_cases") else [c for c in self.cases if c not in val]
            overlap = set(train_ids) & set(val)
            if overlap:
                raise SamMedError(f"cases both in train_cases and val_cases: {sorted(overlap)}")
            for cid in train_ids + val:
                if cid not in self.cases:
                    raise SamMedError(f"case {cid!r} not in {self.ds.root}; available: {sorted(self.cases)}")
        self.train_ids, self.val_ids = train_ids, val

        self.model = copy.deepcopy(self.lm.model).to(self.device).eval()  # no dropout/BN updates
        self.lora_names = set_trainable(self.model, cfg["mode"], cfg.get("lora"), bool(cfg["train_prompt_encoder"]),
                                        cfg.get("prompt_tuning"), seed=seed)
        self.init_trainable = {n: p.detach().clone() for n, p in trainable_parameters(self.model)}
        broadcast_parameters([p for _, p in trainable_parameters(self.model)], self.dist)
        self.n_trainable = sum(p.numel() for _, p in trainable_parameters(self.model))
        self.n_total = sum(p.numel() for p in self.model.parameters())

        cache_emb = dc.get("cache_embeddings", "auto")
        self.cached = encoder_frozen(cfg["mode"]) if cache_emb == "auto" else bool(cache_emb)
        if self.cached and not encoder_frozen(cfg["mode"]):
            raise SamMedError("data.cache_embeddings needs a frozen encoder (mode: decoder or prompt)")
        cdir = dc.get("embedding_cache_dir")
        self.cache = EmbeddingCache(max_bytes=4 << 30, cache_dir=Path(cdir).expanduser() if cdir else None)
        pred = SliceWisePredictor(loaded=self.lm, cache=self.cache, **dict(cfg["eval"].get("predictor") or {}))
        t0 = time.perf_counter()
        enc0 = self.cache.encoded
        if self.sources is not None:
            from .sources import extract_source_slices

            self.items = extract_source_slices(self.sources, self.lm, self.cache, with_embeddings=self.cached,
                                               predictor_options=dict(cfg["eval"].get("predictor") or {}),
                                               log=self.log)
        else:
            self.items = extract_slices(self.ds, self.lm, train_ids, predictor=pred,
                                        max_slices_per_case=dc.get("max_slices_per_case"),
                                        with_embeddings=self.cached)
        if not self.items:
            raise SamMedError("no labelled slices in the training cases")
        self.extract_s = time.perf_counter() - t0
        self.n_encoded = self.cache.encoded - enc0
        self.log(f"[finetune] {len(self.items)} training slices from {len(train_ids)} case(s)"
                 f"{' (embeddings cached)' if self.cached else ''} in {self.extract_s:.1f}s "
                 f"({self.n_encoded} encoded now)")
        aug = dict(dc.get("augment") or {})
        if self.cached and aug.get("enabled", True):
            self.log("[finetune] cached embeddings: image augmentations are off (prompts still vary)")
            aug["enabled"] = False
        self.data = SliceDataset(self.items, self.lm.preprocess, aug, seed=seed)
        self._by_slice = {self._slice_key(it, it["slice"]): i for i, it in enumerate(self.items)}
        oc = cfg["optim"]
        self.params = [p for _, p in trainable_parameters(self.model)]
        name = str(oc.get("name", "adamw")).lower()
        if name == "adamw":
            self.opt = torch.optim.AdamW(self.params, lr=float(oc["lr"]), weight_decay=float(oc["weight_decay"]))
        elif name == "sgd":
            self.opt = torch.optim.SGD(self.params, lr=float(oc["lr"]), momentum=float(oc.get("momentum", 0.9)),
                                       weight_decay=float(oc["weight_decay"]))
        else:
            raise SamMedError(f"optim.name must be adamw or sgd, got {name!r}")
        from monai.losses import DiceCELoss
        self.loss_fn = DiceCELoss(sigmoid=True)
        self.identity = config_identity(cfg)
        self.step, self.start_epoch, self.start_batch = 0, 0, 0
        self.best: dict = {"epoch": 0, "val_dice": None}
        self.history: list[dict] = []
        self.early_stopped_at: int | None = None  # epoch count at an eval.patience stop

    def _before_after_ids(self) -> list[str]:
        """Cases evaluated before and after training: the validation cases, and the training
        cases with ``eval.train_before_after`` (those that can be evaluated: not data.sources)."""
        if not self.cfg["eval"].get("train_before_after", True):
            return list(self.val_ids)
        return [c for c in self.train_ids if c in self.cases] + list(self.val_ids)

    # -------------------------------------------------------------- main
    def run(self) -> dict:
        t_start = time.perf_counter()
        self.setup()
        cfg, ec = self.cfg, self.cfg["eval"]
        self._try_resume()
        fresh = self.step == 0 and self.start_epoch == 0 and self.start_batch == 0
        do_eval = bool(ec.get("enabled", True)) and bool(self.val_ids)
        before: dict[str, dict[str, float]] = {}
        if self.dist.is_main and fresh and ec.get("enabled", True):
            t0 = time.perf_counter()
            ids = self._before_after_ids()
            d = self._eval_cases(self.lm.model, ids, False, "base")
            before = {"train": {c: d[c] for c in self.train_ids if c in d}, "val": {c: d[c] for c in self.val_ids}}
            if self.val_ids:
                self.best = {"epoch": 0, "val_dice": float(np.mean(list(before["val"].values())))}
            self.history.append({"epoch": 0, "step": 0, "val_dice": self.best["val_dice"], "before": before,
                                 "eval_s": time.perf_counter() - t0})
            self.log(f"[finetune] before: {json.dumps(before)} ({time.perf_counter() - t0:.0f}s)")
            self._save_last(0, 0)
        barrier(self.dist)

        stopped = self._train_epochs(do_eval)
        world = self.dist.world_size

        summary: dict[str, Any] = {"name": cfg["name"], "mode": cfg["mode"], "base_model": cfg["base_model"],
                                   "base_sha256": self.lm.sha256, "trainable_params": self.n_trainable,
                                   "total_params": self.n_total, "world_size": world, "steps": self.step,
                                   "stopped_early": stopped, "out_dir": str(self.out_dir),
                                   "train_cases": self.train_ids, "val_cases": self.val_ids,
                                   "train_slices": len(self.items), "extract_s": round(self.extract_s, 1),
                                   "encoded_now": self.n_encoded, "early_stopped_at": self.early_stopped_at}
        if self.sources is not None:
            summary["sources"] = _sources_summary(self.items)
        if stopped:
            summary["wall_s"] = time.perf_counter() - t_start
            shutdown(self.dist)
            return summary
        if self.dist.is_main:
            # the selected weights: best held-out epoch (epoch 0 = the base model, unchanged)
            best_file = self.out_dir / "best.pt"
            if self.best["epoch"] == 0:
                self._load_state({n: p for n, p in self._base_trainable().items()})
            elif best_file.is_file():
                self._load_state(torch.load(best_file, map_location="cpu", weights_only=True)["trainable"])
            summary["best_epoch"] = self.best["epoch"]
            # prompt tokens are not the identity at init: epoch 0 selected = the base model itself
            base_itself = self.best["epoch"] == 0 and getattr(self.model, "prompt_tuning", None) is not None
            before = next((h["before"] for h in self.history if h.get("epoch") == 0 and "before" in h), None)
            summary["history"] = [{k: v for k, v in h.items() if k != "before"} for h in self.history]
            if ec.get("enabled", True):
                t0 = time.perf_counter()
                ids = self._before_after_ids()
                d = self._eval_cases(self.lm.model if base_itself else self.model, ids,
                                     not encoder_frozen(cfg["mode"]), "final")
                summary["dice_before"] = before
                summary["dice_after"] = {"train": {c: d[c] for c in self.train_ids if c in d},
                                         "val": {c: d[c] for c in self.val_ids}}
                summary["final_eval_s"] = time.perf_counter() - t0
            summary["wall_s"] = time.perf_counter() - t_start
            if cfg["export"].get("enabled", True) and base_itself:
                self.log("[finetune] not exported: no epoch beat the base model (best epoch 0), and prompt "
                         "tokens cannot express the base itself; use the base model")
            elif cfg["export"].get("enabled", True):
                from .export import export_finetuned
                summary["export"] = export_finetuned(self, summary)
            summary["wall_s"] = time.perf_counter() - t_start
            (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        barrier(self.dist)
        shutdown(self.dist)
        return summary


def _sources_summary(items: list[dict]) -> dict:
    """Slices per source and axis, objects per source (for the summary and the export)."""
    out: dict[str, dict] = {}
    for it in items:
        d = out.setdefault(str(it.get("source")), {"slices": 0, "axes": {}, "objects": set(), "copies": set()})
        d["slices"] += 1
        d["axes"][int(it["axis"])] = d["axes"].get(int(it["axis"]), 0) + 1
        d["objects"].add(f"{it['case_id']}:{it['object']}")
        d["copies"].add(it.get("copy") or "original")
    return {k: {"slices": v["slices"], "axes": v["axes"], "objects": sorted(v["objects"]),
                "copies": sorted(v["copies"])} for k, v in out.items()}


def train(cfg: dict, log: Callable[[str], None] | None = None) -> dict:
    """Run a fine-tuning config (see :func:`load_config`); returns the summary dict.
    ``recipe: interactive`` runs :func:`~sam_med.training.interactive_train.train_interactive`."""
    if cfg.get("recipe") == "interactive":
        from .interactive_train import train_interactive
        return train_interactive(cfg, log)
    return Trainer(cfg, log).run()
