"""One place that turns a model name (or checkpoint) into a ``VolumePredictor``.

2D models (LiteMedSAM, SAM/MedSAM ViT-B, fine-tuned 2D weights) run slice-wise;
3D models (SAM-Med3D layouts) run on crops with the volumetric predictor. The
model's config says which (``dims: 3`` / architecture name).

Options are typed (:func:`~sam_med.predictors.base.build_options`): each predictor's
options dataclass says which it takes (:class:`~.slicewise.SliceWiseOptions`,
:class:`~.volumetric.VolumetricOptions`); any other option, or a value of the wrong
type, is an :class:`~sam_med.predictors.base.OptionError` (one line, exit 2 on the CLI).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from ..errors import SamMedError
from .base import OptionError, build_options

__all__ = ["build_predictor", "resolve_device", "is_volumetric"]


def resolve_device(device: str | None) -> str:
    """"auto" → "cuda" when a CUDA device is usable, else "cpu"."""
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SamMedError(f"device {device!r} requested but no CUDA device is available (use --device cpu)")
    return device


def is_volumetric(model: str) -> bool:
    from ..models import registry

    cfg = registry.read_model_config(model)
    arch = str(cfg.get("architecture", ""))
    return int(cfg.get("dims", 2)) == 3 or "3d" in arch.lower()


def build_predictor(model: str = "lite_medsam", device: str | None = "cpu", *,
                    checkpoint: str | None = None, **options: Any):
    """A predictor for ``model`` (a registered name), with typed ``options``.

    Slice-wise (2D models): the :class:`~.slicewise.SliceWiseOptions` fields, plus
    ``cache_dir`` (on-disk embedding store; default ``$SAM_MED_CACHE_DIR``, else in memory only). Volumetric (3D models): the
    :class:`~.volumetric.VolumetricOptions` fields. Values may be strings from a command
    line (``"false"``, ``"5"``, ``"[40, 400]"``) or Python values."""
    from ..models import registry
    from .sam2video import Sam2VideoOptions, Sam2VideoPredictor, is_sam2_video

    if is_sam2_video(registry.read_model_config(model)):  # MedSAM2 / SAM 2: slices as video frames
        opts = build_options(Sam2VideoOptions, options, owner=f"the SAM 2 video predictor ({model})")
        return Sam2VideoPredictor(model, checkpoint=checkpoint, device=resolve_device(device), options=opts)
    if is_volumetric(model):
        from .volumetric import VolumetricOptions, VolumetricPredictor

        opts = build_options(VolumetricOptions, options, owner=f"the volumetric predictor ({model})")
        return VolumetricPredictor(model=model, checkpoint=checkpoint, device=resolve_device(device),
                                   **dataclasses.asdict(opts))
    from .slicewise import SliceWiseOptions, SliceWisePredictor

    cache_dir = options.pop("cache_dir", None) or os.environ.get("SAM_MED_CACHE_DIR") or None
    if cache_dir is not None and not isinstance(cache_dir, (str, bytes)) and not hasattr(cache_dir, "__fspath__"):
        raise OptionError(f"cache_dir must be a folder path, got {cache_dir!r}")
    opts = build_options(SliceWiseOptions, options, owner=f"the slice-wise predictor ({model})")
    return SliceWisePredictor(model, checkpoint=checkpoint, device=resolve_device(device),
                              cache_dir=None if cache_dir is None else str(cache_dir), options=opts)
