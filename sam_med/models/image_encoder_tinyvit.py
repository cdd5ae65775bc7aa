"""TinyViT image encoder in the LiteMedSAM configuration (our own implementation).

LiteMedSAM's variant differs from the original TinyViT/MobileSAM one: its patch
embedding uses two 1×1 stride-1 convolutions (no downsampling), so stage 0
(MBConv) runs at the full 256×256 input resolution; the patch-merging layers
halve the resolution except the one producing 320 channels (stride 1), giving a
64×64 grid for stages 2–3. A neck maps the 320 channels to 256.

Input ``(B, 3, 256, 256)`` float, min–max normalised to [0, 1] and zero padded;
output ``(B, 256, 64, 64)`` image embeddings.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .common import ConvBN, LayerNorm2d


class PatchEmbed(nn.Module):
    """Two pointwise conv+BN layers with GELU in between (keys ``seq.0``, ``seq.2``)."""

    def __init__(self, in_chans: int, embed_dim: int, resolution: int) -> None:
        super().__init__()
        self.resolution = (resolution, resolution)
        self.seq = nn.Sequential(
            ConvBN(in_chans, embed_dim // 2, 1, 1, 0),
            nn.GELU(),
            ConvBN(embed_dim // 2, embed_dim, 1, 1, 0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual: 1×1 expand, 3×3 depthwise, 1×1 project, residual, GELU."""

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = ConvBN(dim, hidden, 1)
        self.act1 = nn.GELU()
        self.conv2 = ConvBN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = ConvBN(hidden, dim, 1, bn_weight_init=0.0)
        self.act3 = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.conv1(x))
        y = self.act2(self.conv2(y))
        y = self.conv3(y)
        return self.act3(y + x)


class PatchMerging(nn.Module):
    """1×1 conv, 3×3 depthwise (stride 2, or 1 for the 320-channel stage), 1×1 conv.

    Accepts ``(B, C, H, W)`` or tokens ``(B, H*W, C)``; returns tokens ``(B, H'*W', C')``.
    """

    def __init__(self, input_resolution: tuple[int, int], dim: int, out_dim: int,
                 stride: int = 2) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        self.stride = stride
        self.conv1 = ConvBN(dim, out_dim, 1)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim, 1)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor, hw: tuple[int, int] | None = None
                ) -> tuple[torch.Tensor, tuple[int, int]]:
        if x.ndim == 3:
            h, w = hw if hw is not None else self.input_resolution
            x = x.reshape(x.shape[0], h, w, -1).permute(0, 3, 1, 2)
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        x = self.conv3(x)
        out_hw = (int(x.shape[-2]), int(x.shape[-1]))
        return x.flatten(2).transpose(1, 2), out_hw


class ConvStage(nn.Module):
    """Stage 0: MBConv blocks on ``(B, C, H, W)`` then patch merging to tokens."""

    def __init__(self, dim: int, resolution: tuple[int, int], depth: int, expand_ratio: float,
                 out_dim: int, merge_stride: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([MBConv(dim, expand_ratio) for _ in range(depth)])
        self.downsample = PatchMerging(resolution, dim, out_dim, merge_stride)

    #: inference runs in horizontal strips of this many rows (None: whole image at once)
    strip_rows: int | None = 32
    _halo = 8  # rows each strip borrows from its neighbours: >= the 3x3 convs' reach, even

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        h = x.shape[-2]
        rows = self.strip_rows
        # below ~192 rows the whole activation fits the cache anyway (measured: no gain at 160)
        if (rows and not self.training and not torch.is_grad_enabled() and h >= 6 * rows
                and h % 2 == 0 and rows % 2 == 0 and self.downsample.stride == 2):
            return self._forward_strips(x, rows)
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x)

    def _forward_strips(self, x: torch.Tensor, rows: int) -> tuple[torch.Tensor, tuple[int, int]]:
        """Same result as :meth:`forward` (every layer here is a 1x1 or 3x3 convolution, so
        a strip plus a halo of ``_halo`` rows computes its rows exactly), but each strip's
        256-channel activations stay in the CPU cache: this stage is memory-bound at full
        resolution (measured on one core: the whole encoder 2.7 -> 2.1 s at 256x256)."""
        h = x.shape[-2]
        outs = []
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            a, b = max(0, r0 - self._halo), min(h, r1 + self._halo)
            y = x[:, :, a:b]
            for blk in self.blocks:
                y = blk(y)
            pm = self.downsample
            y = pm.conv3(pm.act(pm.conv2(pm.act(pm.conv1(y)))))
            o0 = (r0 - a) // 2
            outs.append(y[:, :, o0:o0 + (r1 - r0) // 2])
        y = torch.cat(outs, dim=2)
        return y.flatten(2).transpose(1, 2), (int(y.shape[-2]), int(y.shape[-1]))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside one window with a learnt bias per |Δy|, |Δx| offset.

    Input/output ``(B*, N, C)`` with ``N = window*window``. The LayerNorm is part of
    this module (key ``norm``), applied to every token of the (padded) window.
    """

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        points = list(itertools.product(range(window), range(window)))
        offsets: dict[tuple[int, int], int] = {}
        idx = []
        for p in points:
            for q in points:
                off = (abs(p[0] - q[0]), abs(p[1] - q[1]))
                idx.append(offsets.setdefault(off, len(offsets)))
        n = len(points)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        self.register_buffer("attention_bias_idxs", torch.tensor(idx).view(n, n), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        x = self.norm(x)
        qkv = self.qkv(x).view(b, n, self.num_heads, 3 * self.head_dim)
        q, k, v = qkv.permute(0, 2, 1, 3).split(self.head_dim, dim=-1)
        bias = self.attention_biases[:, self.attention_bias_idxs].to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.unsqueeze(0))
        out = out.transpose(1, 2).reshape(b, n, -1)
        return self.proj(out)


class TinyViTMlp(nn.Module):
    """Pre-norm MLP (keys ``norm``, ``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """Windowed attention (zero padding bottom/right) + depthwise conv + MLP on tokens ``(B, H*W, C)``."""

    def __init__(self, dim: int, resolution: tuple[int, int], num_heads: int, window: int,
                 mlp_ratio: float, local_conv_size: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.window = window
        self.attn = WindowAttention(dim, num_heads, window)
        self.mlp = TinyViTMlp(dim, int(dim * mlp_ratio))
        self.local_conv = ConvBN(dim, dim, local_conv_size, 1, local_conv_size // 2, groups=dim)

    def forward(self, x: torch.Tensor, hw: tuple[int, int] | None = None) -> torch.Tensor:
        h, w = hw if hw is not None else self.resolution
        b, n, c = x.shape
        ws = self.window
        shortcut = x
        if h == ws and w == ws:
            x = self.attn(x)
        else:
            x = x.view(b, h, w, c)
            pad_b, pad_r = (-h) % ws, (-w) % ws
            if pad_b or pad_r:
                x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
            ph, pw = h + pad_b, w + pad_r
            nh, nw = ph // ws, pw // ws
            x = x.view(b, nh, ws, nw, ws, c).transpose(2, 3).reshape(b * nh * nw, ws * ws, c)
            x = self.attn(x)
            x = x.view(b, nh, nw, ws, ws, c).transpose(2, 3).reshape(b, ph, pw, c)
            x = x[:, :h, :w].reshape(b, n, c)
        x = shortcut + x
        x = x.transpose(1, 2).reshape(b, c, h, w)
        x = self.local_conv(x)
        x = x.view(b, c, n).transpose(1, 2)
        return x + self.mlp(x)


class AttnStage(nn.Module):
    """Stages 1–3: TinyViT blocks, optionally followed by patch merging."""

    def __init__(self, dim: int, resolution: tuple[int, int], depth: int, num_heads: int,
                 window: int, mlp_ratio: float, local_conv_size: int,
                 out_dim: int | None, merge_stride: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([
            TinyViTBlock(dim, resolution, num_heads, window, mlp_ratio, local_conv_size)
            for _ in range(depth)
        ])
        self.downsample = (PatchMerging(resolution, dim, out_dim, merge_stride)
                           if out_dim is not None else None)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        for blk in self.blocks:
            x = blk(x, hw)
        if self.downsample is not None:
            x, hw = self.downsample(x, hw)
        return x, hw


class TinyViTEncoder(nn.Module):
    """TinyViT image encoder (LiteMedSAM layout).

    Args:
        img_size: square input size (256 for LiteMedSAM).
        embed_dims, depths, num_heads, window_sizes: per-stage settings.
        out_chans: channels of the output embedding (256).
        stride1_dims: output widths whose patch merging keeps the resolution
            (LiteMedSAM: 320, as in the reference).

    ``forward(x (B, 3, S, S)) -> (B, out_chans, S/4, S/4)``.
    """

    supports_reduced_input = True

    def __init__(self, img_size: int = 256, in_chans: int = 3,
                 embed_dims: Sequence[int] = (64, 128, 160, 320),
                 depths: Sequence[int] = (2, 2, 6, 2),
                 num_heads: Sequence[int] = (2, 4, 5, 10),
                 window_sizes: Sequence[int] = (7, 7, 14, 7),
                 mlp_ratio: float = 4.0, mbconv_expand_ratio: float = 4.0,
                 local_conv_size: int = 3, out_chans: int = 256,
                 stride1_dims: Sequence[int] = (320, 448, 576)) -> None:
        super().__init__()
        self.img_size = img_size
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0], img_size)
        res = img_size
        self.layers = nn.ModuleList()
        n = len(depths)
        for i in range(n):
            out_dim = embed_dims[i + 1] if i < n - 1 else None
            stride = 1 if (out_dim in stride1_dims) else 2
            if i == 0:
                layer = ConvStage(embed_dims[0], (res, res), depths[0], mbconv_expand_ratio,
                                  out_dim, stride)
            else:
                layer = AttnStage(embed_dims[i], (res, res), depths[i], num_heads[i],
                                  window_sizes[i], mlp_ratio, local_conv_size, out_dim, stride)
            self.layers.append(layer)
            if out_dim is not None:
                res = (res - 1) // stride + 1
        self.out_resolution = res
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )
        if self.channels_last:
            self.to(memory_format=torch.channels_last)  # conv weights; loading copies into them

    #: run the convolutions channels-last (NHWC) - weights from construction on, the input in
    #: :meth:`forward` - which oneDNN runs faster than NCHW, and the token <-> map reshapes
    #: of :class:`PatchMerging` become views. Measured on a 2-core AVX-512-bf16 CPU, one 256²
    #: slice: bf16 0.80 x, fp32 0.91 x the NCHW time, fp32 outputs within 4e-6
    #: (``benchmarks/bench_channels_last.py``). The output is NCHW-contiguous either way.
    channels_last = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(B, 256, H/4, W/4)``. ``H = W = img_size`` is what the
        weights were trained on; smaller inputs (multiples of 16) run the same layers on
        fewer pixels (every stage is convolutional or windowed), which the slice-wise
        predictor uses for small zoomed views (see ``LoadedModel.encode``)."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.patch_embed(x)
        x, hw = self.layers[0](x)
        for layer in self.layers[1:]:
            x, hw = layer(x, hw)
        b, _, c = x.shape
        x = x.view(b, hw[0], hw[1], c).permute(0, 3, 1, 2)
        return self.neck(x).contiguous()
