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


def _conv(dims: int, transpose: bool = False) -> type[nn.Module]:
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims}")
    if transpose:
        return nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d
    return nn.Conv2d if dims == 2 else nn.Conv3d


class ConvPatchEmbed(nn.Module):
    """Non-overlapping patch projection, channels last: ``(B, C_in, *S) -> (B, *S/p, C)``
    for ``dims`` = 2 (``S = H, W``) or 3 (``S = D, H, W``); weights at ``proj``."""

    def __init__(self, dims: int, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = _conv(dims)(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        return x.permute(0, *range(2, x.ndim), 1)


def mask_downscaling(dims: int, mask_in_chans: int, embed_dim: int) -> nn.Sequential:
    """SAM's dense-prompt encoder ``(B, 1, *4S) -> (B, embed_dim, *S)``: two stride-2 convs
    (each + LayerNorm + GELU) and a 1-voxel conv; indices 0/1/3/4/6 as in SAM checkpoints."""
    conv, c = _conv(dims), mask_in_chans
    return nn.Sequential(
        conv(1, c // 4, kernel_size=2, stride=2), LayerNorm2d(c // 4), nn.GELU(),
        conv(c // 4, c, kernel_size=2, stride=2), LayerNorm2d(c), nn.GELU(),
        conv(c, embed_dim, kernel_size=1),
    )


def output_upscaling(dims: int, dim: int, activation: type[nn.Module] = nn.GELU) -> nn.Sequential:
    """SAM's mask-decoder upscaler ``(B, dim, *S) -> (B, dim/8, *4S)``: two stride-2 transposed
    convs (the first + LayerNorm), each followed by ``activation``; indices 0/1/3 as in SAM."""
    up = _conv(dims, transpose=True)
    return nn.Sequential(
        up(dim, dim // 4, kernel_size=2, stride=2), LayerNorm2d(dim // 4), activation(),
        up(dim // 4, dim // 8, kernel_size=2, stride=2), activation(),
    )


def rel_pos_table(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """Relative-position embeddings ``(q_size, k_size, C)`` for one axis.

    ``rel_pos`` has ``2 * max(q, k) - 1`` rows; a table of another length (weights
    trained at another resolution) is linearly resized first.
    """
    n = 2 * max(q_size, k_size) - 1
    if rel_pos.shape[0] != n:
        rel_pos = F.interpolate(rel_pos.t()[None], size=n, mode="linear")[0].t()
    q = torch.arange(q_size, device=rel_pos.device)[:, None] * max(k_size / q_size, 1.0)
    k = torch.arange(k_size, device=rel_pos.device)[None, :] * max(q_size / k_size, 1.0)
    idx = (q - k) + (k_size - 1) * max(q_size / k_size, 1.0)
    return rel_pos[idx.long()]


class RelPosAttention(nn.Module):
    """Multi-head self-attention parts over a channels-last token grid: ``qkv`` and ``proj``
    linear layers and, with ``use_rel_pos``, one ``rel_pos_<axis>`` table ``(2 * size - 1,
    head_dim)`` per grid axis (``axes`` = "hw" for 2D, "dhw" for 3D; sizes from ``input_size``).
    Subclasses define ``forward`` for their grid."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, use_rel_pos: bool,
                 input_size: tuple[int, ...] | None, axes: str) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            if input_size is None or len(input_size) != len(axes):
                raise ValueError(f"relative positions need input_size ({len(axes)} sizes)")
            for axis, size in zip(axes, input_size):
                setattr(self, f"rel_pos_{axis}", nn.Parameter(torch.zeros(2 * size - 1, self.head_dim)))


class MLPBlock(nn.Module):
    """Two linear layers with an activation in between (``lin1`` → act → ``lin2``)."""

    def __init__(self, embedding_dim: int, mlp_dim: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))


def tensor_stamp(t: torch.Tensor) -> tuple:
    """What identifies a tensor's current values for an inference cache: its storage, its
    in-place modification counter (None for an inference tensor, which has none and cannot be
    modified outside inference mode), device and dtype."""
    return (t.data_ptr(), None if t.is_inference() else t._version, t.device, t.dtype)


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
        key = tuple(tensor_stamp(t) for t in tensors)
        if self._fused is None or self._fused[0] != key:
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            w = conv.weight * scale.view(-1, 1, 1, 1)
            b = bn.bias - bn.running_mean * scale
            self._fused = (key, w.detach().clone(), b.detach().clone())
        return self._fused[1], self._fused[2]
