"""Numeric precision of the image encoder, chosen by hardware at load time (issue #16).

``precision`` is one of ``"auto"``, ``"fp32"``, ``"bf16"``, ``"fp16"`` (aliases ``float32``,
``bfloat16``, ``float16``; ``None``/``"none"`` = fp32). ``"auto"`` resolves to:

* CUDA: ``bf16`` where the device supports it (Ampere and later), else ``fp16``;
* CPU: ``bf16`` where the CPU has native bf16 arithmetic (``avx512_bf16`` or AMX flags in
  ``/proc/cpuinfo``), else ``fp32`` (emulated bf16 is slower than fp32 there);
* anything else (``mps``, ...): ``fp32``.

The result is the autocast dtype used by :meth:`LoadedModel.encode` / ``decode``
(``None`` = plain fp32). ``$SAM_MED_PRECISION`` overrides the default ``"auto"`` for a
whole process (the ``--precision`` option of ``sam-med segment`` sets it).
"""

from __future__ import annotations

import functools
import os

import torch

from ..errors import SamMedError

__all__ = ["PRECISIONS", "cpu_has_native_bf16", "default_precision", "resolve_precision",
           "precision_name", "predictor_precision"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_ALIASES = {"float32": "fp32", "none": "fp32", "null": "fp32", "": "fp32", "bfloat16": "bf16",
            "float16": "fp16", "half": "fp16"}
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
#: CPU flags that mean bf16 matmuls run natively (AVX-512-BF16, Intel AMX)
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def _cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@functools.lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 natively (``avx512_bf16`` / ``amx_bf16`` in
    ``/proc/cpuinfo``, or torch's CPU capability reports AMX). No flags file (macOS,
    Windows) -> judged by ``torch.backends.cpu.get_cpu_capability()`` alone."""
    if _cpu_flags() & set(NATIVE_BF16_FLAGS):
        return True
    try:
        cap = str(torch.backends.cpu.get_cpu_capability()).upper()
    except Exception:  # pragma: no cover - very old torch
        return False
    return "AMX" in cap


def default_precision() -> str:
    """``$SAM_MED_PRECISION`` if set, else ``"auto"``."""
    return os.environ.get("SAM_MED_PRECISION", "").strip() or "auto"


def precision_name(value) -> str:
    """Normalise a precision or autocast dtype (``torch.bfloat16``, ``"bf16"``, None, ...) to
    one of :data:`PRECISIONS`; raises :class:`SamMedError` for anything else."""
    if value is None:
        return "fp32"
    if isinstance(value, torch.dtype):
        table = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
        if value not in table:
            raise SamMedError(f"unsupported precision {value}")
        return table[value]
    v = str(value).strip().lower()
    v = _ALIASES.get(v, v)
    if v not in PRECISIONS:
        raise SamMedError(f"unknown precision {value!r}; use one of {', '.join(PRECISIONS)}")
    return v


def resolve_precision(precision, device: str | torch.device = "cpu") -> tuple[str, torch.dtype | None]:
    """``(name, autocast_dtype)`` for ``precision`` on ``device``: ``"auto"`` resolved by
    hardware (see the module docstring). ``fp16`` on CPU is refused (no fast CPU kernels)."""
    name = precision_name(precision)
    dev = torch.device(device)
    if name == "auto":
        if dev.type == "cuda":
            name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        elif dev.type == "cpu":
            name = "bf16" if cpu_has_native_bf16() else "fp32"
        else:
            name = "fp32"
    if name == "fp16" and dev.type == "cpu":
        raise SamMedError("precision fp16 is for CUDA devices; on a CPU use fp32 or bf16")
    return name, _DTYPES[name]


def predictor_precision(predictor) -> str | None:
    """The encoder precision a predictor runs at (for provenance): its loaded model's
    ``precision``, else its ``autocast_dtype`` (the volumetric predictor); None if unknown."""
    loaded = getattr(predictor, "loaded", None)
    if getattr(loaded, "precision", None):
        return str(loaded.precision)
    if hasattr(predictor, "autocast_dtype"):
        try:
            return precision_name(predictor.autocast_dtype)
        except SamMedError:
            return None
    return None
