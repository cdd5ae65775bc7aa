"""Prompt tuning (mode ``prompt``): K learnable prompt tokens, every other weight frozen.

In the spirit of PTSAM: ``K`` learnable 256-d tokens (``prompt_tuning.tokens``, default 8)
are appended to the sparse prompt embeddings the mask decoder receives, after the prompt
encoder's box / point tokens, for every prompt; optionally (``prompt_tuning.dense_bias``) a
learnable ``(C,)`` bias is added to the dense prompt embedding (zero at init). The image
encoder, prompt encoder and mask decoder stay frozen, so the encoder's embeddings are the
base model's (cached once, shared with the base in every embedding cache).

The tokens live in a :class:`PromptTokens` module at ``Sam.prompt_tuning`` (None on a plain
model, so its state dict is the base's); state-dict keys ``prompt_tuning.tokens (K, C)`` and
``prompt_tuning.dense_bias (C,)`` (only with ``dense_bias``). Initialisation: each token is
the prompt encoder's "not a point" (padding) embedding, which SAM was trained to see next to
real prompts, plus ``init_std`` Gaussian noise so the K tokens do not stay identical (equal
tokens get equal gradients). So a freshly attached model is close to, not exactly, the base.

Export (:mod:`sam_med.training.export`): a delta of kind ``prompt`` holding only these tensors, and a model
config with a ``prompt_tuning: {tokens: K, dense_bias: bool}`` section; the loader
(:func:`sam_med.models.load_model`) attaches the module from that section before the strict
load, so a checkpoint without the tokens (or with other shapes) is refused.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from ..errors import SamMedError

__all__ = ["PROMPT_DEFAULTS", "PromptTokens", "attach_prompt_tokens", "prompt_spec", "prompt_state_dict"]

#: ``prompt_tuning`` config section (fine-tune config and exported model config)
PROMPT_DEFAULTS: dict[str, Any] = {"tokens": 8, "dense_bias": False, "init_std": 0.02}


class PromptTokens(nn.Module):
    """``K`` learnable tokens ``(K, C)`` appended to the sparse embeddings ``(B, N, C)`` ->
    ``(B, N + K, C)``; with ``dense_bias`` a ``(C,)`` bias added to the dense ``(B, C, h, w)``."""

    def __init__(self, num_tokens: int = 8, embed_dim: int = 256, dense_bias: bool = False) -> None:
        super().__init__()
        if int(num_tokens) < 1:
            raise SamMedError(f"prompt_tuning.tokens must be >= 1, got {num_tokens}")
        self.num_tokens = int(num_tokens)
        self.tokens = nn.Parameter(torch.zeros(self.num_tokens, int(embed_dim)))
        self.dense_bias = nn.Parameter(torch.zeros(int(embed_dim))) if dense_bias else None

    @torch.no_grad()
    def init_from(self, padding_embedding: torch.Tensor, std: float, generator: torch.Generator | None = None) -> None:
        """Tokens := ``padding_embedding (1, C)`` + N(0, std²) noise (see the module docstring)."""
        noise = torch.randn(self.tokens.shape, generator=generator, dtype=torch.float32)
        self.tokens.copy_(padding_embedding.detach().float().reshape(1, -1).cpu() + float(std) * noise)

    def forward(self, sparse: torch.Tensor, dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tok = self.tokens.to(sparse.dtype).unsqueeze(0).expand(sparse.shape[0], -1, -1)
        sparse = torch.cat([sparse, tok], dim=1)
        if self.dense_bias is not None:
            dense = dense + self.dense_bias.to(dense.dtype).reshape(1, -1, 1, 1)
        return sparse, dense


def prompt_spec(section: Mapping[str, Any] | None) -> dict[str, Any]:
    """A ``prompt_tuning`` section merged over :data:`PROMPT_DEFAULTS`, checked."""
    spec = {**PROMPT_DEFAULTS, **dict(section or {})}
    unknown = set(spec) - set(PROMPT_DEFAULTS)
    if unknown:
        raise SamMedError(f"prompt_tuning: unknown keys {sorted(unknown)}; known: {sorted(PROMPT_DEFAULTS)}")
    try:
        spec["tokens"] = int(spec["tokens"])
        spec["init_std"] = float(spec["init_std"])
    except (TypeError, ValueError):
        raise SamMedError(f"prompt_tuning.tokens must be an integer and init_std a number, got {dict(section or {})}") from None
    if spec["tokens"] < 1:
        raise SamMedError(f"prompt_tuning.tokens must be >= 1, got {spec['tokens']}")
    spec["dense_bias"] = bool(spec["dense_bias"])
    return spec


def attach_prompt_tokens(model: nn.Module, section: Mapping[str, Any] | None = None, *,
                         initialise: bool = True, seed: int | None = None) -> PromptTokens:
    """Put a :class:`PromptTokens` at ``model.prompt_tuning`` (a :class:`~sam_med.models.sam.Sam`)
    on the prompt encoder's device; ``initialise`` (training) sets the tokens as the module
    docstring says (``seed``: a private generator, else torch's global one); a loader leaves
    them to the checkpoint. Refuses a model that already has prompt tokens."""
    if getattr(model, "prompt_tuning", None) is not None:
        raise SamMedError("this model already has prompt tokens (a prompt-tuned model); prompt-tune its base instead")
    spec = prompt_spec(section)
    pe = model.prompt_encoder
    mod = PromptTokens(spec["tokens"], int(pe.embed_dim), spec["dense_bias"])
    if initialise:
        gen = torch.Generator().manual_seed(int(seed)) if seed is not None else None
        mod.init_from(pe.not_a_point_embed.weight, spec["init_std"], gen)
    model.prompt_tuning = mod.to(pe.not_a_point_embed.weight.device)
    return model.prompt_tuning


def prompt_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The prompt-tuning tensors of ``model``, keyed as in its state dict (``prompt_tuning.*``)."""
    mod = getattr(model, "prompt_tuning", None)
    if mod is None:
        raise SamMedError("the model has no prompt tokens (not a prompt-tuning run)")
    return {f"prompt_tuning.{k}": v.detach().clone().contiguous() for k, v in mod.state_dict().items()}
