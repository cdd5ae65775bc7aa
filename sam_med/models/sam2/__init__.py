"""SAM 2 / Medical SAM 2 (MedSAM2), our own implementation of the official layout.

Public API::

    model = build_sam2(Sam2Config())                 # random init, MedSAM2 architecture
    loaded = sam_med.models.load_model("medsam2", checkpoint=...)   # strict, sha256-checked
    model = load_medsam2(checkpoint)                 # the same loader, returns the bare Sam2Model

Checkpoints: ``MedSAM2_latest.pt`` (and the other MedSAM2 files, and SAM 2.1 Hiera-T
``sam2.1_hiera_tiny.pt``: same keys) hold ``{'model': state_dict}`` with 471 tensors;
loading goes through the one stack of :mod:`sam_med.models` (resolver, sha256,
``torch.load(weights_only=True)``, strict key/shape match with a one-line error).
"""

from __future__ import annotations

import os

from ..architectures import register_architecture
from ..registry import load_model
from .sam2_model import NO_OBJ_SCORE, Decoded, FrameFeatures, Sam2Config, Sam2Model

__all__ = ["Sam2Config", "Sam2Model", "FrameFeatures", "Decoded", "NO_OBJ_SCORE", "build_sam2", "load_medsam2",
           "DEFAULT_CONFIG"]

DEFAULT_CONFIG = "medsam2"


def build_sam2(cfg: Sam2Config | None = None) -> Sam2Model:
    """A randomly initialised :class:`Sam2Model` (eval mode)."""
    return Sam2Model(cfg or Sam2Config()).eval()


def load_medsam2(checkpoint: str | os.PathLike | None = None, config: str | os.PathLike | dict | None = None,
                 device: str = "cpu") -> Sam2Model:
    """The bare :class:`Sam2Model` of :func:`sam_med.models.load_model` (fp32, not cached).
    Raises :class:`~sam_med.errors.CheckpointError` (one line) for a missing, unsafe or
    mismatching file."""
    return load_model(DEFAULT_CONFIG if config is None else config, checkpoint=checkpoint, device=device,
                      precision="fp32", cache=False).model


register_architecture("sam2_hiera", lambda **kw: build_sam2(Sam2Config.from_dict(kw)))
