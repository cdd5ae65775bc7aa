"""SAM 2's image encoder: the Hiera trunk (multi-scale windowed attention) and the FPN neck.

Input ``(B, 3, S, S)`` (S = 512 for MedSAM2) normalised with ImageNet mean/std; output a
dict with ``backbone_fpn`` (three maps of 256 channels at S/4, S/8, S/16) and
``vision_pos_enc`` (their sine position maps); the S/32 level is dropped (``scalp=1``).
Key names match the official checkpoints (``image_encoder.trunk.*``, ``image_encoder.neck.*``).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import MLP, SinePositionMap

__all__ = ["Hiera", "FpnNeck", "ImageEncoder"]


def _windows(x: torch.Tensor, w: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """``(B, H, W, C)`` -> ``(B * nW, w, w, C)`` (zero-padded to a multiple of w), padded (Hp, Wp)."""
    b, h, wd, c = x.shape
    ph, pw = (w - h % w) % w, (w - wd % w) % w
    if ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    hp, wp = h + ph, wd + pw
    x = x.view(b, hp // w, w, wp // w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, w, w, c)
    return x, (hp, wp)


def _unwindows(x: torch.Tensor, w: int, padded: tuple[int, int], hw: tuple[int, int]) -> torch.Tensor:
    hp, wp = padded
    b = x.shape[0] // (hp * wp // w // w)
    x = x.reshape(b, hp // w, wp // w, w, w, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    return x[:, :hw[0], :hw[1], :] if (hp > hw[0] or wp > hw[1]) else x


def _pool(x: torch.Tensor, pool: nn.Module | None) -> torch.Tensor:
    if pool is None:
        return x
    return pool(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class MultiScaleAttention(nn.Module):
    def __init__(self, dim: int, dim_out: int, num_heads: int, q_pool: nn.Module | None = None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_pool = q_pool
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        q, k, v = torch.unbind(self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1), 2)
        if self.q_pool is not None:
            q = _pool(q.reshape(b, h, w, -1), self.q_pool)
            h, w = q.shape[1:3]
            q = q.reshape(b, h * w, self.num_heads, -1)
        x = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.proj(x.transpose(1, 2).reshape(b, h, w, -1))


class MultiScaleBlock(nn.Module):
    def __init__(self, dim: int, dim_out: int, num_heads: int, q_stride: tuple[int, int] | None,
                 window_size: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.dim, self.dim_out = dim, dim_out
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.window_size = window_size
        self.q_stride = q_stride
        self.pool = nn.MaxPool2d(kernel_size=q_stride, stride=q_stride) if q_stride else None
        self.attn = MultiScaleAttention(dim, dim_out, num_heads, q_pool=self.pool)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(dim_out, int(dim_out * mlp_ratio), dim_out, 2, act=nn.GELU)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            shortcut = _pool(self.proj(x), self.pool)
        ws = self.window_size
        h, w = x.shape[1], x.shape[2]
        if ws > 0:
            x, padded = _windows(x, ws)
        x = self.attn(x)
        if self.q_stride:
            ws = self.window_size // self.q_stride[0]
            h, w = shortcut.shape[1:3]
            padded = (h + (ws - h % ws) % ws, w + (ws - w % ws) % ws)
        if self.window_size > 0:
            x = _unwindows(x, ws, padded, (h, w))
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class Hiera(nn.Module):
    """Hiera trunk (Ryali et al. 2023) as configured by SAM 2; returns the four stage outputs
    ``(B, C_i, H_i, W_i)``, finest first."""

    def __init__(self, embed_dim: int = 96, num_heads: int = 1, stages: Sequence[int] = (1, 2, 7, 2),
                 global_att_blocks: Sequence[int] = (5, 7, 9), window_spec: Sequence[int] = (8, 4, 14, 7),
                 window_pos_embed_bkg_spatial_size: Sequence[int] = (7, 7), q_pool: int = 3,
                 q_stride: tuple[int, int] = (2, 2), dim_mul: float = 2.0, head_mul: float = 2.0) -> None:
        super().__init__()
        self.stage_ends = [sum(stages[:i]) - 1 for i in range(1, len(stages) + 1)]
        q_pool_blocks = [e + 1 for e in self.stage_ends[:-1]][:q_pool]
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, embed_dim, kernel_size=7, stride=4, padding=3)
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dim, *window_pos_embed_bkg_spatial_size))
        self.pos_embed_window = nn.Parameter(torch.zeros(1, embed_dim, window_spec[0], window_spec[0]))
        self.blocks = nn.ModuleList()
        stage = 1
        for i in range(sum(stages)):
            dim_out = embed_dim
            window = 0 if i in global_att_blocks else window_spec[stage - 1]
            if i - 1 in self.stage_ends:
                dim_out = int(embed_dim * dim_mul)
                num_heads = int(num_heads * head_mul)
                stage += 1
            self.blocks.append(MultiScaleBlock(embed_dim, dim_out, num_heads,
                                               q_stride if i in q_pool_blocks else None, window))
            embed_dim = dim_out
        self.channel_list = [self.blocks[i].dim_out for i in self.stage_ends[::-1]]

    def _pos(self, h: int, w: int) -> torch.Tensor:
        pos = F.interpolate(self.pos_embed, size=(h, w), mode="bicubic")
        win = self.pos_embed_window
        pos = pos + win.tile([a // b for a, b in zip(pos.shape, win.shape)])
        return pos.permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed.proj(x).permute(0, 2, 3, 1)
        x = x + self._pos(x.shape[1], x.shape[2])
        outs = []
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i in self.stage_ends:
                outs.append(x.permute(0, 3, 1, 2))
        return outs


class FpnNeck(nn.Module):
    """1x1 lateral convs to ``d_model``; nearest-neighbour top-down sums on ``top_down_levels``."""

    def __init__(self, d_model: int = 256, backbone_channel_list: Sequence[int] = (768, 384, 192, 96),
                 top_down_levels: Sequence[int] = (2, 3)) -> None:
        super().__init__()
        self.d_model = d_model
        self.backbone_channel_list = list(backbone_channel_list)
        self.convs = nn.ModuleList()
        for dim in backbone_channel_list:
            m = nn.Sequential()
            m.add_module("conv", nn.Conv2d(dim, d_model, kernel_size=1))
            self.convs.append(m)
        self.top_down_levels = list(top_down_levels)
        self.position_encoding = SinePositionMap(d_model)

    def forward(self, xs: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        n = len(self.convs) - 1
        out: list = [None] * (n + 1)
        pos: list = [None] * (n + 1)
        prev = None
        for i in range(n, -1, -1):
            lateral = self.convs[n - i](xs[i])
            if i in self.top_down_levels and prev is not None:
                prev = lateral + F.interpolate(prev.to(torch.float32), scale_factor=2.0, mode="nearest")
            else:
                prev = lateral
            out[i] = prev
            pos[i] = self.position_encoding(prev).to(prev.dtype)
        return out, pos


class ImageEncoder(nn.Module):
    """Trunk + neck; drops the ``scalp`` coarsest levels."""

    def __init__(self, trunk: Hiera, neck: FpnNeck, scalp: int = 1) -> None:
        super().__init__()
        if trunk.channel_list != neck.backbone_channel_list:
            raise ValueError(f"Hiera channels {trunk.channel_list} do not match the neck's "
                             f"{neck.backbone_channel_list}")
        self.trunk, self.neck, self.scalp = trunk, neck, scalp

    def forward(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        feats, pos = self.neck(self.trunk(x))
        if self.scalp > 0:
            feats, pos = feats[:-self.scalp], pos[:-self.scalp]
        return {"backbone_fpn": feats, "vision_pos_enc": pos}
