"""Volumetric SAM (SAM-Med3D / SAM-Med3D-turbo compatible), our own implementation.

Public API::

    cfg = Sam3DConfig()                     # released vit_b_ori architecture
    model = build_sam3d(cfg)                # random init
    model = load_sam3d(checkpoint, config)  # strict, weights_only=True
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...errors import CheckpointError
from ..checkpoint import load_into
from .checkpoint3d import check_state_dict, read_state_dict, resolve_checkpoint
from .sam3d import Sam3D, Sam3DConfig, build_sam3d

CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs" / "models"
DEFAULT_CONFIG = "sam_med3d_turbo"

__all__ = ["Sam3D", "Sam3DConfig", "build_sam3d", "load_sam3d", "load_model_config", "CONFIG_DIR",
           "check_state_dict", "read_state_dict", "resolve_checkpoint"]


def load_model_config(config: str | os.PathLike | dict | None = None) -> dict[str, Any]:
    """The model's YAML config as a dict: a name in ``configs/models``, a path, or a dict."""
    import yaml

    if isinstance(config, dict):
        return config
    name = str(config or DEFAULT_CONFIG)
    p = Path(name)
    if not p.suffix:
        p = CONFIG_DIR / f"{name}.yaml"
        try:  # the shared registry's search path ($SAM_MED_CONFIGS, repo, ~/.config)
            from ..registry import find_model_config

            p = find_model_config(name)
        except Exception:
            pass
    if not p.is_file():
        raise CheckpointError(f"model config {p} not found")
    with open(p) as f:
        return yaml.safe_load(f)


def load_sam3d(checkpoint: str | os.PathLike | None = None, config: str | os.PathLike | dict | None = None,
               device: str = "cpu") -> Sam3D:
    """Build the architecture from ``config`` and load ``checkpoint`` strictly.

    ``checkpoint``: a file, a folder holding the config's file name, or None to look
    in ``$SAM_MED_CHECKPOINTS``. Raises :class:`CheckpointError` when it is missing
    (naming the file, where to put it and its sha256 if known), unsafe, or does not
    match the architecture key for key and shape for shape.
    """
    cfg = load_model_config(config)
    ck = cfg.get("checkpoint") or {}
    path = resolve_checkpoint(checkpoint, ck.get("file_name", "sam_med3d_turbo.pth"), sha256=ck.get("sha256"),
                              env=ck.get("env", "SAM_MED_CHECKPOINTS"), source=ck.get("source"),
                              model_name=cfg.get("name", DEFAULT_CONFIG))
    sd = read_state_dict(path, sha256=ck.get("sha256"))
    model = build_sam3d(Sam3DConfig.from_dict(cfg.get("architecture_args")))
    load_into(model, sd, str(path))
    return model.to(device).eval()


def _register() -> None:
    try:
        from ..registry import register_architecture
    except ImportError:  # registry not available: load_sam3d still works
        return
    register_architecture("sam_med3d", lambda **kw: build_sam3d(Sam3DConfig.from_dict(kw)))


_register()
