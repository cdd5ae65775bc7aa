"""3D prompt encoder of SAM-Med3D (``PromptEncoder3D`` layout), our own implementation.

Points: ``coords`` (B, N, 3) float voxel indices inside the model's input cube in
the input tensor's axis order (d0, d1, d2) — for sam-med crops that is (i, j, k)
of the RAS-canonical crop; ``labels`` (B, N) int: 1 positive, 0 negative,
-1 padding. No +0.5 by the caller: like the official encoder we add 0.5 (voxel
centre) and divide component c by ``input_image_size[c]``.

Positional-encoding axis quirk (kept on purpose, see the reference JSON): the
dense image PE puts PE component 0 along grid dim 1 and component 1 along grid
dim 0 (SAM's 2D x/y habit), while points are encoded component c <-> tensor dim c.
The released weights were trained with exactly this mismatch, so "fixing" it
would misplace clicks.

Boxes are not supported by SAM-Med3D (only 2 point embeddings); the volumetric
predictor turns a 3D box into a crop + points instead.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..common import mask_downscaling


class PositionEmbeddingRandom3D(nn.Module):
    """Random Fourier features: ``cat(sin, cos, sin)(2 pi (2 c - 1) @ G)``, G (3, F)."""

    def __init__(self, num_pos_feats: int, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn(3, num_pos_feats))

    def _encode(self, coords: torch.Tensor) -> torch.Tensor:
        g = self.positional_encoding_gaussian_matrix
        c = (2 * coords - 1).to(g.dtype) @ g
        c = 2 * math.pi * c
        return torch.cat([torch.sin(c), torch.cos(c), torch.sin(c)], dim=-1)

    def dense(self, size: tuple[int, int, int]) -> torch.Tensor:
        """PE of a (s0, s1, s2) grid -> (C, s0, s1, s2), with the official axis order."""
        s0, s1, s2 = size
        dev = self.positional_encoding_gaussian_matrix.device
        grid = torch.ones(size, device=dev)
        along0 = (grid.cumsum(dim=0) - 0.5) / s1  # official: "y_embed / y" with (x, y, z) = size
        along1 = (grid.cumsum(dim=1) - 0.5) / s0  # official: "x_embed / x"
        along2 = (grid.cumsum(dim=2) - 0.5) / s2
        pe = self._encode(torch.stack([along1, along0, along2], dim=-1))  # component 0 <-> dim 1
        return pe.permute(3, 0, 1, 2)

    def with_coords(self, coords: torch.Tensor, image_size: tuple[int, int, int]) -> torch.Tensor:
        c = coords.clone().float()
        for a in range(3):
            c[..., a] = c[..., a] / image_size[a]
        return self._encode(c)


class PromptEncoder3D(nn.Module):
    def __init__(self, embed_dim: int = 384, image_embedding_size: tuple[int, int, int] = (8, 8, 8),
                 input_image_size: tuple[int, int, int] = (128, 128, 128), mask_in_chans: int = 16) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = tuple(image_embedding_size)
        self.input_image_size = tuple(input_image_size)
        self.pe_layer = PositionEmbeddingRandom3D(embed_dim // 3)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(2))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = tuple(4 * s for s in self.image_embedding_size)
        self.mask_downscaling = mask_downscaling(3, mask_in_chans, embed_dim)
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """(1, C, g0, g1, g2) positional encoding of the image embedding grid."""
        return self.pe_layer.dense(self.image_embedding_size).unsqueeze(0)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool = True) -> torch.Tensor:
        coords = coords + 0.5
        if pad:  # official: a padding point (label -1) is appended when there is no box
            coords = torch.cat([coords, coords.new_zeros(coords.shape[0], 1, 3)], dim=1)
            labels = torch.cat([labels, -labels.new_ones(labels.shape[0], 1)], dim=1)
        emb = self.pe_layer.with_coords(coords, self.input_image_size)
        lab = labels[..., None]
        emb = torch.where(lab == -1, self.not_a_point_embed.weight.to(emb.dtype), emb)
        emb = emb + (lab == 0) * self.point_embeddings[0].weight + (lab == 1) * self.point_embeddings[1].weight
        return emb

    def forward(self, points: tuple[torch.Tensor, torch.Tensor] | None, masks: torch.Tensor | None,
                batch_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns sparse (B, N+1, C) and dense (B, C, g0, g1, g2) embeddings.

        ``masks``: previous low-res logits (B, 1, 4 g0, 4 g1, 4 g2) or None (no-mask embedding).
        """
        if points is not None:
            batch_size = points[0].shape[0]
        elif masks is not None:
            batch_size = masks.shape[0]
        dev = self.no_mask_embed.weight.device
        sparse = torch.empty(batch_size, 0, self.embed_dim, device=dev)
        if points is not None:
            sparse = torch.cat([sparse, self.embed_points(points[0], points[1], pad=True)], dim=1)
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1, 1).expand(
                batch_size, -1, *self.image_embedding_size)
        return sparse, dense
