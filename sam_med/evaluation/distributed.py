"""Sharding evaluation cases across processes started by ``torchrun``.

``torchrun --nproc-per-node N -m sam_med evaluate ...`` (or ``--nnodes``)
sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; :func:`init_distributed` then
joins the process group (``gloo`` on CPU, ``nccl`` when the device is CUDA),
rank ``r`` evaluates cases ``r, r + N, r + 2N, ...`` of the dataset, and
:meth:`DistContext.gather` brings every rank's records to rank 0, which writes
the reports. Each case is independent and its random numbers depend only on
``(seed, case id, label)``, so the gathered records equal those of a
single-process run (timings aside).

Without those variables everything degrades to a single process and no
``torch.distributed`` call is made.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    _owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

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

    def close(self) -> None:
        if self._owns_group:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self._owns_group = False


def init_distributed(device: str = "cpu") -> DistContext:
    """Join the torchrun process group when launched by torchrun, else a 1-process context.

    Picks ``nccl`` when ``device`` is CUDA (and sets this process's GPU to
    ``cuda:LOCAL_RANK``), ``gloo`` otherwise.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    import torch
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = str(device).startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    backend = "nccl" if use_cuda and torch.cuda.is_available() else "gloo"
    owns = False
    if not dist.is_initialized():
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
        owns = True
    return DistContext(rank=rank, world_size=world, local_rank=local, backend=backend, _owns_group=owns)


def rank_device(device: str, ctx: DistContext) -> str:
    """The device this rank should use: ``cuda`` -> ``cuda:LOCAL_RANK`` under torchrun."""
    if ctx.active and device in ("cuda", "auto") and ctx.backend == "nccl":
        return f"cuda:{ctx.local_rank}"
    return device
