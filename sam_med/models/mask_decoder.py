"""SAM mask decoder: output tokens + prompt tokens through the two-way transformer,
upscaled image features × per-token hypernetwork MLPs -> mask logits, and an IoU head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import output_upscaling


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them (keys ``layers.i``)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int,
                 sigmoid_output: bool = False) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.sigmoid_output = sigmoid_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return torch.sigmoid(x) if self.sigmoid_output else x


class MaskDecoder(nn.Module):
    """Predicts ``(B, K, 4h, 4w)`` mask logits and ``(B, K)`` IoU scores.

    K = 1 (token 0) when ``multimask_output`` is False, else K = ``num_multimask_outputs``
    (tokens 1..). Image embeddings with batch 1 are broadcast over the prompt batch.
    """

    def __init__(self, *, transformer_dim: int, transformer: nn.Module,
                 num_multimask_outputs: int = 3, activation: type[nn.Module] = nn.GELU,
                 iou_head_depth: int = 3, iou_head_hidden_dim: int = 256) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = output_upscaling(2, transformer_dim, activation)
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3)
            for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens,
                                       iou_head_depth)

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                sparse_prompt_embeddings: torch.Tensor, dense_prompt_embeddings: torch.Tensor,
                multimask_output: bool) -> tuple[torch.Tensor, torch.Tensor]:
        sl = slice(1, None) if multimask_output else slice(0, 1)
        masks, iou = self.predict_masks(image_embeddings, image_pe, sparse_prompt_embeddings,
                                        dense_prompt_embeddings, which=sl)
        return masks, iou[:, sl]

    def predict_masks(self, image_embeddings, image_pe, sparse_prompt_embeddings,
                      dense_prompt_embeddings, which: slice = slice(None)):
        """The masks ``(B, T, 4h, 4w)`` of the mask tokens ``which`` (default all
        ``num_mask_tokens``; each mask depends only on its own token) and the IoU predictions
        of all of them ``(B, num_mask_tokens)``."""
        out_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        out_tokens = out_tokens.unsqueeze(0).expand(sparse_prompt_embeddings.shape[0], -1, -1)
        tokens = torch.cat([out_tokens.to(sparse_prompt_embeddings.dtype),
                            sparse_prompt_embeddings], dim=1)
        n = tokens.shape[0]
        src = image_embeddings
        if src.shape[0] != n:
            src = torch.repeat_interleave(src, n, dim=0)
        src = src + dense_prompt_embeddings
        pos = torch.repeat_interleave(image_pe, n, dim=0) if image_pe.shape[0] != n else image_pe
        b, c, h, w = src.shape
        hs, src = self.transformer(src, pos, tokens)
        iou_out = hs[:, 0, :]
        mask_out = hs[:, 1:1 + self.num_mask_tokens, :]
        hyper = torch.stack([self.output_hypernetworks_mlps[i](mask_out[:, i, :])
                             for i in range(self.num_mask_tokens)[which]], dim=1)
        masks = self._masks_from_tokens(src, h, w, hyper)
        return masks, self.iou_prediction_head(iou_out)

    def _masks_from_tokens(self, src: torch.Tensor, h: int, w: int, hyper: torch.Tensor) -> torch.Tensor:
        """``src (B, hw, C)`` image tokens -> output upscaling -> ``hyper (B, T, C/8)`` dot
        products -> masks ``(B, T, 4h, 4w)``.

        The two 2x2 stride-2 transposed convolutions are per-pixel linear maps followed by
        a pixel shuffle, so they run here as matrix products (bias fused) on the token layout,
        with the channel LayerNorm and activations on the last axis. Both shuffles are deferred
        to the T mask channels: every output pixel's features stay in the row of its source
        token, ``(b, i, j, dy1, dx1, dy2, dx2, c)``, and only the masks are permuted to
        ``(4i + 2 dy1 + dy2, 4j + 2 dx1 + dx2)``. The same arithmetic as ``output_upscaling``
        (kept for its weights and as the reference), without its layout conversions."""
        up1, ln, act1, up2, act2 = self.output_upscaling
        b = src.shape[0]
        c1, c2 = up1.out_channels, up2.out_channels
        w1 = up1.weight.permute(0, 2, 3, 1).reshape(up1.in_channels, 4 * c1)  # (C, (dy, dx, c1))
        x = torch.addmm(up1.bias.repeat(4), src.reshape(-1, src.shape[-1]), w1).view(-1, c1)
        x = act1(F.layer_norm(x, (c1,), ln.weight, ln.bias, ln.eps))
        w2 = up2.weight.permute(0, 2, 3, 1).reshape(c1, 4 * c2)
        y = act2(torch.addmm(up2.bias.repeat(4), x, w2))  # (B h w 2 2, (dy2, dx2, c2))
        m = y.view(b, -1, c2) @ hyper.transpose(1, 2)  # (B, h*w*16, T)
        t = hyper.shape[1]
        m = m.view(b, h, w, 2, 2, 2, 2, t).permute(0, 7, 1, 3, 5, 2, 4, 6)  # b t i dy1 dy2 j dx1 dx2
        return m.reshape(b, t, 4 * h, 4 * w)
