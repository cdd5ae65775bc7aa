"""SAM 2's memory: the memory encoder (frame features + predicted mask -> 64-channel memory)
and the memory attention (4 layers of self-attention and cross-attention to the memory bank,
with 2D rotary position encoding). Key names match the official checkpoints
(``memory_encoder.*``, ``memory_attention.*``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import LayerNorm2d, SinePositionMap
from .heads import Attention

__all__ = ["RoPEAttention", "MemoryAttention", "MemoryEncoder", "axial_rope"]


def axial_rope(dim: int, end_x: int, end_y: int, theta: float = 10000.0) -> torch.Tensor:
    """Complex rotations ``(end_x * end_y, dim / 2)`` of a 2D axial RoPE (x half, then y half),
    positions in raster order."""
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 4)[: dim // 4].float() / dim))
    t = torch.arange(end_x * end_y, dtype=torch.float32)
    t_x = (t % end_x).float()
    t_y = torch.div(t, end_x, rounding_mode="floor").float()
    fx, fy = torch.outer(t_x, freqs), torch.outer(t_y, freqs)
    return torch.cat([torch.polar(torch.ones_like(fx), fx), torch.polar(torch.ones_like(fy), fy)], dim=-1)


def _rotate(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Rotate ``(B, H, N, C)`` by ``freqs (N', C/2)``; N a multiple of N' (memory of several frames)."""
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    r = xc.shape[-2] // freqs.shape[0]
    if r > 1:
        freqs = freqs.repeat(r, 1)
    return torch.view_as_real(xc * freqs).flatten(3).type_as(x)


class RoPEAttention(Attention):
    """Attention whose queries and (the first ``N - num_k_exclude_rope``) keys are rotated."""

    def __init__(self, dim: int = 256, num_heads: int = 1, kv_in_dim: int | None = None,
                 feat_sizes: tuple[int, int] = (32, 32), rope_theta: float = 10000.0, rope_k_repeat: bool = False):
        super().__init__(dim, num_heads, downsample_rate=1, kv_in_dim=kv_in_dim)
        self.theta = rope_theta
        self.rope_k_repeat = rope_k_repeat
        self._freqs: dict[tuple[int, str], torch.Tensor] = {}

    def _cis(self, n: int, device: torch.device) -> torch.Tensor:
        key = (n, str(device))
        if key not in self._freqs:
            side = math.sqrt(n)
            if side != int(side):
                raise ValueError(f"RoPE attention needs a square token grid, got {n} tokens")
            self._freqs[key] = axial_rope(self.internal_dim // self.num_heads, int(side), int(side),
                                          self.theta).to(device)
        return self._freqs[key]

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_k_exclude_rope: int = 0) -> torch.Tensor:
        q, k, v = self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))
        cis = self._cis(q.shape[-2], q.device)
        if q.shape[-2] != k.shape[-2] and not self.rope_k_repeat:
            raise ValueError("keys of another length than the queries need rope_k_repeat")
        n_rope = k.size(-2) - num_k_exclude_rope
        q = _rotate(q, cis)
        if n_rope > 0:
            k = torch.cat([_rotate(k[:, :, :n_rope], cis), k[:, :, n_rope:]], dim=2)
        return self.out_proj(self._merge(F.scaled_dot_product_attention(q, k, v)))


class MemoryAttentionLayer(nn.Module):
    def __init__(self, d_model: int = 256, dim_feedforward: int = 2048, kv_dim: int = 64,
                 feat_sizes: tuple[int, int] = (32, 32)) -> None:
        super().__init__()
        self.self_attn = RoPEAttention(d_model, 1, feat_sizes=feat_sizes)
        self.cross_attn_image = RoPEAttention(d_model, 1, kv_in_dim=kv_dim, feat_sizes=feat_sizes, rope_k_repeat=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(self, tgt, memory, pos, num_k_exclude_rope: int = 0):
        t = self.norm1(tgt)
        tgt = tgt + self.self_attn(t, t, t)
        t = self.norm2(tgt)
        tgt = tgt + self.cross_attn_image(t, memory + pos, memory, num_k_exclude_rope=num_k_exclude_rope)
        return tgt + self.linear2(F.relu(self.linear1(self.norm3(tgt))))


class MemoryAttention(nn.Module):
    """Conditions the current frame's S/16 tokens on the memory bank.

    ``curr (HW, B, C)`` + ``curr_pos``; ``memory (M, B, 64)`` + ``memory_pos``, its last
    ``num_obj_ptr_tokens`` tokens being object pointers (no RoPE). Returns ``(HW, B, C)``."""

    def __init__(self, d_model: int = 256, num_layers: int = 4, kv_dim: int = 64,
                 feat_sizes: tuple[int, int] = (32, 32)) -> None:
        super().__init__()
        self.layers = nn.ModuleList(MemoryAttentionLayer(d_model, 2048, kv_dim, feat_sizes) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, curr, curr_pos, memory, memory_pos, num_obj_ptr_tokens: int = 0) -> torch.Tensor:
        out = (curr + 0.1 * curr_pos).transpose(0, 1)
        memory, memory_pos = memory.transpose(0, 1), memory_pos.transpose(0, 1)
        for layer in self.layers:
            out = layer(out, memory, memory_pos, num_k_exclude_rope=num_obj_ptr_tokens)
        return self.norm(out).transpose(0, 1)


class CXBlock(nn.Module):
    """ConvNeXt block (depth-wise 7x7, LayerNorm, MLP x4, layer scale)."""

    def __init__(self, dim: int = 256) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(1e-6 * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)
        y = self.gamma * self.pwconv2(F.gelu(self.pwconv1(y)))
        return x + y.permute(0, 3, 1, 2)


class MaskDownSampler(nn.Module):
    """Mask ``(B, 1, S, S)`` -> ``(B, 256, S/16, S/16)``: four stride-2 3x3 convs (+LN, GELU), 1x1."""

    def __init__(self, embed_dim: int = 256, total_stride: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for _ in range(int(math.log2(total_stride))):
            cout = cin * 4
            layers += [nn.Conv2d(cin, cout, kernel_size=3, stride=2, padding=1), LayerNorm2d(cout), nn.GELU()]
            cin = cout
        layers.append(nn.Conv2d(cin, embed_dim, kernel_size=1))
        self.encoder = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


class MemoryEncoder(nn.Module):
    """Fuses the S/16 frame features with the downsampled mask; returns the memory
    ``(B, out_dim, h, w)`` and its sine position map."""

    def __init__(self, out_dim: int = 64, in_dim: int = 256) -> None:
        super().__init__()
        self.mask_downsampler = MaskDownSampler(in_dim)
        self.pix_feat_proj = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.fuser = nn.Module()
        self.fuser.layers = nn.ModuleList(CXBlock(in_dim) for _ in range(2))
        self.out_proj = nn.Conv2d(in_dim, out_dim, kernel_size=1)
        self.position_encoding = SinePositionMap(out_dim)

    def forward(self, pix_feat: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``mask`` already squashed (sigmoid or binarised, scaled)."""
        x = self.pix_feat_proj(pix_feat) + self.mask_downsampler(mask)
        for layer in self.fuser.layers:
            x = layer(x)
        x = self.out_proj(x)
        return x, self.position_encoding(x).to(x.dtype)
