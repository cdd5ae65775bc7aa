"""Data-parallel training under ``torchrun``: the context is :mod:`sam_med.distributed`'s
:class:`~sam_med.distributed.DistContext`; these are the trainer's names for its methods.

Same result for 1 and N processes at the same seed and global batch: the sample order is
drawn from (seed, epoch) on every rank; rank r takes items ``r, r+N, ...`` of each global
batch; prompts/augmentations depend on (seed, epoch, sample index) only; the global batch
must divide evenly by N so the mean of per-rank means is the global mean. Results then
agree to float rounding (different summation order).
"""

from __future__ import annotations

from ..distributed import DistContext, init_distributed

__all__ = ["DistInfo", "init_distributed", "average_gradients", "broadcast_parameters", "barrier",
           "shutdown"]

DistInfo = DistContext


def average_gradients(params, info: DistContext) -> None:
    info.average_gradients(params)


def broadcast_parameters(params, info: DistContext) -> None:
    info.broadcast_parameters(params)


def barrier(info: DistContext) -> None:
    info.barrier()


def shutdown(info: DistContext) -> None:
    info.close(force=True)
