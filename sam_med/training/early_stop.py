"""Early stopping on validation for the fine-tuning loop (``eval.patience``).

The trainer validates every ``eval.every_epochs`` epochs (mean 3D Dice over the validation
cases, box protocol) and keeps the best epoch in ``best.pt`` (the untrained model counts as
epoch 0). With ``eval.patience: N`` it stops once N validations in a row have not beaten
the best one; the exported / promoted weights are still the best epoch's. The decision is
a function of the run's ``history`` only, so a resumed run makes the same one (and a run
that had stopped stays stopped), and under ``torchrun`` rank 0 decides for every process.
"""

from __future__ import annotations

from ..errors import SamMedError

__all__ = ["check_patience", "validations_since_best", "should_stop"]


def check_patience(value) -> int | None:
    """``eval.patience`` as an int >= 1 or None; one clear error otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SamMedError(f"eval.patience must be an integer >= 1 (or null), got {value!r}")
    return int(value)


def validations_since_best(history: list[dict], best_epoch: int) -> int:
    """How many validated epochs of ``history`` come after ``best_epoch``."""
    return sum(1 for h in history if h.get("val_dice") is not None and int(h.get("epoch", 0)) > int(best_epoch))


def should_stop(history: list[dict], best: dict, patience: int | None, dist=None) -> bool:
    """True when ``patience`` validations in a row did not improve on ``best`` (the trainer's
    ``{"epoch", "val_dice"}``). ``dist``: the run's DistContext; rank 0's answer is used."""
    stop = bool(patience) and best.get("val_dice") is not None and \
        validations_since_best(history, int(best.get("epoch") or 0)) >= int(patience)
    if dist is not None:
        stop = bool(dist.broadcast(stop))
    return stop
