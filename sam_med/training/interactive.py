"""SAM's interactive training recipe on the decoder, over cached whole-slice embeddings.

Per sample (one object on one encoded slice; :mod:`.click_data`):

1. **start**: a box, either the object's box on this slice widened by the CVPR 2025 jitter
   (``s ~ U{0..5}`` times ``W/256``, ``H/256`` on every side, clipped: the challenge's rule,
   :func:`sam_med.evaluation.cvpr25.cases.official_boxes`), or, with probability
   ``neighbour_box``, the box of the object's mask on a neighbouring slice plus the
   propagation margin (the key slice's neighbours: the box comes from the previous mask);
2. **rounds**: ``rounds`` corrective clicks, each at the centre of the largest 2D error
   component of the current prediction (the CVPR 2025 click rule in 2D:
   :func:`~.prompts.corrective_click_2d`), positive in a miss, negative in an overshoot;
   the decoder sees the box, every click so far and (``mask_prompt``) the previous
   round's low-res logits as the dense prompt; ``extra_rounds`` more rounds add no click
   (SAM's refinement rounds with only the mask prompt);
   With probability ``base_start`` the box round is decoded by the frozen *base* decoder
   instead (no loss there): the clicks then start from the base's box mask and logits, as in
   the engine, whose box step is the base model's and whose click model sees the base's box
   logits as the dense prompt of the first click;
3. **loss** at every round: ``focal * focal + dice * Dice`` on the mask (SAM's 20 : 1) plus
   ``iou`` times the MSE between the IoU head and the mask's true IoU, averaged over rounds.

The image encoder never runs: the embedding comes from the cache, so every round of every
epoch reuses one encode. Trained: the mask decoder and prompt encoder (``train: decoder``), or
LoRA adapters on the decoder's attention + its output heads (``train: lora``).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import SamMedError
from .prompts import corrective_click_2d, mask_box

__all__ = ["INTERACTIVE_DEFAULTS", "interactive_options", "cvpr25_box", "neighbour_box", "set_trainable_clicks",
           "SampleBatch", "run_rounds", "round_loss"]

INTERACTIVE_DEFAULTS: dict[str, Any] = {
    "train": "decoder",           # decoder (mask decoder + prompt encoder) | lora (decoder attention + heads)
    "lora_rank": 8,
    "rounds": 4,                  # corrective clicks per sample after the box
    "extra_rounds": 1,            # rounds with no new click (mask prompt only)
    "mask_prompt": True,          # previous round's low-res logits as the dense prompt
    "neighbour_box": 0.3,         # probability of the neighbour-mask box start (else CVPR25 jitter)
    "base_start": 0.0,            # probability that the box round is the frozen base decoder's (as in the engine)
    "val_base_start": False,
    "init_from": None,            # a registered model sharing the base's encoder: its decoder is the start      # validation: the box step by the base decoder, clicks by the trained one
    "margin": 3,                  # the propagation margin around the neighbour's mask box (px)
    "focal": 20.0,
    "dice": 1.0,
    "iou": 1.0,
    "lr": 1e-4,
    "weight_decay": 1e-4,
    "epochs": 6,
    "samples_per_epoch": None,    # None: every training sample once
    "batch_size": 8,               # samples per optimizer step (decoded one at a time: faster on CPU)
    "grad_rounds": 2,              # rounds per sample that get a loss (random; 0 = every round)
    "amp": True,                   # bf16 autocast in the decoder (CPU with bf16, or CUDA)
    "val_clicks": 5,              # validation: box + this many clicks (epoch chosen on its AUC)
    "val_samples": 400,           # validation samples scored per epoch (a fixed, seeded subset)
    "val_base": True,             # also score the base model (epoch 0; it may be selected)
}


def interactive_options(cfg: dict) -> dict:
    """``cfg["interactive"]`` over :data:`INTERACTIVE_DEFAULTS`, checked."""
    raw = dict(cfg.get("interactive") or {})
    unknown = set(raw) - set(INTERACTIVE_DEFAULTS)
    if unknown:
        raise SamMedError(f"interactive: unknown keys {sorted(unknown)}; known: {sorted(INTERACTIVE_DEFAULTS)}")
    o = dict(INTERACTIVE_DEFAULTS, **raw)
    if o["train"] not in ("decoder", "lora"):
        raise SamMedError(f"interactive.train must be decoder or lora, got {o['train']!r}")
    for k in ("rounds", "extra_rounds", "epochs", "batch_size", "val_clicks", "val_samples", "lora_rank", "margin",
              "grad_rounds"):
        if not isinstance(o[k], int) or isinstance(o[k], bool) or o[k] < 0:
            raise SamMedError(f"interactive.{k} must be a non-negative integer, got {o[k]!r}")
    if o["batch_size"] < 1 or o["epochs"] < 1:
        raise SamMedError("interactive.batch_size and interactive.epochs must be at least 1")
    if not isinstance(o["val_base_start"], bool):
        raise SamMedError(f"interactive.val_base_start must be true or false, got {o['val_base_start']!r}")
    for k in ("neighbour_box", "base_start"):
        if not 0.0 <= float(o[k]) <= 1.0:
            raise SamMedError(f"interactive.{k} must be in [0, 1], got {o[k]!r}")
    for k in ("focal", "dice", "iou", "lr", "weight_decay"):
        if float(o[k]) < 0:
            raise SamMedError(f"interactive.{k} must be >= 0, got {o[k]!r}")
    return o


def cvpr25_box(ref: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """The CVPR 2025 box of a 2D mask: its bounding box widened by ``s ~ U{0..5}`` times
    ``W/256`` (x) and ``H/256`` (y) on every side, clipped (XYXY inclusive, source pixels)."""
    b = mask_box(ref)
    if b is None:
        return None
    h, w = ref.shape
    s = int(rng.integers(0, 6))
    dx, dy = int(s * w / 256), int(s * h / 256)
    return np.array([max(0, b[0] - dx), max(0, b[1] - dy), min(w - 1, b[2] + dx), min(h - 1, b[3] + dy)], float)


def neighbour_box(nb: np.ndarray, hw: tuple[int, int], margin: int) -> np.ndarray | None:
    """The propagation box: a neighbouring slice's mask box plus ``margin`` px, clipped."""
    b = mask_box(nb)
    if b is None:
        return None
    h, w = hw
    return np.array([max(0, b[0] - margin), max(0, b[1] - margin), min(w - 1, b[2] + margin),
                     min(h - 1, b[3] + margin)], float)


def set_trainable_clicks(model: torch.nn.Module, o: dict, seed: int = 0) -> list[torch.nn.Parameter]:
    """Freeze ``model`` but what ``o["train"]`` trains (see the module docstring); returns the
    trainable parameters. ``lora`` wraps the decoder transformer's q/k/v/out projections."""
    for p in model.parameters():
        p.requires_grad_(False)
    if o["train"] == "lora":
        from .lora import apply_lora, lora_parameters

        torch.manual_seed(seed)
        apply_lora(model, rank=int(o["lora_rank"]), targets=("q_proj", "k_proj", "v_proj", "out_proj"),
                   include=("mask_decoder.transformer",))
        heads = [p for n, p in model.mask_decoder.named_parameters()
                 if n.startswith(("output_hypernetworks_mlps", "iou_prediction_head"))]
        params = lora_parameters(model) + heads + list(model.prompt_encoder.parameters())
    else:
        params = list(model.mask_decoder.parameters()) + list(model.prompt_encoder.parameters())
    for p in params:
        p.requires_grad_(True)
    return params


class SampleBatch:
    """Samples ``(ClickCase, slice, value)`` decoded together: their embeddings ``(B, 256, 64, 64)``,
    labels on the source grid, start boxes (model grid) and the model-to-source mapping."""

    def __init__(self, items: Sequence[tuple], loaded, o: dict, rng: np.random.Generator | None,
                 device: torch.device, starts: Sequence[str] | None = None) -> None:
        from ..transforms import SliceMeta, longest_side_size

        self.loaded = loaded
        self.refs, self.metas, self.hws, boxes = [], [], [], []
        embs = []
        for i, (case, k, v) in enumerate(items):
            prev, cur, nxt = case.labels[(k, v)]
            hw = tuple(int(x) for x in cur.shape)
            start = starts[i] if starts is not None else (
                "neighbour" if rng.random() < float(o["neighbour_box"]) else "jitter")
            box = None
            if start == "neighbour":
                cands = [n for n in (prev, nxt) if n.any()]
                if cands:
                    box = neighbour_box(cands[int(rng.integers(len(cands)))] if rng is not None else cands[0],
                                        hw, int(o["margin"]))
            if box is None:
                box = cvpr25_box(cur, rng if rng is not None else np.random.default_rng(0))
            boxes.append(np.asarray(loaded.box_to_model(box, hw), dtype=np.float32).reshape(4))
            self.refs.append(cur)
            self.hws.append(hw)
            self.metas.append(SliceMeta(hw, longest_side_size(hw, loaded.image_size), loaded.image_size))
            embs.append(case.embeddings[k])
        self.emb = torch.stack(embs).to(device, torch.float32)
        self.boxes = torch.as_tensor(np.stack(boxes), device=device)
        self.targets = [torch.as_tensor(r, dtype=torch.float32, device=device) for r in self.refs]
        self.clicks: list[list[tuple[int, int, bool]]] = [[] for _ in items]
        self.device = device

    def __len__(self) -> int:
        return len(self.refs)

    def point_kwargs(self) -> dict:
        """``points`` / ``point_labels`` of every sample's clicks so far, padded with label -1."""
        n = max(len(c) for c in self.clicks)
        if n == 0:
            return {}
        pts = np.zeros((len(self), n, 2), dtype=np.float32)
        labs = -np.ones((len(self), n), dtype=np.int64)
        for i, cl in enumerate(self.clicks):
            if cl:
                pts[i, : len(cl)] = self.loaded.points_to_model(np.array([c[:2] for c in cl], float), self.hws[i])
                labs[i, : len(cl)] = [int(c[2]) for c in cl]
        return {"points": torch.as_tensor(pts, device=self.device),
                "point_labels": torch.as_tensor(labs, device=self.device)}

    def to_source(self, low: torch.Tensor) -> list[torch.Tensor]:
        """Low-res logits ``(B, 1, 256, 256)`` -> each sample's ``(H, W)`` logits (differentiable)."""
        return [self.loaded.postprocess(low[i:i + 1], self.metas[i])[0, 0] for i in range(len(self))]

    def add_clicks(self, src: list[torch.Tensor]) -> int:
        """One CVPR25-rule corrective click per sample (none where it is already perfect)."""
        n = 0
        for i, lg in enumerate(src):
            c = corrective_click_2d(lg.detach().cpu().numpy() > 0, self.refs[i], center=True)
            if c is not None:
                self.clicks[i].append(c)
                n += 1
        return n


def round_loss(src: list[torch.Tensor], iou_pred: torch.Tensor, batch: SampleBatch, o: dict) -> torch.Tensor:
    """``focal * sigmoid-focal + dice * soft-Dice + iou * MSE(IoU head, true IoU)``, batch mean."""
    tot = []
    for i, lg in enumerate(src):
        t = batch.targets[i]
        p = torch.sigmoid(lg)
        ce = F.binary_cross_entropy_with_logits(lg, t, reduction="none")
        pt = p * t + (1 - p) * (1 - t)
        focal = (ce * (1 - pt) ** 2 * (0.25 * t + 0.75 * (1 - t))).mean()
        dice = 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
        with torch.no_grad():
            m = lg > 0
            inter = (m & (t > 0.5)).sum()
            union = (m | (t > 0.5)).sum()
            iou_t = (inter.float() / union.float()) if union > 0 else torch.ones((), device=lg.device)
        tot.append(float(o["focal"]) * focal + float(o["dice"]) * dice
                   + float(o["iou"]) * (iou_pred[i, 0].float() - iou_t) ** 2)
    return torch.stack(tot).mean()


def run_rounds(model: torch.nn.Module, batch: SampleBatch, o: dict, n_clicks: int, n_extra: int = 0,
               train: bool = True, on_round=None, graded: Sequence[int] | None = None,
               amp: bool = False, base: torch.nn.Module | None = None) -> torch.Tensor | None:
    """Box round, then ``n_clicks`` click rounds and ``n_extra`` mask-only rounds on ``batch``.

    With ``train`` returns the mean loss of the ``graded`` rounds (default: all). A round's
    prompts (clicks, the previous logits) are detached, so its loss gradient does not depend
    on the other rounds' graphs: grading a random subset of rounds is an unbiased, cheaper
    estimate of SAM's all-round mean; the other rounds run without a graph.
    ``on_round(r, src)`` sees every round's source-grid logits (validation scores them).
    ``amp``: bf16 autocast (the weights and the loss stay fp32). ``base``: the frozen base
    model decodes the box round (no loss there; its logits are the next round's dense prompt)."""
    losses = []
    mask_in = None
    n_rounds = 1 + n_clicks + n_extra
    graded = set(range(n_rounds) if graded is None else graded)
    for r in range(n_rounds):
        kw = batch.point_kwargs()
        by_base = base is not None and r == 0
        grad = train and r in graded and not by_base
        with torch.set_grad_enabled(grad), torch.autocast(batch.device.type, dtype=torch.bfloat16, enabled=amp):
            emb = batch.emb.to(torch.bfloat16) if amp else batch.emb
            low, iou = (base if by_base else model).decode(emb, boxes=batch.boxes, mask_input=mask_in, **kw)
        low = low[:, :1].float()
        src = batch.to_source(low)
        if grad:
            losses.append(round_loss(src, iou.float(), batch, o))
        if on_round is not None:
            on_round(r, src)
        if r < n_clicks:
            batch.add_clicks(src)
        if o["mask_prompt"]:
            mask_in = low.detach()
    return torch.stack(losses).mean() if losses else None
