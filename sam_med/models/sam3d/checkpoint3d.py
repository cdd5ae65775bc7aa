"""SAM-Med3D specifics of checkpoint loading; the engine is :mod:`sam_med.models.checkpoint`.

Accepted files (``torch.load(weights_only=True)`` always):

* the official training container written by SAM-Med3D's ``train.py``:
  ``{'epoch', 'model_state_dict', 'optimizer_state_dict', 'lr_scheduler_state_dict',
  'losses', 'dices', 'best_loss', 'best_dice', 'args': argparse.Namespace, 'used_datas'}``
  -> the weights under ``model_state_dict``. Unpickling it needs a few harmless
  classes allow-listed (:func:`safe_globals`: ``argparse.Namespace`` for ``args``,
  ``collections.Counter`` for MultiStepLR milestones, numpy scalars for logged metrics);
  nothing else is ever allowed, and an unknown class is reported instead of being loaded;
* a bare state dict (e.g. what ``scripts/train_sam3d_smoke.py`` saves).

Loading is strict (:func:`~sam_med.models.checkpoint.check_state_dict`, re-exported here):
any missing or unexpected key or any shape mismatch raises
:class:`~sam_med.errors.CheckpointError` listing the offenders.
"""

from __future__ import annotations

import argparse
import collections
import os
from pathlib import Path

import torch

from .. import checkpoint as _ck
from ..checkpoint import check_state_dict

__all__ = ["safe_globals", "resolve_checkpoint", "read_state_dict", "check_state_dict"]


def safe_globals() -> list:
    """The harmless classes the official SAM-Med3D training container needs unpickled."""
    allowed: list = [argparse.Namespace, collections.Counter, collections.OrderedDict]
    try:  # numpy scalars / dtypes in logged losses and dices
        import numpy as np

        core = getattr(np, "_core", None) or np.core
        allowed += [core.multiarray.scalar, np.dtype]
        allowed += [getattr(np.dtypes, n) for n in ("Float64DType", "Float32DType", "Int64DType")
                    if hasattr(getattr(np, "dtypes", None), n)]
    except Exception:  # pragma: no cover - numpy always present in practice
        pass
    return allowed


def resolve_checkpoint(checkpoint: str | os.PathLike | None, file_name: str, *, sha256: str | None = None,
                       env: str = "SAM_MED_CHECKPOINTS", source: str | None = None,
                       model_name: str = "sam_med3d_turbo") -> Path:
    """Thin alias of :func:`sam_med.models.checkpoint.resolve_checkpoint` (the one resolver)."""
    return _ck.resolve_checkpoint({"file_name": file_name, "sha256": sha256, "env": env, "source": source},
                                  checkpoint, model_name)


def read_state_dict(path: str | os.PathLike, *, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Load a checkpoint file safely (SAM-Med3D allow-list) and return its model state dict
    (either container form); hashes the file only when ``sha256`` is given."""
    return _ck.read_state_dict(path, sha256, safe_globals=safe_globals(), hash_always=False)[0]
