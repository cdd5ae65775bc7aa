"""3D mask decoder of SAM-Med3D (``MaskDecoder3D`` layout; its two-way transformer
is the 2D one, which works on flattened tokens), our own
implementation. Image embeddings (B, C, g0, g1, g2) + sparse tokens (B, N, C) + dense
prompt (B, C, g0, g1, g2) -> mask logits (B, M, 4 g0, 4 g1, 4 g2) and IoU predictions (B, M).
"""

from __future__ import annotations

import torch
from torch import nn

from ..common import output_upscaling
from ..mask_decoder import MLP
from ..transformer import TwoWayTransformer  # token/image attention is dimension-agnostic


class MaskDecoder3D(nn.Module):
    def __init__(self, transformer_dim: int = 384, num_multimask_outputs: int = 3,
                 transformer_depth: int = 2, transformer_heads: int = 8, transformer_mlp_dim: int = 2048,
                 iou_head_depth: int = 3, iou_head_hidden_dim: int = 256) -> None:
        super().__init__()
        d = transformer_dim
        self.transformer = TwoWayTransformer(depth=transformer_depth, embedding_dim=d,
                                              num_heads=transformer_heads, mlp_dim=transformer_mlp_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, d)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, d)
        self.output_upscaling = output_upscaling(3, d)
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(d, d, d // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(d, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def forward(self, image_embeddings, image_pe, sparse, dense, multimask_output: bool = False):
        """Returns (masks (B, 1 or 3, 4g, 4g, 4g) logits, iou (B, 1 or 3))."""
        tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([tokens[None].expand(sparse.shape[0], -1, -1).to(sparse.dtype), sparse], dim=1)
        src = image_embeddings
        if src.shape[0] != tokens.shape[0]:
            src = torch.repeat_interleave(src, tokens.shape[0], dim=0)
        src = src + dense
        pos = image_pe
        if pos.shape[0] != tokens.shape[0]:
            pos = torch.repeat_interleave(pos, tokens.shape[0], dim=0)
        b, c, g0, g1, g2 = src.shape
        hs, src = self.transformer(src, pos, tokens)
        iou_out = hs[:, 0]
        mask_out = hs[:, 1:1 + self.num_mask_tokens]
        up = self.output_upscaling(src.transpose(1, 2).reshape(b, c, g0, g1, g2))
        hyper = torch.stack([m(mask_out[:, i]) for i, m in enumerate(self.output_hypernetworks_mlps)], dim=1)
        b, c, u0, u1, u2 = up.shape
        masks = (hyper @ up.reshape(b, c, -1)).reshape(b, -1, u0, u1, u2)
        iou = self.iou_prediction_head(iou_out)
        sl = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, sl], iou[:, sl]
