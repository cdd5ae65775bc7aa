"""One place that turns a model name (or checkpoint) into a ``VolumePredictor``.

2D models (LiteMedSAM, SAM/MedSAM ViT-B, fine-tuned 2D weights) run slice-wise;
3D models (SAM-Med3D layouts) run on crops with the volumetric predictor. The
model's config says which (``dims: 3`` / architecture name).
"""

from __future__ import annotations

from typing import Any

from ..errors import SamMedError


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
    """A predictor for ``model`` (a registered name). Options go to the predictor class."""
    device = resolve_device(device)
    if is_volumetric(model):
        from .volumetric import VolumetricPredictor

        return VolumetricPredictor(model=model, checkpoint=checkpoint, device=device, **options)
    from .slicewise import SliceWisePredictor

    return SliceWisePredictor(model, checkpoint=checkpoint, device=device, **options)
