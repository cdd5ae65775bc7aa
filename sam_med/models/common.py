"""Small building blocks shared by the SAM-family modules (our own implementation).

Module attribute names follow the checkpoint layouts recorded in
``../shared/reference/*.json`` so that published weights load strictly.
"""

from __future__ import annotations

import torch
from torch import nn


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a ``(B, C, *spatial)`` tensor (eps 1e-6 as in SAM);
    used for 2D ``(B, C, H, W)`` and, as :data:`LayerNorm3d`, 3D ``(B, C, D, H, W)`` maps."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=1, keepdim=True)
        var = (x - mean).pow(2).mean(dim=1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        shape = (-1,) + (1,) * (x.ndim - 2)
        return x * self.weight.view(shape) + self.bias.view(shape)


LayerNorm3d = LayerNorm2d


class MLPBlock(nn.Module):
    """Two linear layers with an activation in between (``lin1`` → act → ``lin2``)."""

    def __init__(self, embedding_dim: int, mlp_dim: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))


class ConvBN(nn.Sequential):
    """Bias-free ``Conv2d`` (child ``c``) followed by ``BatchNorm2d`` (child ``bn``)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 1, stride: int = 1,
                 padding: int = 0, groups: int = 1, bn_weight_init: float = 1.0) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding,
                                       groups=groups, bias=False))
        bn = nn.BatchNorm2d(out_ch)
        nn.init.constant_(bn.weight, bn_weight_init)
        nn.init.zeros_(bn.bias)
        self.add_module("bn", bn)
