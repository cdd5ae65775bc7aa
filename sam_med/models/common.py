"""Small building blocks shared by the SAM-family modules (our own implementation).

Module attribute names follow the checkpoint layouts recorded in
``../shared/reference/*.json`` so that published weights load strictly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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
        self._fused: tuple | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Training, or with autograd on: conv then BatchNorm. Inference (eval mode, no
        grad): one convolution with the BatchNorm folded into its weight and bias
        (``w * g / sqrt(var + eps)``, ``b - mean * g / sqrt(var + eps)``), cached until a
        parameter or buffer changes. Same result to float rounding, one pass less over
        the activations."""
        if self.training or torch.is_grad_enabled() or not self.fold:
            return self.bn(self.c(x))
        conv = self.c
        w, b = self._folded()
        return F.conv2d(x, w.to(x.dtype), b.to(x.dtype), conv.stride, conv.padding, conv.dilation,
                        conv.groups)

    #: fold the BatchNorm at inference (False: the plain conv + BN, e.g. as a reference)
    fold = True

    def _folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        conv, bn = self.c, self.bn
        tensors = (conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var)
        key = tuple((t.data_ptr(), t._version, t.device, t.dtype) for t in tensors)
        if self._fused is None or self._fused[0] != key:
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            w = conv.weight * scale.view(-1, 1, 1, 1)
            b = bn.bias - bn.running_mean * scale
            self._fused = (key, w.detach().clone(), b.detach().clone())
        return self._fused[1], self._fused[2]
