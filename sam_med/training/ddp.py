"""Data parallel training under ``torchrun`` (gloo on CPU, NCCL on CUDA).

The trainer does what ``DistributedDataParallel`` does, explicitly: each rank computes the
mean loss over its share of the global batch, gradients are averaged with one
``all_reduce`` per parameter, and every rank steps the same optimizer. Explicit averaging
(rather than wrapping the model in DDP) because training calls the model's ``decode``/
``encode`` parts separately and some parameters (point embeddings of the prompt encoder)
are unused on box-only steps, which DDP's reducer rejects without
``find_unused_parameters`` (and its bucketing would change nothing at this size).

Same result for 1 and N processes at the same seed and global batch: the sample order is
drawn from (seed, epoch) on every rank; rank r takes items ``r, r+N, ...`` of each global
batch; prompts/augmentations depend on (seed, epoch, sample index) only; the global batch
must divide evenly by N so the mean of per-rank means is the global mean. Results then
agree to float rounding (different summation order).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "init_distributed", "average_gradients", "broadcast_parameters", "barrier",
           "shutdown"]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "cpu") -> DistInfo:
    """Join the process group when started by torchrun (``WORLD_SIZE`` > 1); else a 1-process
    ``DistInfo``. Backend: NCCL for CUDA devices, gloo otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if str(device).startswith("cuda") else "gloo"
    if not dist.is_initialized():
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world, local, backend)


def average_gradients(params, info: DistInfo) -> None:
    if not info.enabled:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad.div_(info.world_size)


def broadcast_parameters(params, info: DistInfo) -> None:
    if not info.enabled:
        return
    with torch.no_grad():
        for p in params:
            dist.broadcast(p.data, src=0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
