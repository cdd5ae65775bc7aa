"""Sharding evaluation cases across ``torchrun`` processes: see :mod:`sam_med.distributed`
(one context for evaluation and training; re-exported here). Each case is independent and
its random numbers depend only on ``(seed, case id, label)``, so the gathered records
equal those of a single-process run (timings aside)."""

from ..distributed import DistContext, init_distributed, rank_device

__all__ = ["DistContext", "init_distributed", "rank_device"]
