"""SAM 2's prompt encoder and mask decoder (two-way transformer, high-resolution skips,
object-score token). Key names match the official checkpoints (``sam_prompt_encoder.*``,
``sam_mask_decoder.*``).

Point labels: 1 positive, 0 negative, 2 / 3 box corners (top-left / bottom-right), -1 padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import MLP, LayerNorm2d, RandomFourierPE

__all__ = ["Attention", "PromptEncoder", "MaskDecoder", "TwoWayTransformer"]


class Attention(nn.Module):
    """Multi-head attention with an optional internal downsampling of the channels."""

    def __init__(self, dim: int, num_heads: int, downsample_rate: int = 1, kv_in_dim: int | None = None) -> None:
        super().__init__()
        inner = dim // downsample_rate
        kv = kv_in_dim if kv_in_dim is not None else dim
        self.num_heads = num_heads
        self.internal_dim = inner
        self.q_proj = nn.Linear(dim, inner)
        self.k_proj = nn.Linear(kv, inner)
        self.v_proj = nn.Linear(kv, inner)
        self.out_proj = nn.Linear(inner, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        b, h, n, c = x.shape
        return x.transpose(1, 2).reshape(b, n, h * c)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))
        return self.out_proj(self._merge(F.scaled_dot_product_attention(q, k, v)))


class TwoWayBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_dim: int, skip_first_layer_pe: bool) -> None:
        super().__init__()
        self.self_attn = Attention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = Attention(dim, num_heads, downsample_rate=2)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_dim, dim, 2, act=nn.ReLU)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = Attention(dim, num_heads, downsample_rate=2)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries, keys, query_pe, key_pe):
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        k = keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(queries + query_pe, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, queries + query_pe, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, depth: int = 2, dim: int = 256, num_heads: int = 8, mlp_dim: int = 2048) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TwoWayBlock(dim, num_heads, mlp_dim, i == 0) for i in range(depth))
        self.final_attn_token_to_image = Attention(dim, num_heads, downsample_rate=2)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor, tokens: torch.Tensor):
        keys = image.flatten(2).permute(0, 2, 1)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        attn = self.final_attn_token_to_image(queries + tokens, keys + key_pe, keys)
        return self.norm_final_attn(queries + attn), keys


class PromptEncoder(nn.Module):
    """Points (box corners included) -> sparse tokens; a low-res mask -> dense embedding."""

    def __init__(self, embed_dim: int = 256, embedding_size: int = 32, image_size: int = 512,
                 mask_in_chans: int = 16) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.embedding_size = (embedding_size, embedding_size)
        self.input_image_size = (image_size, image_size)
        self.mask_input_size = (4 * embedding_size, 4 * embedding_size)
        self.pe_layer = RandomFourierPE(embed_dim // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2), LayerNorm2d(mask_in_chans // 4), nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2), LayerNorm2d(mask_in_chans),
            nn.GELU(), nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1))
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def dense_pe(self) -> torch.Tensor:
        return self.pe_layer.grid(*self.embedding_size).unsqueeze(0)

    def forward(self, coords: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor | None):
        """``coords (B, N, 2)`` xy model pixels, ``labels (B, N)``; a padding point is appended
        (boxes arrive as corner points). Returns sparse ``(B, N+1, C)``, dense ``(B, C, h, w)``."""
        b = coords.shape[0]
        pts = torch.cat([coords + 0.5, torch.zeros((b, 1, 2), device=coords.device)], dim=1)
        lab = torch.cat([labels, -torch.ones((b, 1), device=labels.device, dtype=labels.dtype)], dim=1)
        emb = self.pe_layer.points(pts, self.input_image_size)
        emb[lab == -1] = 0.0
        emb[lab == -1] += self.not_a_point_embed.weight
        for i in range(4):
            emb[lab == i] += self.point_embeddings[i].weight
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(b, -1, *self.embedding_size)
        return emb, dense


class MaskDecoder(nn.Module):
    """SAM 2 mask decoder: 4 mask tokens, IoU head (sigmoid), object-score head, and the
    S/4 + S/8 high-resolution skips (``conv_s0``/``conv_s1`` applied to the encoder maps)."""

    def __init__(self, dim: int = 256, num_multimask_outputs: int = 3, stability_delta: float = 0.05,
                 stability_thresh: float = 0.98, dynamic_multimask_via_stability: bool = True) -> None:
        super().__init__()
        self.transformer = TwoWayTransformer(2, dim, 8, 2048)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        self.obj_score_token = nn.Embedding(1, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2), LayerNorm2d(dim // 4), nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2), nn.GELU())
        self.conv_s0 = nn.Conv2d(dim, dim // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(dim, dim // 4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(dim, dim, dim // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(dim, 256, self.num_mask_tokens, 3, sigmoid_output=True)
        self.pred_obj_score_head = MLP(dim, dim, 1, 3)
        self.dynamic = dynamic_multimask_via_stability
        self.stability_delta = stability_delta
        self.stability_thresh = stability_thresh

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor,
                multimask: bool, high_res: list[torch.Tensor]):
        """Returns masks ``(B, M, 4h, 4w)``, IoU ``(B, M)``, output tokens ``(B, M', C)``,
        object-score logits ``(B, 1)``; M = 3 with ``multimask`` else 1."""
        b = sparse.shape[0]
        out_tokens = torch.cat([self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight], 0)
        tokens = torch.cat((out_tokens.unsqueeze(0).expand(b, -1, -1), sparse), dim=1)
        src = image + dense
        pos = torch.repeat_interleave(image_pe, b, dim=0)
        _, c, h, w = src.shape
        hs, src = self.transformer(src, pos, tokens)
        mask_tokens_out = hs[:, 2:2 + self.num_mask_tokens, :]
        src = src.transpose(1, 2).view(b, c, h, w)
        dc1, ln1, act1, dc2, act2 = self.output_upscaling
        up = act1(ln1(dc1(src) + high_res[1]))
        up = act2(dc2(up) + high_res[0])
        hyper = torch.stack([m(mask_tokens_out[:, i, :]) for i, m in enumerate(self.output_hypernetworks_mlps)], 1)
        _, c, h, w = up.shape
        masks = (hyper @ up.view(b, c, h * w)).view(b, -1, h, w)
        iou = self.iou_prediction_head(hs[:, 1, :])
        obj_score = self.pred_obj_score_head(hs[:, 0, :])
        if multimask:
            masks, iou, tok = masks[:, 1:], iou[:, 1:], mask_tokens_out[:, 1:]
        else:
            if self.dynamic and not self.training:
                masks, iou = self._stable_or_best(masks, iou)
            else:
                masks, iou = masks[:, 0:1], iou[:, 0:1]
            tok = mask_tokens_out[:, 0:1]
        return masks, iou, tok, obj_score

    def _stable_or_best(self, masks: torch.Tensor, iou: torch.Tensor):
        """Single-mask output; when it is unstable (IoU of the masks at +-delta below the
        threshold) the multimask output with the best predicted IoU instead."""
        multi, multi_iou = masks[:, 1:], iou[:, 1:]
        best = torch.argmax(multi_iou, dim=-1)
        rows = torch.arange(multi_iou.size(0), device=iou.device)
        best_masks, best_iou = multi[rows, best].unsqueeze(1), multi_iou[rows, best].unsqueeze(1)
        single, single_iou = masks[:, 0:1], iou[:, 0:1]
        flat = single.flatten(-2)
        inter = torch.sum(flat > self.stability_delta, dim=-1).float()
        union = torch.sum(flat > -self.stability_delta, dim=-1).float()
        stable = torch.where(union > 0, inter / union, 1.0) >= self.stability_thresh
        return (torch.where(stable[..., None, None].expand_as(single), single, best_masks),
                torch.where(stable.expand_as(single_iou), single_iou, best_iou))
