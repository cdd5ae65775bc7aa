"""The architectures a model config may name: builders sam-med registers by name (a config's
``architecture`` field is looked up here, never imported from a path unless the user trusts the
config, ``SAM_MED_TRUST_CONFIGS=1``)."""

from __future__ import annotations

import importlib
from typing import Callable

from torch import nn

from ..errors import SamMedError
from .config_schema import trusted

__all__ = ["register_architecture", "get_architecture", "list_architectures"]

_ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {}
_SAFE_GLOBALS: dict[str, Callable[[], list]] = {}
#: modules that register built-in architectures when imported (missing ones are skipped)
_ARCH_MODULES = ("sam_med.models.build", "sam_med.models.sam3d", "sam_med.models.sam2")


def register_architecture(name: str, builder: Callable[..., nn.Module] | None = None, *,
                          safe_globals: Callable[[], list] | None = None):
    """Register ``builder`` under ``name`` (usable as a decorator); ``safe_globals()`` lists
    classes ``torch.load(weights_only=True)`` may unpickle from its checkpoints."""
    def deco(fn):
        _ARCHITECTURES[name] = fn
        if safe_globals is not None:
            _SAFE_GLOBALS[name] = safe_globals
        return fn
    return deco(builder) if builder is not None else deco


def _import_builtin_architectures() -> None:
    for mod in _ARCH_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name is None or not mod.startswith(e.name):
                raise


def list_architectures() -> list[str]:
    _import_builtin_architectures()
    return sorted(_ARCHITECTURES)


def get_architecture(name: str) -> Callable[..., nn.Module]:
    """Builder for a registered architecture name, or the ``"module:function"`` spelling of a
    registered builder; any other import path only with ``SAM_MED_TRUST_CONFIGS=1``."""
    _import_builtin_architectures()
    if not isinstance(name, str):
        raise SamMedError(f"architecture must be a name, got {type(name).__name__}")
    if name in _ARCHITECTURES:
        return _ARCHITECTURES[name]
    for fn in _ARCHITECTURES.values():
        if f"{getattr(fn, '__module__', '')}:{getattr(fn, '__qualname__', '')}" == name:
            return fn
    mod, _, fn_name = name.partition(":")
    if mod in _ARCH_MODULES and fn_name.startswith("build_"):  # a builder sam-med defines, no re-export
        fn = getattr(importlib.import_module(mod), fn_name, None)
        if callable(fn) and getattr(fn, "__module__", None) == mod:
            return fn
    if ":" in name and trusted():
        mod, _, fn = name.partition(":")
        try:
            return getattr(importlib.import_module(mod), fn)
        except (ImportError, AttributeError) as e:
            raise SamMedError(f"cannot import architecture builder {name!r}: {e}") from e
    raise SamMedError(f"unknown architecture {name!r}; known: {sorted(_ARCHITECTURES)} (an import path is "
                      "refused unless SAM_MED_TRUST_CONFIGS=1)")
