"""One process-group context for ``torchrun`` jobs: evaluation sharding and data-parallel training.

``torchrun --nproc-per-node N ...`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``;
:func:`init_distributed` then joins the process group (``nccl`` when the device is CUDA
and one is available, ``gloo`` otherwise) and returns a :class:`DistContext`. Without
those variables everything degrades to a single process and no ``torch.distributed``
call is made.

* Evaluation (:mod:`sam_med.evaluation.runner`): rank ``r`` takes cases ``r, r + N, ...``
  (:meth:`DistContext.shard`) and :meth:`DistContext.gather` brings every rank's records
  to rank 0, which writes the reports.
* Training (:mod:`sam_med.training.trainer`): each rank computes the mean loss of its share
  of the global batch, :meth:`DistContext.average_gradients` averages the gradients with
  one ``all_reduce`` per parameter, and every rank steps the same optimizer (explicitly,
  not through ``DistributedDataParallel``: training calls the model's parts separately and
  some parameters are unused on box-only steps, which DDP's reducer rejects).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

__all__ = ["DistContext", "init_distributed", "rank_device"]


@dataclass
class DistContext:
    """This process's place in the job: ``rank`` of ``world_size``, ``local_rank`` (its GPU
    index on the node), ``backend`` (None for a single process), ``owns_group`` (this
    context created the process group and :meth:`close` destroys it)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    enabled = active  # the training code's name for the same

    def shard(self, items: Sequence) -> list:
        """This rank's items: ``items[rank::world_size]`` (round robin, order kept)."""
        return list(items)[self.rank:: self.world_size]

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` as a list on rank 0 (index = rank); None on other ranks."""
        if not self.active:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.active:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def average_gradients(self, params: Iterable) -> None:
        """Mean of every rank's ``p.grad`` (a missing grad counts as zeros), in place."""
        if not self.active:
            return
        import torch
        import torch.distributed as dist

        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(self.world_size)

    def broadcast_parameters(self, params: Iterable) -> None:
        """Rank 0's parameter values on every rank, in place."""
        if not self.active:
            return
        import torch
        import torch.distributed as dist

        with torch.no_grad():
            for p in params:
                dist.broadcast(p.data, src=0)

    def close(self, force: bool = False) -> None:
        """Destroy the process group if this context created it (or ``force`` in a
        multi-process job)."""
        if self.owns_group or (force and self.active):
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.owns_group = False


def init_distributed(device: str = "cpu") -> DistContext:
    """Join the torchrun process group when launched by torchrun, else a 1-process context.

    Picks ``nccl`` when ``device`` is CUDA (or ``auto`` with a GPU) and CUDA is available
    (and sets this process's GPU to ``cuda:LOCAL_RANK``), ``gloo`` otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    import torch
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = str(device).startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    backend = "nccl" if use_cuda and torch.cuda.is_available() else "gloo"
    owns = False
    if not dist.is_initialized():
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
        owns = True
    return DistContext(rank=rank, world_size=world, local_rank=local, backend=backend, owns_group=owns)


def rank_device(device: str, ctx: DistContext) -> str:
    """The device this rank should use: ``cuda``/``auto`` -> ``cuda:LOCAL_RANK`` under torchrun."""
    if ctx.active and device in ("cuda", "auto") and ctx.backend == "nccl":
        return f"cuda:{ctx.local_rank}"
    return device
