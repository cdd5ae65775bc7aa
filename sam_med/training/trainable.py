"""Which parameters of a :class:`~sam_med.models.sam.Sam` train in each fine-tune mode."""

from __future__ import annotations

import torch

from .config import DEFAULTS
from .lora import apply_lora

__all__ = ["set_trainable", "trainable_parameters"]


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
    """``(name, parameter)`` of every parameter that requires a gradient, in model order."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]
