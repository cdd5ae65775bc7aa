"""Composition of the SAM-Med3D parts and the architecture configuration.

:class:`Sam3D` receives built parts (it wires nothing itself); :func:`build_sam3d`
is the one place where hyper-parameters become modules. ``Sam3DConfig()`` is the
released SAM-Med3D / SAM-Med3D-turbo ``vit_b_ori`` architecture (100,509,232
parameters); :meth:`Sam3DConfig.small` is a tiny variant for CPU fine-tuning tests.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .image_encoder3d import EncoderConfig, ImageEncoderViT3D
from .mask_decoder3d import MaskDecoder3D
from .prompt_encoder3d import PromptEncoder3D


@dataclass
class Sam3DConfig:
    """Architecture + the input geometry it expects (1-channel cube at ``spacing`` mm, RAS)."""

    img_size: int = 128
    patch_size: int = 16
    encoder_embed_dim: int = 768
    encoder_depth: int = 12
    encoder_num_heads: int = 12
    encoder_window_size: int = 14
    encoder_global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    prompt_embed_dim: int = 384
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048
    iou_head_hidden_dim: int = 256
    spacing: tuple[float, float, float] = (1.5, 1.5, 1.5)

    @classmethod
    def small(cls, **over: Any) -> "Sam3DConfig":
        """Depth-2, width-96 model on 64^3 crops (8^3 tokens of 8^3 voxels) for CPU training."""
        base = dict(img_size=64, patch_size=8, encoder_embed_dim=96, encoder_depth=2, encoder_num_heads=4,
                    encoder_window_size=4, encoder_global_attn_indexes=(1,), prompt_embed_dim=96,
                    decoder_depth=2, decoder_heads=4, decoder_mlp_dim=256, iou_head_hidden_dim=64)
        base.update(over)
        return cls(**base)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Sam3DConfig":
        d = dict(d or {})
        d.pop("_target_", None)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown Sam3D architecture options {unknown}; known: {sorted(names)}")
        for k in ("encoder_global_attn_indexes", "spacing"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size


class Sam3D(nn.Module):
    """SAM-Med3D: image encoder + prompt encoder + mask decoder.

    Two calls, as in the official inference loop: :meth:`encode` once per crop,
    :meth:`decode` per prompt set / click (cheap).
    """

    def __init__(self, image_encoder: ImageEncoderViT3D, prompt_encoder: PromptEncoder3D,
                 mask_decoder: MaskDecoder3D, config: Sam3DConfig) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.config = config

    @property
    def img_size(self) -> int:
        return self.config.img_size

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 1, S, S, S) z-normalised crop -> (B, C, g, g, g) embeddings."""
        return self.image_encoder(image)

    def decode(self, embeddings: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor,
               mask_logits: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Points (B, N, 3) voxel indices of the crop in tensor-dim order + labels (B, N)
        [+ previous low-res logits (B, 1, S/4, S/4, S/4)] -> (low-res logits (B, 1, S/4..), iou (B, 1))."""
        sparse, dense = self.prompt_encoder((coords, labels), mask_logits)
        return self.mask_decoder(embeddings, self.prompt_encoder.get_dense_pe().to(embeddings.dtype),
                                 sparse.to(embeddings.dtype), dense.to(embeddings.dtype), multimask_output=False)

    def forward(self, image, coords, labels, mask_logits=None):
        """Training convenience: full-resolution logits (B, 1, S, S, S) and iou (B, 1)."""
        low, iou = self.decode(self.encode(image), coords, labels, mask_logits)
        return F.interpolate(low, size=image.shape[-3:], mode="trilinear", align_corners=False), low, iou


def build_sam3d(config: Sam3DConfig | dict | None = None) -> Sam3D:
    """Build the (randomly initialised) SAM-Med3D architecture described by ``config``."""
    cfg = config if isinstance(config, Sam3DConfig) else Sam3DConfig.from_dict(config)
    g = cfg.grid
    enc = ImageEncoderViT3D(EncoderConfig(
        img_size=cfg.img_size, patch_size=cfg.patch_size, embed_dim=cfg.encoder_embed_dim,
        depth=cfg.encoder_depth, num_heads=cfg.encoder_num_heads, out_chans=cfg.prompt_embed_dim,
        window_size=cfg.encoder_window_size, global_attn_indexes=tuple(cfg.encoder_global_attn_indexes)))
    pe = PromptEncoder3D(cfg.prompt_embed_dim, (g, g, g), (cfg.img_size,) * 3, cfg.mask_in_chans)
    dec = MaskDecoder3D(cfg.prompt_embed_dim, 3, cfg.decoder_depth, cfg.decoder_heads, cfg.decoder_mlp_dim,
                        3, cfg.iou_head_hidden_dim)
    return Sam3D(enc, pe, dec, cfg)
