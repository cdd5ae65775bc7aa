"""Volumetric SAM (SAM-Med3D / SAM-Med3D-turbo compatible), our own implementation.

Public API::

    cfg = Sam3DConfig()                     # released vit_b_ori architecture
    model = build_sam3d(cfg)                # random init
    loaded = sam_med.models.load_model("sam_med3d_turbo", checkpoint=...)  # LoadedModel3D
    model = load_sam3d(checkpoint, config)  # the same loader, returns the bare Sam3D

Configs and checkpoints go through the one stack of :mod:`sam_med.models` (config reader
:mod:`~sam_med.models.configs`, resolver and strict loader :mod:`~sam_med.models.checkpoint`);
this package adds the architecture and the allow-list of its training container.
"""

from __future__ import annotations

import os
from typing import Any

from ..configs import PACKAGE_CONFIGS, read_model_config
from ..architectures import register_architecture
from ..registry import load_model
from .checkpoint3d import check_state_dict, read_state_dict, resolve_checkpoint, safe_globals
from .sam3d import Sam3D, Sam3DConfig, build_sam3d

CONFIG_DIR = PACKAGE_CONFIGS
DEFAULT_CONFIG = "sam_med3d_turbo"

__all__ = ["Sam3D", "Sam3DConfig", "build_sam3d", "load_sam3d", "load_model_config", "CONFIG_DIR",
           "check_state_dict", "read_state_dict", "resolve_checkpoint"]


def load_model_config(config: str | os.PathLike | dict | None = None) -> dict[str, Any]:
    """The resolved model config (:func:`sam_med.models.read_model_config`): a name, a path or
    a dict; default ``sam_med3d_turbo``."""
    return read_model_config(DEFAULT_CONFIG if config is None else config)


def load_sam3d(checkpoint: str | os.PathLike | None = None, config: str | os.PathLike | dict | None = None,
               device: str = "cpu") -> Sam3D:
    """The bare :class:`Sam3D` of :func:`sam_med.models.load_model` (fp32, not cached).

    ``checkpoint``: a file, a folder holding the config's file name, or None to look
    in ``$SAM_MED_CHECKPOINTS``. Raises :class:`CheckpointError` when it is missing
    (naming the file, where to put it and its sha256 if known), unsafe, or does not
    match the architecture key for key and shape for shape.
    """
    return load_model(load_model_config(config), checkpoint=checkpoint, device=device,
                      precision="fp32", cache=False).model


register_architecture("sam_med3d", lambda **kw: build_sam3d(Sam3DConfig.from_dict(kw)),
                      safe_globals=safe_globals)
