"""SAM prompt encoder: sparse (points, box corners) and dense (mask) prompt embeddings.

Coordinates are in **model-input pixels** (the resized, padded S×S image), x first.
Point labels: 1 foreground, 0 background, -1 padding ("not a point").
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .common import mask_downscaling, tensor_stamp


class RandomFourierPE(nn.Module):
    """Positional encoding with a fixed random Gaussian projection (buffer of shape ``(2, F)``)."""

    def __init__(self, num_pos_feats: int = 128, scale: float | None = None) -> None:
        super().__init__()
        scale = 1.0 if scale is None or scale <= 0 else scale
        self.register_buffer("positional_encoding_gaussian_matrix",
                             scale * torch.randn((2, num_pos_feats)))

    def _encode(self, coords: torch.Tensor) -> torch.Tensor:
        """``coords (..., 2)`` in [0, 1] -> ``(..., 2F)``."""
        coords = 2 * coords - 1
        coords = coords @ self.positional_encoding_gaussian_matrix.to(coords.dtype)
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Dense encoding of an ``(h, w)`` grid of cell centres -> ``(2F, h, w)``."""
        h, w = size
        dev = self.positional_encoding_gaussian_matrix.device
        grid = torch.ones((h, w), device=dev, dtype=torch.float32)
        y = (grid.cumsum(dim=0) - 0.5) / h
        x = (grid.cumsum(dim=1) - 0.5) / w
        return self._encode(torch.stack([x, y], dim=-1)).permute(2, 0, 1)

    def forward_with_coords(self, coords: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """``coords (B, N, 2)`` xy pixels of an image of ``image_size (H, W)`` -> ``(B, N, 2F)``."""
        coords = coords.clone().float()
        coords[..., 0] = coords[..., 0] / image_size[1]
        coords[..., 1] = coords[..., 1] / image_size[0]
        return self._encode(coords)


class PromptEncoder(nn.Module):
    """Embeds points ``(B, N, 2)`` + labels ``(B, N)``, boxes ``(B, 4)``/``(B, 1, 4)`` XYXY and
    masks ``(B, 1, 4h, 4w)`` (low-res logits) into sparse ``(B, K, C)`` and dense
    ``(B, C, h, w)`` embeddings, where ``(h, w) = image_embedding_size``."""

    def __init__(self, embed_dim: int = 256, image_embedding_size: tuple[int, int] = (64, 64),
                 input_image_size: tuple[int, int] = (1024, 1024), mask_in_chans: int = 16) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = tuple(image_embedding_size)
        self.input_image_size = tuple(input_image_size)
        self.pe_layer = RandomFourierPE(embed_dim // 2)
        # 0: background point, 1: foreground point, 2: box top-left, 3: box bottom-right
        self.point_embeddings = nn.ModuleList([nn.Embedding(1, embed_dim) for _ in range(4)])
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = mask_downscaling(2, mask_in_chans, embed_dim)
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self, embedding_hw: tuple[int, int] | None = None) -> torch.Tensor:
        """Positional encoding of the image embedding grid, ``(1, C, h, w)``.

        A reduced input (``r x r`` < the model's ``S x S``, embedding ``r/4``) is read as
        the top-left corner of a zero-padded ``S x S`` canvas, the layout the model was
        trained on for non-square images: its grid takes the top-left ``(h, w)`` of the full
        encoding, and prompt coordinates stay normalised by ``S``."""
        hw = tuple(self.image_embedding_size) if embedding_hw is None else tuple(int(v) for v in embedding_hw)
        g = self.pe_layer.positional_encoding_gaussian_matrix
        key = (hw, tensor_stamp(g))
        inference = not (self.training or torch.is_grad_enabled())
        memo = getattr(self, "_pe_memo", None) if inference else None
        if memo is not None and memo[0] == key:
            return memo[1]  # the same (constant) grid: computed once per size at inference
        pe = self.pe_layer(self.image_embedding_size).unsqueeze(0)
        if hw != tuple(self.image_embedding_size):
            pe = pe[..., :hw[0], :hw[1]]
        if inference:
            self._pe_memo = (key, pe)
        return pe

    def _embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        points = points + 0.5  # pixel centres
        if pad:
            points = torch.cat([points, torch.zeros_like(points[:, :1])], dim=1)
            labels = torch.cat([labels, -torch.ones_like(labels[:, :1])], dim=1)
        emb = self.pe_layer.forward_with_coords(points, self.input_image_size)
        lab = labels[..., None]
        emb = torch.where(lab == -1, torch.zeros_like(emb), emb)
        emb = emb + (lab == -1) * self.not_a_point_embed.weight
        emb = emb + (lab == 0) * self.point_embeddings[0].weight
        emb = emb + (lab == 1) * self.point_embeddings[1].weight
        return emb

    def _embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        boxes = boxes + 0.5
        corners = self.pe_layer.forward_with_coords(boxes.reshape(-1, 2, 2), self.input_image_size)
        corners[:, 0, :] += self.point_embeddings[2].weight[0]
        corners[:, 1, :] += self.point_embeddings[3].weight[0]
        return corners

    def _batch_size(self, points, boxes, masks) -> int:
        if points is not None:
            return points[0].shape[0]
        if boxes is not None:
            return boxes.shape[0]
        if masks is not None:
            return masks.shape[0]
        return 1

    def forward(self, points: tuple[torch.Tensor, torch.Tensor] | None,
                boxes: torch.Tensor | None,
                masks: torch.Tensor | None,
                embedding_hw: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(sparse (B, K, C), dense (B, C, h, w))``.

        ``points`` is ``(coords (B, N, 2), labels (B, N))``; without a box a padding
        point is appended (SAM convention). ``embedding_hw`` is the embedding grid when
        it is smaller than ``image_embedding_size`` (a reduced input, see
        :meth:`get_dense_pe`)."""
        bs = self._batch_size(points, boxes, masks)
        dev = self.point_embeddings[0].weight.device
        sparse = torch.empty((bs, 0, self.embed_dim), device=dev)
        if points is not None:
            coords, labels = points
            sparse = torch.cat([sparse, self._embed_points(coords, labels, pad=boxes is None)], dim=1)
        if boxes is not None:
            sparse = torch.cat([sparse, self._embed_boxes(boxes)], dim=1)
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            h, w = embedding_hw if embedding_hw is not None else self.image_embedding_size
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(bs, -1, h, w)
        return sparse, dense
