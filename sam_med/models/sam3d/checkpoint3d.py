"""Safe, strict loading of SAM-Med3D checkpoints.

Accepted files (``torch.load(weights_only=True)`` always):

* the official training container written by SAM-Med3D's ``train.py``:
  ``{'epoch', 'model_state_dict', 'optimizer_state_dict', 'lr_scheduler_state_dict',
  'losses', 'dices', 'best_loss', 'best_dice', 'args': argparse.Namespace, 'used_datas'}``
  -> the weights under ``model_state_dict``. Unpickling it needs a few harmless
  classes allow-listed (``argparse.Namespace`` for ``args``, ``collections.Counter``
  for MultiStepLR milestones, numpy scalars for logged metrics); nothing else is
  ever allowed, and an unknown class is reported instead of being loaded;
* a bare state dict (e.g. what ``scripts/train_sam3d_smoke.py`` saves).

Loading is strict: any missing or unexpected key or any shape mismatch raises
:class:`~sam_med.errors.CheckpointError` listing the offenders.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from ...errors import CheckpointError

CONTAINER_KEYS = ("model_state_dict", "state_dict", "model")


def _safe_globals() -> list:
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


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def resolve_checkpoint(checkpoint: str | os.PathLike | None, file_name: str, *, sha256: str | None = None,
                       env: str = "SAM_MED_CHECKPOINTS", source: str | None = None,
                       model_name: str = "sam_med3d_turbo") -> Path:
    """Find the checkpoint file: an explicit path, else ``$SAM_MED_CHECKPOINTS/<file_name>``.

    Never downloads. A missing file raises :class:`CheckpointError` saying which file,
    where to put it and which sha256 is expected (when known).
    """
    tried: list[str] = []
    if checkpoint is not None:
        p = Path(checkpoint).expanduser()
        if p.is_dir():
            p = p / file_name
        tried.append(str(p))
        if p.is_file():
            return p
    else:
        roots = [r for r in os.environ.get(env, "").split(os.pathsep) if r]
        roots.append(str(Path.home() / ".cache" / "sam-med" / "checkpoints"))
        for root in roots:
            p = Path(root).expanduser() / file_name
            tried.append(str(p))
            if p.is_file():
                return p
    where = "; looked at " + ", ".join(tried)
    if checkpoint is None and not os.environ.get(env):
        where += f" (${env} is not set and no --checkpoint given)"
    msg = (f"{model_name}: checkpoint file {file_name!r} not found{where}. "
           f"Put {file_name} into the folder named by ${env}, or pass --checkpoint PATH "
           f"(Python: checkpoint=PATH). ")
    if source:
        msg += f"It is published at {source} (sam-med never downloads weights). "
    msg += f"Expected sha256: {sha256}." if sha256 else "Expected sha256: not recorded (unknown)."
    raise CheckpointError(msg)


def read_state_dict(path: str | os.PathLike, *, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Load a checkpoint file safely and return its model state dict (either container form)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if sha256:
        got = sha256_of(path)
        if got.lower() != sha256.lower():
            raise CheckpointError(f"checkpoint {path} has sha256 {got}, expected {sha256} (corrupt or another file)")
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refused or corrupt file
        detail = ""
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
            allowed = {f"{g.__module__}.{g.__qualname__}" for g in _safe_globals() if hasattr(g, "__qualname__")}
            unsafe = [u for u in unsafe if u not in allowed]
            if unsafe:
                detail = f"; it contains classes sam-med does not unpickle: {unsafe}"
        except Exception:
            pass
        raise CheckpointError(f"cannot load checkpoint {path} with weights_only=True: "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}{detail}") from exc
    return extract_state_dict(obj, str(path))


def extract_state_dict(obj: Any, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        sd = dict(obj)
    else:
        sd = None
        if isinstance(obj, Mapping):
            for key in CONTAINER_KEYS:
                inner = obj.get(key)
                if isinstance(inner, Mapping) and all(isinstance(v, torch.Tensor) for v in inner.values()):
                    sd = dict(inner)
                    break
        if sd is None:
            keys = sorted(map(str, obj))[:10] if isinstance(obj, Mapping) else type(obj).__name__
            raise CheckpointError(f"{what}: neither a state dict nor a container with one of "
                                  f"{list(CONTAINER_KEYS)}; top-level: {keys}")
    if sd and all(k.startswith("module.") for k in sd):  # saved from DistributedDataParallel
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def check_state_dict(model: torch.nn.Module, sd: Mapping[str, torch.Tensor], what: str = "checkpoint",
                     limit: int = 12) -> None:
    """Raise CheckpointError unless ``sd`` has exactly the model's keys and shapes."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(expected[k].shape)}"
             for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        for name, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)):
            if items:
                more = f" … (+{len(items) - limit} more)" if len(items) > limit else ""
                parts.append(f"{len(items)} {name}: " + "; ".join(items[:limit]) + more)
        raise CheckpointError(f"{what} does not match the SAM-Med3D architecture "
                              f"({model.config.__class__.__name__ if hasattr(model, 'config') else 'model'}): "
                              + " | ".join(parts))


def load_state_dict_strict(model: torch.nn.Module, sd: Mapping[str, torch.Tensor], what: str = "checkpoint") -> None:
    check_state_dict(model, sd, what)
    model.load_state_dict(sd, strict=True)
