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
3. **loss** at every round: ``focal * focal + dice * Dice`` on the mask (SAM's 20 : 1) plus
   ``iou`` times the MSE between the IoU head and the mask's true IoU, averaged over rounds.

The image encoder never runs: the embedding comes from the cache, so every round of every
epoch reuses one encode. Trained: the mask decoder and prompt encoder (``train: decoder``), or
LoRA adapters on the decoder's attention + its output heads (``train: lora``).
"""

from __future__ import annotations

from typing import Any

from ..errors import SamMedError

__all__ = ["INTERACTIVE_DEFAULTS", "interactive_options"]

INTERACTIVE_DEFAULTS: dict[str, Any] = {
    "train": "decoder",           # decoder (mask decoder + prompt encoder) | lora (decoder attention + heads)
    "lora_rank": 8,
    "rounds": 4,                  # corrective clicks per sample after the box
    "extra_rounds": 1,            # rounds with no new click (mask prompt only)
    "mask_prompt": True,          # previous round's low-res logits as the dense prompt
    "neighbour_box": 0.3,         # probability of the neighbour-mask box start (else CVPR25 jitter)
    "margin": 3,                  # the propagation margin around the neighbour's mask box (px)
    "focal": 20.0,
    "dice": 1.0,
    "iou": 1.0,
    "lr": 1e-4,
    "weight_decay": 1e-4,
    "epochs": 6,
    "samples_per_epoch": None,    # None: every training sample once
    "batch_size": 8,
    "val_clicks": 5,              # validation: box + this many clicks (epoch chosen on its AUC)
    "val_samples": 400,           # validation samples scored per epoch (a fixed, seeded subset)
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
    for k in ("rounds", "extra_rounds", "epochs", "batch_size", "val_clicks", "val_samples", "lora_rank", "margin"):
        if not isinstance(o[k], int) or isinstance(o[k], bool) or o[k] < 0:
            raise SamMedError(f"interactive.{k} must be a non-negative integer, got {o[k]!r}")
    if o["batch_size"] < 1 or o["epochs"] < 1:
        raise SamMedError("interactive.batch_size and interactive.epochs must be at least 1")
    for k in ("neighbour_box",):
        if not 0.0 <= float(o[k]) <= 1.0:
            raise SamMedError(f"interactive.{k} must be in [0, 1], got {o[k]!r}")
    for k in ("focal", "dice", "iou", "lr", "weight_decay"):
        if float(o[k]) < 0:
            raise SamMedError(f"interactive.{k} must be >= 0, got {o[k]!r}")
    return o
