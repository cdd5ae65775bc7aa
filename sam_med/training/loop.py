"""The training loop of a :class:`~sam_med.training.trainer.Trainer`: epochs, optimizer steps
with gradient averaging across processes, the learning-rate schedule, per-epoch validation
and checkpoints."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from ..errors import SamMedError
from .checkpointing import save_checkpoint
from .ddp import average_gradients, barrier
from .early_stop import check_patience, should_stop
from .trainable import encoder_frozen

__all__ = ["EpochLoopMixin"]


class EpochLoopMixin:
    """``_train_epochs`` and ``_set_lr`` of a :class:`Trainer`."""

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

    def _train_epochs(self, do_eval: bool) -> bool:
        """Epochs ``start_epoch..optim.epochs`` (from ``start_batch``), appending to
        ``history`` and saving ``last.pt`` / ``best.pt``; True when ``stop_after_steps`` stopped it
        (``eval.patience`` early stopping sets ``early_stopped_at`` instead, see :mod:`.early_stop`)."""
        cfg, oc, ec = self.cfg, self.cfg["optim"], self.cfg["eval"]
        n = len(self.items)
        gb = int(oc["batch_size"])
        world = self.dist.world_size
        if gb % world:
            raise SamMedError(f"optim.batch_size {gb} must be divisible by the number of processes {world}")
        spe = int(oc.get("samples_per_epoch") or n)
        epochs = int(oc["epochs"])
        stop = cfg.get("stop_after_steps")
        stopped = False
        patience = check_patience(ec.get("patience"))
        for epoch in range(self.start_epoch, epochs):
            if do_eval and should_stop(self.history, self.best, patience, self.dist):
                self.early_stopped_at = epoch
                self.log(f"[finetune] early stop after epoch {epoch}: no better validation Dice in {patience} "
                         f"validation(s) since epoch {self.best['epoch']}")
                break
            t_ep = time.perf_counter()
            self.data.set_epoch(epoch)
            rng = np.random.default_rng([int(cfg["seed"]), epoch])
            order = np.concatenate([rng.permutation(n) for _ in range(-(-spe // n))])[:spe]
            nb = max(1, len(order) // gb)
            losses = []
            b0 = self.start_batch if epoch == self.start_epoch else 0
            bar = None
            if self.dist.is_main and cfg.get("progress", True):
                from tqdm.auto import tqdm

                bar = tqdm(total=nb, initial=b0, desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
                           leave=False, disable=None)
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
                if bar is not None:
                    bar.update(1)
                every = int(cfg.get("checkpoint_every_steps") or 0)
                if (every and self.step % every == 0) or (stop and self.step >= int(stop)):
                    self._save_last(epoch, b + 1)
                if stop and self.step >= int(stop):
                    stopped = True
                    break
            if bar is not None:
                bar.close()
            if stopped:
                break
            rec: dict[str, Any] = {"epoch": epoch + 1, "step": self.step, "loss": float(np.mean(losses)) if losses else None,
                                   "train_s": time.perf_counter() - t_ep}
            if self.dist.is_main and do_eval and ((epoch + 1) % int(ec.get("every_epochs", 1)) == 0 or epoch + 1 == epochs):
                t0 = time.perf_counter()
                val = self._eval_cases(self.model, self.val_ids, not encoder_frozen(cfg["mode"]),
                                       f"e{epoch + 1}")
                rec["val"] = val
                rec["val_dice"] = float(np.mean(list(val.values())))
                rec["eval_s"] = time.perf_counter() - t0
                if self.best["val_dice"] is None or rec["val_dice"] > self.best["val_dice"]:
                    self.best = {"epoch": epoch + 1, "val_dice": rec["val_dice"]}
                    save_checkpoint({"trainable": self._state(), "epoch": epoch + 1}, self.out_dir / "best.pt")
            elif self.dist.is_main and not do_eval:  # no validation: the last epoch is the result
                self.best = {"epoch": epoch + 1, "val_dice": None}
                save_checkpoint({"trainable": self._state(), "epoch": epoch + 1}, self.out_dir / "best.pt")
            self.history.append(rec)
            self.log(f"[finetune] epoch {epoch + 1}/{epochs}: loss {rec['loss']:.4f}"
                     + (f", held-out Dice {rec['val_dice']:.4f}" if "val_dice" in rec else "")
                     + f" ({rec['train_s']:.0f}s train)")
            self._save_last(epoch + 1, 0)
            barrier(self.dist)
        return stopped
