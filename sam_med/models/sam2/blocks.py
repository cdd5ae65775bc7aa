"""Small building blocks shared by the SAM 2 parts: MLP, channel LayerNorm, sine position maps.

Parameter names follow the official SAM 2 checkpoints (``layers.N``, ``weight``/``bias``), so
a ``MedSAM2_latest.pt`` or ``sam2.1_hiera_tiny.pt`` state dict loads key for key.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MLP", "LayerNorm2d", "SinePositionMap", "RandomFourierPE", "sine_pe_1d"]


class MLP(nn.Module):
    """``num_layers`` linear layers with ``act`` between them (``layers.0`` ... ``layers.N-1``)."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, num_layers: int,
                 act: type[nn.Module] = nn.ReLU, sigmoid_output: bool = False) -> None:
        super().__init__()
        dims = [d_in] + [d_hidden] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:] + [d_out]))
        self.act = act()
        self.sigmoid_output = sigmoid_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == last else self.act(layer(x))
        return torch.sigmoid(x) if self.sigmoid_output else x


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a ``(B, C, H, W)`` map."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class SinePositionMap(nn.Module):
    """DETR-style 2D sine/cosine position map ``(B, C, H, W)`` for a feature map (normalised
    positions times 2*pi; first half of the channels encodes y, second half x). No parameters;
    the map of each size is computed once and kept."""

    def __init__(self, channels: int, temperature: float = 10000.0) -> None:
        super().__init__()
        self.half = channels // 2
        self.temperature = temperature
        self._maps: dict[tuple[int, int, str], torch.Tensor] = {}

    def grid(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        key = (h, w, str(device))
        if key not in self._maps:
            eps, scale = 1e-6, 2 * math.pi
            y = torch.arange(1, h + 1, dtype=torch.float32, device=device).view(-1, 1).expand(h, w)
            x = torch.arange(1, w + 1, dtype=torch.float32, device=device).view(1, -1).expand(h, w)
            y = y / (float(h) + eps) * scale
            x = x / (float(w) + eps) * scale
            dim_t = torch.arange(self.half, dtype=torch.float32, device=device)
            dim_t = self.temperature ** (2 * (dim_t // 2) / self.half)
            px, py = x[..., None] / dim_t, y[..., None] / dim_t
            px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=3).flatten(2)
            py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=3).flatten(2)
            self._maps[key] = torch.cat((py, px), dim=2).permute(2, 0, 1).contiguous()
        return self._maps[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.grid(x.shape[-2], x.shape[-1], x.device)[None].expand(x.shape[0], -1, -1, -1).to(x.dtype)


def sine_pe_1d(pos: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """1D sine/cosine embedding of positions ``(N,)`` -> ``(N, dim)`` (sines then cosines)."""
    half = dim // 2
    dim_t = torch.arange(half, dtype=torch.float32, device=pos.device)
    dim_t = temperature ** (2 * (dim_t // 2) / half)
    e = pos.unsqueeze(-1) / dim_t
    return torch.cat([e.sin(), e.cos()], dim=-1)


class RandomFourierPE(nn.Module):
    """SAM's random Fourier features of (x, y) in [0, 1]; the Gaussian matrix is a buffer in the
    checkpoint (``positional_encoding_gaussian_matrix``, ``(2, C/2)``)."""

    def __init__(self, num_feats: int = 128) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn((2, num_feats)))

    def _encode(self, coords: torch.Tensor) -> torch.Tensor:
        c = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix
        c = 2 * np.pi * c
        return torch.cat([torch.sin(c), torch.cos(c)], dim=-1)

    def grid(self, h: int, w: int) -> torch.Tensor:
        """``(C, h, w)`` encoding of the pixel centres of an h x w grid."""
        ones = torch.ones((h, w), device=self.positional_encoding_gaussian_matrix.device)
        y = (ones.cumsum(dim=0) - 0.5) / h
        x = (ones.cumsum(dim=1) - 0.5) / w
        return self._encode(torch.stack([x, y], dim=-1)).permute(2, 0, 1)

    def points(self, coords: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``(B, N, 2)`` xy pixels of an image of ``size = (H, W)`` -> ``(B, N, C)``."""
        c = coords.clone()
        c[:, :, 0] = c[:, :, 0] / size[1]
        c[:, :, 1] = c[:, :, 1] / size[0]
        return self._encode(c.to(torch.float))


def interpolate_pos(pos: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of a ``(1, C, h, w)`` position embedding."""
    return F.interpolate(pos, size=size, mode="bicubic")
