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
import dataclasses
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..errors import SamMedError
from .data import DEFAULT_AUGMENT, SliceDataset, extract_slices, sample_seed
from .ddp import DistInfo, average_gradients, barrier, broadcast_parameters, init_distributed, shutdown
from .lora import apply_lora
from .prompts import corrective_click_2d, jitter_box

__all__ = ["DEFAULTS", "load_config", "apply_overrides", "train", "Trainer", "trainable_parameters",
           "set_trainable"]

REPO_ROOT = Path(__file__).resolve().parents[2]

DEFAULTS: dict[str, Any] = {
    "name": None,                 # exported model name (required)
    "base_model": "lite_medsam",
    "mode": "decoder",            # decoder | lora | full
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
        "labels": None,
        "train_cases": None,      # case ids; None = all cases not in val_cases
        "val_cases": [],
        "max_slices_per_case": None,
        "cache_embeddings": "auto",  # auto = on in decoder mode
        "embedding_cache_dir": None,  # on-disk store of the frozen base encoder's embeddings
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
    "lora": {"rank": 4, "alpha": 4.0, "targets": ["attn.qkv"], "include": ["image_encoder"]},
    "eval": {"enabled": True, "protocol": "box", "every_epochs": 1, "train_before_after": True,
             "predictor": {}},
    "checkpoint_every_steps": 0,
    "stop_after_steps": None,     # stop (after checkpointing) at this global step: tests / time boxes
    "resume": True,
    "out_dir": "~/.cache/sam-med/finetune/{name}",
    "export": {"enabled": True, "models_dir": None, "register": True},
}
#: keys that may differ between an interrupted run and its resumption
_RESUME_FREE = ("stop_after_steps", "resume", "export", "eval", "device")


# ------------------------------------------------------------------ config
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
    if cfg["mode"] not in ("decoder", "lora", "full"):
        raise SamMedError(f"mode must be decoder, lora or full, got {cfg['mode']!r}")
    dc = cfg["data"]
    if bool(dc.get("dataset")) == bool(dc.get("sources")):
        raise SamMedError("fine-tune config needs data.dataset or data.sources (one of them)")
    if dc.get("sources"):
        from .sources import parse_sources
        parse_sources(dc["sources"], "data.sources")
        parse_sources(dc.get("heldout"), "data.heldout")
        if dc.get("val_cases") or dc.get("train_cases"):
            raise SamMedError("data.sources selects cases per source; train_cases/val_cases are for data.dataset")
        if cfg["eval"].get("enabled", True):
            raise SamMedError("data.sources: set eval.enabled: false (the 3D validation needs data.dataset; "
                              "benchmarks evaluate data.heldout)")
    if str(cfg["prompts"].get("click_point", "random")) not in ("random", "center", "mixed"):
        raise SamMedError("prompts.click_point must be random, center or mixed")
    return cfg


def _resolve_dataset(path: str) -> str:
    p = Path(path).expanduser()
    if p.exists() or p.is_absolute():
        return str(p)
    alt = REPO_ROOT / p
    return str(alt if alt.exists() else p)


def _identity(cfg: dict) -> str:
    d = {k: v for k, v in cfg.items() if k not in _RESUME_FREE and k != "config_path"}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ------------------------------------------------------------------ model parts
def set_trainable(model: torch.nn.Module, mode: str, lora_cfg: dict | None = None,
                  train_prompt_encoder: bool = False) -> list[str]:
    """Freeze/unfreeze ``model`` (a :class:`~sam_med.models.sam.Sam`) for ``mode``; LoRA
    adapters are inserted here. Returns the LoRA-wrapped module names (empty otherwise)."""
    for p in model.parameters():
        p.requires_grad_(False)
    wrapped: list[str] = []
    if mode == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return wrapped
    if mode == "lora":
        lc = {**DEFAULTS["lora"], **(lora_cfg or {})}
        wrapped = apply_lora(model, int(lc["rank"]), float(lc["alpha"]), lc["targets"], lc["include"])
    for p in model.mask_decoder.parameters():
        p.requires_grad_(True)
    if train_prompt_encoder:
        for p in model.prompt_encoder.parameters():
            p.requires_grad_(True)
    return wrapped


def trainable_parameters(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _atomic_save(obj, path: Path) -> None:
    from ..io.atomic import atomic_torch_save

    atomic_torch_save(obj, path)


class _NoPrepare:
    """Predictor proxy without ``prepare``: the harness would encode every whole slice up
    front, which the zoomed small-lesion path never uses (it encodes crops lazily)."""

    def __init__(self, inner) -> None:
        self._inner = inner

    def __getattr__(self, name):
        if name == "prepare":
            raise AttributeError(name)
        return getattr(self._inner, name)


# ------------------------------------------------------------------ trainer
class Trainer:
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

    def _eval_cases(self, model, case_ids, encoder_changed: bool, tag: str) -> dict[str, float]:
        """Mean 3D Dice per case (box protocol, slice-wise predictor) with ``model``."""
        from ..evaluation import EvalConfig, evaluate_case
        from ..predictors.embedding_cache import EmbeddingCache
        from ..predictors.slicewise import SliceWisePredictor

        ec = self.cfg["eval"]
        lm = dataclasses.replace(self.lm, model=model,
                                 sha256=self.lm.sha256 if not encoder_changed else f"{self.lm.sha256}:{tag}")
        cache = self.cache if not encoder_changed else EmbeddingCache()
        conf = EvalConfig(protocol=str(ec.get("protocol", "box")), model=self.cfg["base_model"])
        out = {}
        model.eval()
        for cid in case_ids:
            # one predictor per case (sharing the cache): SliceWisePredictor keys its bound
            # volume by id(volume), which a new case's volume can reuse after the old one is freed
            pred = SliceWisePredictor(loaded=lm, cache=cache, **dict(ec.get("predictor") or {}))
            recs = evaluate_case(self.cases[cid], _NoPrepare(pred), conf)
            bad = [r for r in recs if r.get("status") != "ok"]
            if bad:
                raise SamMedError(f"validation of {cid} failed: {bad[0].get('error')}")
            last = {}
            for r in recs:  # last step per object
                last[r["label"]] = r["dice"]
            out[cid] = float(np.mean(list(last.values())))
        return out

    def _state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in trainable_parameters(self.model)}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        params = dict(trainable_parameters(self.model))
        if set(params) != set(state):
            raise SamMedError("checkpoint does not match the trainable parameters of this config "
                              f"({len(set(params) ^ set(state))} names differ)")
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(state[n])

    def _save_last(self, epoch: int, next_batch: int) -> None:
        if not self.dist.is_main:
            return
        _atomic_save({"identity": self.identity, "epoch": epoch, "next_batch": next_batch,
                      "step": self.step, "trainable": self._state(), "optimizer": self.opt.state_dict(),
                      "best": self.best, "history": json.dumps(self.history)}, self.out_dir / "last.pt")

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
            self.ds, self.cases = None, {}
            train_ids = [f"{s.name}:{c.case_id}" for s in self.sources for c in source_cases(s)]
            val = []
        else:
            self.ds = open_dataset(_resolve_dataset(dc["dataset"]), labels=dc.get("labels"))
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
        self.lora_names = set_trainable(self.model, cfg["mode"], cfg.get("lora"), bool(cfg["train_prompt_encoder"]))
        broadcast_parameters([p for _, p in trainable_parameters(self.model)], self.dist)
        self.n_trainable = sum(p.numel() for _, p in trainable_parameters(self.model))
        self.n_total = sum(p.numel() for p in self.model.parameters())

        cache_emb = dc.get("cache_embeddings", "auto")
        self.cached = (cfg["mode"] == "decoder") if cache_emb == "auto" else bool(cache_emb)
        if self.cached and cfg["mode"] != "decoder":
            raise SamMedError("data.cache_embeddings needs a frozen encoder (mode: decoder)")
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
        self.identity = _identity(cfg)
        self.step, self.start_epoch, self.start_batch = 0, 0, 0
        self.best: dict = {"epoch": 0, "val_dice": None}
        self.history: list[dict] = []

    # -------------------------------------------------------------- one sample
    def _box_prompt(self, d: dict, rng: np.random.Generator) -> torch.Tensor:
        pc = self.cfg["prompts"]
        hw = tuple(int(v) for v in d["hw"])
        bbox = d["bbox"].numpy()
        if bbox[0] < 0:  # augmentation moved the object out: prompt the whole slice
            bbox = np.array([0, 0, hw[1] - 1, hw[0] - 1], dtype=float)
        box = jitter_box(bbox, hw, rng, float(pc["box_outward_px"]), float(pc["box_inward_px"]))
        return torch.as_tensor(self.lm.box_to_model(box, hw), dtype=torch.float32, device=self.device).reshape(1, 4)

    @staticmethod
    def _slice_key(it: dict, k: int) -> tuple:
        return (it.get("source"), it["case_id"], it["object"], it.get("axis"), it.get("copy"), int(k))

    def _embed(self, idx: int, d: dict) -> torch.Tensor:
        if self.cached:
            return self.items[idx]["embedding"].to(self.device)[None]
        return self.model.image_encoder(d["image"][None].to(self.device))

    def _sample_loss(self, idx: int, epoch: int) -> torch.Tensor:
        pc = self.cfg["prompts"]
        if pc.get("iterative"):
            return self._iterative_loss(idx, epoch)[0]
        d = self.data[idx]
        rng = np.random.default_rng(sample_seed(self.cfg["seed"] + 7919, epoch, idx))
        box_m = self._box_prompt(d, rng)
        with self._autocast():
            emb = self._embed(idx, d)
        target = d["label"][None].to(self.device)
        pts, labs = None, None
        mask_in = None
        if float(pc.get("mask_prompt_prob", 0)) > 0 and rng.random() < float(pc["mask_prompt_prob"]):
            it = self.items[idx]
            step = 1 if rng.random() < 0.5 else -1
            nb = self._by_slice.get(self._slice_key(it, it["slice"] + step),
                                    self._by_slice.get(self._slice_key(it, it["slice"] - step)))
            if nb is not None:
                dn = self.data[nb]
                with torch.no_grad(), self._autocast():
                    lo_n, _ = self.model.decode(self._embed(nb, dn), boxes=self._box_prompt(dn, rng))
                mask_in = lo_n[:, :1].float().detach()
        if float(pc.get("click_prob", 0)) > 0 and rng.random() < float(pc["click_prob"]):
            n = int(rng.integers(1, int(pc.get("max_clicks", 1)) + 1))
            ref = None
            clicks: list[tuple[int, int, bool]] = []
            for _ in range(n):
                with torch.no_grad(), self._autocast():
                    kw = {}
                    if clicks:
                        kw = {"points": torch.tensor([[c[:2] for c in clicks]], dtype=torch.float32, device=self.device),
                              "point_labels": torch.tensor([[int(c[2]) for c in clicks]], device=self.device)}
                    lo, _ = self.model.decode(emb.detach(), boxes=box_m, mask_input=mask_in, **kw)
                if ref is None:
                    tt = target if target.shape[-1] == lo.shape[-1] else torch.nn.functional.interpolate(
                        target, size=lo.shape[-2:], mode="nearest")
                    ref = tt[0, 0].cpu().numpy() > 0.5
                c = corrective_click_2d(lo[0, 0].float().cpu().numpy() > 0, ref, rng, center=False)
                if c is None:
                    break
                clicks.append(c)
            if clicks:
                scale = self.lm.image_size / ref.shape[-1]
                pts = torch.tensor([[(c[0] * scale, c[1] * scale) for c in clicks]], dtype=torch.float32,
                                   device=self.device)
                labs = torch.tensor([[int(c[2]) for c in clicks]], device=self.device)
        with self._autocast():
            logits, _iou = self.model.decode(emb, boxes=box_m, points=pts, point_labels=labs, mask_input=mask_in)
        logits = logits[:, :1].float()
        if target.shape[-1] != logits.shape[-1]:
            target = torch.nn.functional.interpolate(target, size=logits.shape[-2:], mode="nearest")
        return self.loss_fn(logits, target)

    def _iterative_loss(self, idx: int, epoch: int) -> tuple[torch.Tensor, list[tuple[int, int, bool]], list[float]]:
        """SAM-style interactive training on one sample.

        Iteration 0 decodes the (jittered) box; with probability ``click_prob`` the sample
        then gets ``n ~ U{1..max_clicks}`` more iterations, each adding one corrective click
        drawn from the previous iteration's prediction (no gradient through that choice):
        into the largest error component, positive where the label is missed, negative where
        the prediction overshoots; the decoder sees box + all clicks so far (+ the previous
        low-res logits with ``click_mask_input``). The loss (DiceCE) is averaged over all
        iterations, so box-only accuracy is trained in every sample. Returns (loss, clicks
        in model-grid pixels, per-iteration losses)."""
        pc = self.cfg["prompts"]
        d = self.data[idx]
        rng = np.random.default_rng(sample_seed(self.cfg["seed"] + 7919, epoch, idx))
        box_m = self._box_prompt(d, rng)
        with self._autocast():
            emb = self._embed(idx, d)
        target = d["label"][None].to(self.device)
        n_clicks = 0
        if float(pc.get("click_prob", 0)) > 0 and rng.random() < float(pc["click_prob"]):
            n_clicks = int(rng.integers(1, int(pc.get("max_clicks", 1)) + 1))
        mode = str(pc.get("click_point", "random"))
        # click_mask_input: true/false, or the probability that a sample uses it (drawn after
        # the click count, so the other prompts of a sample do not depend on it)
        pm = pc.get("click_mask_input", False)
        pm = float(pm) if not isinstance(pm, bool) else (1.0 if pm else 0.0)
        use_mask = pm >= 1.0 or (pm > 0.0 and rng.random() < pm)
        # valid (unpadded) part of the model grid: clicks never land in the padding
        from ..transforms import longest_side_size
        hw = tuple(int(v) for v in d["hw"])
        vh, vw = longest_side_size(hw, self.lm.image_size)
        losses: list[torch.Tensor] = []
        clicks: list[tuple[int, int, bool]] = []
        mask_in = None
        ref = None
        for it in range(n_clicks + 1):
            kw = {}
            if clicks:
                kw = {"points": torch.tensor([[c[:2] for c in clicks]], dtype=torch.float32, device=self.device),
                      "point_labels": torch.tensor([[int(c[2]) for c in clicks]], device=self.device)}
            with self._autocast():
                lo, _ = self.model.decode(emb, boxes=box_m, mask_input=mask_in, **kw)
            lo = lo[:, :1].float()
            if ref is None:
                tt = target if target.shape[-1] == lo.shape[-1] else torch.nn.functional.interpolate(
                    target, size=lo.shape[-2:], mode="nearest")
                target = tt
                ref = tt[0, 0].cpu().numpy() > 0.5
            losses.append(self.loss_fn(lo, target))
            if it == n_clicks:
                break
            pred = lo[0, 0].detach().cpu().numpy() > 0
            s = lo.shape[-1] / self.lm.image_size
            hv, wv = max(1, int(round(vh * s))), max(1, int(round(vw * s)))
            center = mode == "center" or (mode == "mixed" and rng.random() < 0.5)
            c = corrective_click_2d(pred[:hv, :wv], ref[:hv, :wv], rng, center=center)
            if c is None:
                break
            clicks.append((int(round(c[0] / s)), int(round(c[1] / s)), bool(c[2])))
            if use_mask:
                mask_in = lo.detach()
        loss = torch.stack(losses).mean()
        return loss, clicks, [float(v.detach()) for v in losses]

    def _set_lr(self, step: int, total: int) -> None:
        """The learning rate of optimizer step ``step`` (0-based) of ``total`` (a function of
        the step only, so a resumed run follows the same schedule)."""
        oc = self.cfg["optim"]
        lr = float(oc["lr"])
        kind = str(oc.get("schedule") or "constant").lower()
        warm = int(oc.get("warmup_steps") or 0)
        if warm and step < warm:
            lr *= (step + 1) / warm
        elif kind == "cosine":
            t = (step - warm) / max(1, total - warm)
            lr *= 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
        elif kind != "constant":
            raise SamMedError(f"optim.schedule must be constant or cosine, got {kind!r}")
        for g in self.opt.param_groups:
            g["lr"] = float(lr)  # a plain float: checkpoints are read back with weights_only=True

    # -------------------------------------------------------------- resume
    def _try_resume(self) -> None:
        last = self.out_dir / "last.pt"
        if not (self.cfg.get("resume", True) and last.is_file()):
            return
        ck = torch.load(last, map_location="cpu", weights_only=True)
        if ck.get("identity") != self.identity:
            raise SamMedError(f"{last}: written by a run with different settings; use another "
                              "out_dir or resume=false")
        self._load_state(ck["trainable"])
        self.opt.load_state_dict(ck["optimizer"])
        self.step, self.start_epoch, self.start_batch = int(ck["step"]), int(ck["epoch"]), int(ck["next_batch"])
        self.best = dict(ck["best"])
        self.history = json.loads(ck["history"])
        self.log(f"[finetune] resumed from {last}: epoch {self.start_epoch + 1}, batch {self.start_batch}, "
                 f"step {self.step}")

    # -------------------------------------------------------------- main
    def run(self) -> dict:
        t_start = time.perf_counter()
        self.setup()
        cfg, oc, ec = self.cfg, self.cfg["optim"], self.cfg["eval"]
        self._try_resume()
        fresh = self.step == 0 and self.start_epoch == 0 and self.start_batch == 0
        do_eval = bool(ec.get("enabled", True)) and bool(self.val_ids)
        before: dict[str, dict[str, float]] = {}
        if self.dist.is_main and fresh and ec.get("enabled", True):
            t0 = time.perf_counter()
            ids = (self.train_ids if ec.get("train_before_after", True) else []) + self.val_ids
            d = self._eval_cases(self.lm.model, ids, False, "base")
            before = {"train": {c: d[c] for c in self.train_ids if c in d}, "val": {c: d[c] for c in self.val_ids}}
            if self.val_ids:
                self.best = {"epoch": 0, "val_dice": float(np.mean(list(before["val"].values())))}
            self.history.append({"epoch": 0, "step": 0, "val_dice": self.best["val_dice"], "before": before,
                                 "eval_s": time.perf_counter() - t0})
            self.log(f"[finetune] before: {json.dumps(before)} ({time.perf_counter() - t0:.0f}s)")
            self._save_last(0, 0)
        barrier(self.dist)

        n = len(self.items)
        gb = int(oc["batch_size"])
        world = self.dist.world_size
        if gb % world:
            raise SamMedError(f"optim.batch_size {gb} must be divisible by the number of processes {world}")
        spe = int(oc.get("samples_per_epoch") or n)
        epochs = int(oc["epochs"])
        stop = cfg.get("stop_after_steps")
        stopped = False
        for epoch in range(self.start_epoch, epochs):
            t_ep = time.perf_counter()
            self.data.set_epoch(epoch)
            rng = np.random.default_rng([int(cfg["seed"]), epoch])
            order = np.concatenate([rng.permutation(n) for _ in range(-(-spe // n))])[:spe]
            nb = max(1, len(order) // gb)
            losses = []
            b0 = self.start_batch if epoch == self.start_epoch else 0
            for b in range(b0, nb):
                batch = order[b * gb:(b + 1) * gb]
                mine = batch[self.dist.rank::world]
                self.opt.zero_grad(set_to_none=True)
                tot = 0.0
                for idx in mine:
                    loss = self._sample_loss(int(idx), epoch) / len(mine)
                    loss.backward()
                    tot += float(loss.detach())
                average_gradients(self.params, self.dist)
                if oc.get("grad_clip"):
                    torch.nn.utils.clip_grad_norm_(self.params, float(oc["grad_clip"]))
                self._set_lr(self.step, epochs * nb)
                self.opt.step()
                self.step += 1
                losses.append(tot)
                every = int(cfg.get("checkpoint_every_steps") or 0)
                if (every and self.step % every == 0) or (stop and self.step >= int(stop)):
                    self._save_last(epoch, b + 1)
                if stop and self.step >= int(stop):
                    stopped = True
                    break
            if stopped:
                break
            rec: dict[str, Any] = {"epoch": epoch + 1, "step": self.step, "loss": float(np.mean(losses)) if losses else None,
                                   "train_s": time.perf_counter() - t_ep}
            if self.dist.is_main and do_eval and ((epoch + 1) % int(ec.get("every_epochs", 1)) == 0 or epoch + 1 == epochs):
                t0 = time.perf_counter()
                val = self._eval_cases(self.model, self.val_ids, cfg["mode"] != "decoder", f"e{epoch + 1}")
                rec["val"] = val
                rec["val_dice"] = float(np.mean(list(val.values())))
                rec["eval_s"] = time.perf_counter() - t0
                if self.best["val_dice"] is None or rec["val_dice"] > self.best["val_dice"]:
                    self.best = {"epoch": epoch + 1, "val_dice": rec["val_dice"]}
                    _atomic_save({"trainable": self._state(), "epoch": epoch + 1}, self.out_dir / "best.pt")
            elif self.dist.is_main and not do_eval:  # no validation: the last epoch is the result
                self.best = {"epoch": epoch + 1, "val_dice": None}
                _atomic_save({"trainable": self._state(), "epoch": epoch + 1}, self.out_dir / "best.pt")
            self.history.append(rec)
            self.log(f"[finetune] epoch {epoch + 1}/{epochs}: loss {rec['loss']:.4f}"
                     + (f", held-out Dice {rec['val_dice']:.4f}" if "val_dice" in rec else "")
                     + f" ({rec['train_s']:.0f}s train)")
            self._save_last(epoch + 1, 0)
            barrier(self.dist)

        summary: dict[str, Any] = {"name": cfg["name"], "mode": cfg["mode"], "base_model": cfg["base_model"],
                                   "base_sha256": self.lm.sha256, "trainable_params": self.n_trainable,
                                   "total_params": self.n_total, "world_size": world, "steps": self.step,
                                   "stopped_early": stopped, "out_dir": str(self.out_dir),
                                   "train_cases": self.train_ids, "val_cases": self.val_ids,
                                   "train_slices": len(self.items), "extract_s": round(self.extract_s, 1),
                                   "encoded_now": self.n_encoded}
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
            before = next((h["before"] for h in self.history if h.get("epoch") == 0 and "before" in h), None)
            summary["history"] = [{k: v for k, v in h.items() if k != "before"} for h in self.history]
            if ec.get("enabled", True):
                t0 = time.perf_counter()
                ids = (self.train_ids if ec.get("train_before_after", True) else []) + self.val_ids
                d = self._eval_cases(self.model, ids, cfg["mode"] != "decoder", "final")
                summary["dice_before"] = before
                summary["dice_after"] = {"train": {c: d[c] for c in self.train_ids if c in d},
                                         "val": {c: d[c] for c in self.val_ids}}
                summary["final_eval_s"] = time.perf_counter() - t0
            summary["wall_s"] = time.perf_counter() - t_start
            if cfg["export"].get("enabled", True):
                from .export import export_finetuned
                summary["export"] = export_finetuned(self, summary)
            summary["wall_s"] = time.perf_counter() - t_start
            (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        barrier(self.dist)
        shutdown(self.dist)
        return summary

    def _base_trainable(self) -> dict[str, torch.Tensor]:
        """The untrained values of the trainable tensors (LoRA: B = 0 gives the base model)."""
        base = dict(self.lm.model.named_parameters())
        out = {}
        for n, p in trainable_parameters(self.model):
            if n in base:
                out[n] = base[n].detach().clone()
            elif n.endswith("lora_B"):
                out[n] = torch.zeros_like(p)
            else:
                out[n] = p.detach().clone()  # lora_A: irrelevant while B = 0
        return out


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
    """Run a fine-tuning config (see :func:`load_config`); returns the summary dict."""
    return Trainer(cfg, log).run()
