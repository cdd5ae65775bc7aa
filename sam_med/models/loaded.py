"""What :func:`sam_med.models.load_model` returns: one kind per dims.

* :class:`LoadedModel` (``dims: 2``): a SAM-style 2D model plus its config-declared
  intensity step, slice preprocessing and inverse (used slice-wise);
* :class:`LoadedModel3D` (``dims: 3``): a SAM-Med3D-style volumetric model plus its
  resampling geometry (used on crops).

Both carry ``name``, ``model`` (eval mode, no grad), ``config`` (resolved dict),
``sha256`` of the weights, ``image_size``, ``precision`` (``fp32``/``bf16``/``fp16``, see
:mod:`.precision`), ``autocast_dtype`` (None = fp32), ``device`` and ``checkpoint_path``;
:meth:`encode` runs under that precision; everything returns float32 (the 2D decoder
always runs in fp32: it is cheap and its logits decide the mask).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import SamMedError

__all__ = ["LoadedModel", "LoadedModel3D"]


@dataclass
class _Loaded:
    name: str
    model: nn.Module
    config: dict[str, Any]
    sha256: str | None
    image_size: int
    autocast_dtype: torch.dtype | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    checkpoint_path: str = ""
    precision: str = "fp32"
    #: ``(sha256, base name, base sha256)`` for a decoder-only fine-tune (a ``partial`` delta
    #: without image-encoder tensors): its image encoder is that base model's; see
    #: :meth:`encoder_signature`. None: the encoder is this model's own.
    encoder_of: tuple | None = None

    dims = 2

    def encoder_signature(self) -> tuple:
        """``(name, sha256)`` naming the image encoder's weights (the embedding cache's model
        key): the base model's for a decoder-only fine-tune, so switching between the two
        reuses every encoded slice; this model's own otherwise, and whenever ``sha256`` no
        longer is the one ``encoder_of`` was recorded for (a copy with other weights)."""
        enc = self.encoder_of
        if enc is not None and enc[0] == self.sha256:
            return (enc[1], enc[2])
        return (self.name, self.sha256)

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)


@dataclass
class LoadedModel(_Loaded):
    """A 2D model ready for inference plus everything needed to feed it.

    ``model`` is a :class:`~sam_med.models.sam.Sam` with ``.image_encoder``,
    ``.prompt_encoder``, ``.mask_decoder``; ``image_size`` S (256 LiteMedSAM, 1024 SAM);
    ``intensity`` the config's per-input-kind transforms (``hu``, ``raw_mr``,
    ``windowed``; see :meth:`intensity_to_uint8_range`); ``preprocess``
    (:class:`~sam_med.transforms.SlicePreprocessor`) and ``postprocessor``
    (:class:`~sam_med.transforms.LowResToSource`) from the config.
    """

    preprocess: Any = None
    postprocessor: Any = None
    intensity: dict[str, Any] = field(default_factory=dict)

    # -- intensity + geometry helpers
    def intensity_transform(self, intensity: str, modality: str | None = None,
                            window: tuple[float, float] | None = None):
        """The config's transform for this input (what :meth:`intensity_to_uint8_range` runs):
        ``"windowed"`` -> ``intensity.windowed``; ``"hu"`` or ``"raw"`` CT -> ``intensity.hu``
        (or :func:`~sam_med.transforms.ct_window_transform` of ``window = (level, width)``);
        ``"raw"`` other -> ``intensity.raw_mr`` (percentiles of the whole array given)."""
        from ..transforms import ct_window_transform, default_intensity_transforms

        kind = str(intensity).lower()
        table = self.intensity or default_intensity_transforms()
        if kind == "hu" or (kind == "raw" and (modality or "").upper() == "CT"):
            if window is not None:
                level, width = (float(v) for v in window)
                return ct_window_transform(level, width)
            return table["hu"]
        if kind == "raw":
            return table["raw_mr"]
        if kind == "windowed":
            return table["windowed"]
        raise ValueError(f"unknown intensity {intensity!r}: expected 'windowed', 'hu' or 'raw'")

    def intensity_to_uint8_range(self, array, intensity: str, modality: str | None = None,
                                 window: tuple[float, float] | None = None) -> np.ndarray:
        """Per-modality intensity step of this model's config -> float32 array in [0, 255]
        (same shape). Pass the whole volume for raw MR (percentiles of its nonzero voxels)."""
        from ..voxelwise import map_voxelwise

        return map_voxelwise(self.intensity_transform(intensity, modality, window), np.asarray(array))

    @property
    def supports_reduced_input(self) -> bool:
        """True when the encoder runs on ``r x r`` inputs smaller than ``S x S`` (TinyViT:
        convolutional + windowed attention; ViT has absolute position embeddings)."""
        return bool(getattr(self.model.image_encoder, "supports_reduced_input", False))

    def preprocess_at(self, size: int):
        """The model's slice preprocessing with output size ``size`` (<= S): a reduced
        input for :meth:`encode` (see :meth:`supports_reduced_input`)."""
        if int(size) == self.image_size:
            return self.preprocess
        if not self.supports_reduced_input:
            raise ValueError(f"{self.name}: the encoder needs {self.image_size}x{self.image_size} inputs")
        return self.preprocess.at_size(int(size))

    def box_to_model(self, box, original_size) -> np.ndarray:
        """XYXY source pixels ``(4,)``/``(B, 4)`` -> model-input pixels (config's box rule;
        LiteMedSAM: ``int(c * 256 / max(H, W))``)."""
        return self.preprocess.box_to_model(box, original_size)

    def points_to_model(self, points, original_size) -> np.ndarray:
        """xy source pixels ``(..., 2)`` -> model-input pixels (``x*new_w/W``, ``y*new_h/H``)."""
        return self.preprocess.points_to_model(points, original_size)

    # -- batched tensor API
    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``images (B, 3, S, S)`` float32 (from :attr:`preprocess`) -> embeddings
        ``(B, 256, 64, 64)`` float32 on :attr:`device` (no grad; autocast if set)."""
        if images.ndim == 3:
            images = images[None]
        s = self.image_size
        ok = images.ndim == 4 and tuple(images.shape[1:]) == (3, s, s)
        if not ok and images.ndim == 4 and images.shape[1] == 3 and self.supports_reduced_input:
            r = int(images.shape[-1])
            ok = images.shape[-2] == r and r <= s and r % 16 == 0
        if not ok:
            raise ValueError(f"encode expects (B, 3, {s}, {s}), got {tuple(images.shape)}")
        with self._autocast():
            out = self.model.image_encoder(images.to(self.device, torch.float32))
        return out.float()

    @torch.inference_mode()
    def decode(self, embeddings: torch.Tensor, boxes=None, points=None, point_labels=None,
               mask_input=None, multimask: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder + mask decoder on precomputed embeddings.

        embeddings ``(B, 256, 64, 64)`` (B=1 is broadcast over the prompt batch);
        boxes ``(B, 4)`` XYXY, points ``(B, N, 2)`` xy, point_labels ``(B, N)`` (1 fg,
        0 bg, -1 pad; default all 1) — coordinates in **model-input pixels** (see
        :meth:`box_to_model`); mask_input ``(B, 1, 256, 256)`` low-res logits of a
        previous prediction. Returns ``(low_res_logits (B, K, 256, 256), iou (B, K))``
        float32, K = 3 if ``multimask`` else 1. Runs in fp32 whatever :attr:`precision` is.
        """
        dev = self.device

        def t(x, dtype=torch.float32):
            return None if x is None else torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x,
                                                          dtype=dtype, device=dev)
        boxes, points, mask_input = t(boxes), t(points), t(mask_input)
        point_labels = t(point_labels, torch.int64)
        if boxes is None and points is None and mask_input is None:
            raise SamMedError("decode needs at least one prompt (box, points or mask_input)")
        if boxes is not None and boxes.shape[-1] != 4:
            raise ValueError(f"boxes must be (B, 4) XYXY, got {tuple(boxes.shape)}")
        if points is not None:
            if points.ndim == 2:
                points = points[None]
            if point_labels is not None and point_labels.ndim == 1:
                point_labels = point_labels[None]
        # fp32 always: the decoder is ~1 % of the encoder's cost, and its logits decide the mask
        logits, iou = self.model.decode(embeddings.to(dev, torch.float32), boxes=boxes, points=points,
                                        point_labels=point_labels, mask_input=mask_input,
                                        multimask=multimask)
        return logits.float(), iou.float()

    def postprocess(self, low_res_logits: torch.Tensor, meta) -> torch.Tensor:
        """Low-res logits ``(..., 256, 256)`` -> logits on the source slice ``(..., H, W)``
        (crop the unpadded region, bilinear ``align_corners=False``). Threshold at 0."""
        return self.postprocessor(low_res_logits, meta)


@dataclass
class LoadedModel3D(_Loaded):
    """A volumetric model (``dims: 3``, e.g. SAM-Med3D-turbo) ready for inference.

    ``model`` is a :class:`~sam_med.models.sam3d.Sam3D`; ``image_size`` the crop edge in
    voxels; ``spacing`` the resampling grid (mm); ``geometry`` the config's MONAI
    transforms that bring a ``(1, X, Y, Z)`` MetaTensor to the model's orientation and
    spacing (invertible); ``preprocessing`` the rest of the config's section (crop size,
    normalisation, tile overlap, threshold).
    """

    spacing: tuple[float, float, float] = (1.5, 1.5, 1.5)
    geometry: list = field(default_factory=list)
    preprocessing: dict[str, Any] = field(default_factory=dict)

    dims = 3

    @torch.inference_mode()
    def encode(self, crops: torch.Tensor) -> torch.Tensor:
        """``crops (B, 1, S, S, S)`` normalised -> embeddings ``(B, C, g, g, g)`` float32."""
        with self._autocast():
            return self.model.encode(crops.to(self.device, torch.float32)).float()

    @torch.inference_mode()
    def decode(self, embeddings: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor,
               mask_logits: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Points ``(B, N, 3)`` crop voxel indices + labels ``(B, N)`` [+ previous low-res
        logits ``(B, 1, S/4, S/4, S/4)``] -> ``(low-res logits, iou (B, 1))`` float32."""
        with self._autocast():
            low, iou = self.model.decode(embeddings.to(self.device), coords.to(self.device),
                                         labels.to(self.device),
                                         None if mask_logits is None else mask_logits.to(self.device))
        return low.float(), iou.float()
