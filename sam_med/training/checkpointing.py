"""Trainer checkpoints: trainable tensors, optimizer state and position in ``last.pt``,
the selected weights in ``best.pt``; resuming; the base model's trainable values.

A mixin of :class:`~sam_med.training.trainer.Trainer`: it reads the trainer's ``model``,
``opt``, ``identity``, ``step``, ``best``, ``history``, ``dist``, ``out_dir`` and ``lm``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import SamMedError
from .trainable import trainable_parameters

__all__ = ["CheckpointMixin", "save_checkpoint"]


def save_checkpoint(obj, path: Path) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically (temporary file + rename)."""
    from ..io.atomic import atomic_torch_save

    atomic_torch_save(obj, path)


class CheckpointMixin:
    """Saving, loading and resuming the trainable state of a :class:`Trainer`."""

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
        save_checkpoint({"identity": self.identity, "epoch": epoch, "next_batch": next_batch,
                      "step": self.step, "trainable": self._state(), "optimizer": self.opt.state_dict(),
                      "best": self.best, "history": json.dumps(self.history)}, self.out_dir / "last.pt")

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


    def _base_trainable(self) -> dict[str, torch.Tensor]:
        """The untrained values of the trainable tensors (LoRA: B = 0 gives the base model;
        tensors the base lacks, the prompt tokens and lora_A: their initial values)."""
        base = dict(self.lm.model.named_parameters())
        init = getattr(self, "init_trainable", {})
        out = {}
        for n, p in trainable_parameters(self.model):
            if n in base:
                out[n] = base[n].detach().clone()
            elif n.endswith("lora_B"):
                out[n] = torch.zeros_like(p)
            else:
                out[n] = init.get(n, p).detach().clone()  # lora_A: irrelevant while B = 0
        return out
