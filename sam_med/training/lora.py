"""LoRA adapters on the image encoder's attention ``qkv`` projections.

``W x + b`` becomes ``W x + b + (alpha / r) * B (A x)`` with ``A (r, in)`` (Kaiming-uniform
init) and ``B (out, r)`` (zeros), so a freshly wrapped model computes exactly what the base
model does. Only ``A`` and ``B`` train; the wrapped ``nn.Linear`` stays frozen.

* :func:`apply_lora` wraps every ``nn.Linear`` whose qualified name ends with one of
  ``targets`` (default ``("attn.qkv",)``) and, optionally, lies under one of ``include``
  prefixes (e.g. ``image_encoder.layers.2``); returns the wrapped names.
* :func:`merge_lora` / :func:`unmerge_lora` fold the update into ``W`` (inference speed)
  and back.
* :func:`lora_state_dict` returns only the adapter tensors
  (``<module>.lora_A`` / ``<module>.lora_B``), the part an adapter-only export saves;
  :func:`merge_lora_state_dict` applies such a dict to a plain (unwrapped) model state dict.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import torch
from torch import nn

__all__ = ["LoRALinear", "apply_lora", "merge_lora", "unmerge_lora", "lora_state_dict",
           "lora_parameters", "remove_lora", "merge_lora_state_dict"]


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a rank-``r`` update. ``forward`` shape = the base's."""

    def __init__(self, base: nn.Linear, rank: int = 4, alpha: float | None = None) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.rank = int(rank)
        self.alpha = float(alpha if alpha is not None else rank)
        self.scaling = self.alpha / self.rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, dtype=base.weight.dtype,
                                               device=base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, dtype=base.weight.dtype,
                                               device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.merged = False

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B @ self.lora_A) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged:
            return out
        return out + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.base.weight += self.delta_weight().to(self.base.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
            self.merged = False


def _wrappable(name: str, module: nn.Module, targets: Iterable[str], include: Iterable[str] | None) -> bool:
    if not isinstance(module, nn.Linear):
        return False
    if not any(name == t or name.endswith("." + t) or name.endswith(t) for t in targets):
        return False
    if include:
        return any(name == p or name.startswith(p.rstrip(".") + ".") for p in include)
    return True


def apply_lora(model: nn.Module, rank: int = 4, alpha: float | None = None,
               targets: Iterable[str] = ("attn.qkv",), include: Iterable[str] | None = ("image_encoder",)) -> list[str]:
    """Wrap matching ``nn.Linear`` layers of ``model`` in place; returns their names.

    Raises ``ValueError`` if nothing matches (a typo in ``targets``/``include`` must not
    silently train nothing)."""
    targets = tuple(targets)
    include = tuple(include) if include else None
    names = [n for n, m in model.named_modules() if _wrappable(n, m, targets, include)]
    if not names:
        raise ValueError(f"apply_lora: no nn.Linear matches targets={targets} include={include}")
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(getattr(parent, child), rank, alpha))
    return names


def _lora_modules(model: nn.Module):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoRALinear)]


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for _, m in _lora_modules(model) for p in (m.lora_A, m.lora_B)]


def merge_lora(model: nn.Module) -> None:
    for _, m in _lora_modules(model):
        m.merge()


def unmerge_lora(model: nn.Module) -> None:
    for _, m in _lora_modules(model):
        m.unmerge()


def remove_lora(model: nn.Module) -> None:
    """Merge every adapter and put the plain ``nn.Linear`` back (state-dict keys as the base)."""
    for name, m in _lora_modules(model):
        m.merge()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, m.base)


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Adapter tensors only, keyed as the *unwrapped* module name: ``<name>.lora_A``/``.lora_B``."""
    out = {}
    for name, m in _lora_modules(model):
        out[f"{name}.lora_A"] = m.lora_A.detach().clone()
        out[f"{name}.lora_B"] = m.lora_B.detach().clone()
    return out


def merge_lora_state_dict(state: dict[str, torch.Tensor], adapters: Mapping[str, torch.Tensor],
                          scaling: float) -> dict[str, torch.Tensor]:
    """``state[<name>.weight] += scaling * B @ A`` for each adapter pair; returns a new dict."""
    out = dict(state)
    prefixes = sorted({k.rsplit(".", 1)[0] for k in adapters})
    for p in prefixes:
        a, b = adapters.get(f"{p}.lora_A"), adapters.get(f"{p}.lora_B")
        if a is None or b is None or f"{p}.weight" not in out:
            raise KeyError(f"LoRA adapter {p!r}: needs lora_A, lora_B and a base weight {p}.weight")
        w = out[f"{p}.weight"]
        out[f"{p}.weight"] = w + (b.float() @ a.float() * scaling).to(w.dtype)
    return out
