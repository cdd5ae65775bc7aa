"""Which parameters of a :class:`~sam_med.models.sam.Sam` train in each fine-tune mode."""

from __future__ import annotations

import torch

from .config import DEFAULTS
from .lora import apply_lora

__all__ = ["encoder_frozen", "set_trainable", "trainable_parameters"]


def encoder_frozen(mode: str) -> bool:
    """True when ``mode`` leaves the image encoder as the base's (embeddings cacheable and
    shared with the base): ``decoder`` and ``prompt``."""
    return mode in ("decoder", "prompt")


def set_trainable(model: torch.nn.Module, mode: str, lora_cfg: dict | None = None,
                  train_prompt_encoder: bool = False, prompt_cfg: dict | None = None,
                  seed: int | None = None) -> list[str]:
    """Freeze/unfreeze ``model`` (a :class:`~sam_med.models.sam.Sam`) for ``mode``; LoRA
    adapters and (mode ``prompt``) the prompt tokens of :mod:`.prompt_tuning` are inserted
    here (``prompt_cfg``: the ``prompt_tuning`` section; ``seed``: their init noise).
    Returns the LoRA-wrapped module names (empty otherwise)."""
    for p in model.parameters():
        p.requires_grad_(False)
    wrapped: list[str] = []
    if mode == "prompt":
        from ..models.prompt_tokens import attach_prompt_tokens

        for p in attach_prompt_tokens(model, prompt_cfg, seed=seed).parameters():
            p.requires_grad_(True)
        return wrapped
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
