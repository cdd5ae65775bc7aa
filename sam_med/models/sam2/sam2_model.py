"""The SAM 2 model (MedSAM2 = SAM 2.1 Hiera-T at 512^2): the parts plus the per-frame steps of
video tracking, stateless; the memory bank lives in the caller (:mod:`sam_med.predictors.sam2video`).

Per-frame steps, in the reference's order and arithmetic:

* :meth:`encode_frames` -- image encoder + the decoder's high-res projections;
* :meth:`condition` -- the frame's S/16 tokens + the memory bank (memories of prompted frames
  and of the last ``num_maskmem - 1`` frames, object pointers of the prompted frames and the
  last ``max_obj_ptrs - 1`` frames) through the memory attention; a first prompted frame gets
  ``no_mem_embed`` instead;
* :meth:`decode` -- prompt encoder + mask decoder, object-score gating, object pointer;
* :meth:`encode_memory` -- the memory of a frame from its features and predicted mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import MLP, sine_pe_1d
from .heads import MaskDecoder, PromptEncoder
from .hiera import FpnNeck, Hiera, ImageEncoder
from .memory import MemoryAttention, MemoryEncoder

__all__ = ["Sam2Config", "Sam2Model", "FrameFeatures", "Decoded", "NO_OBJ_SCORE"]

NO_OBJ_SCORE = -1024.0


@dataclass
class Sam2Config:
    """Architecture of ``configs/sam2.1_hiera_t512.yaml`` (MedSAM2); parameter shapes do not
    depend on ``image_size``, so SAM 2.1 Hiera-T checkpoints load too."""

    image_size: int = 512
    embed_dim: int = 96
    num_heads: int = 1
    stages: tuple[int, ...] = (1, 2, 7, 2)
    global_att_blocks: tuple[int, ...] = (5, 7, 9)
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (7, 7)
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    d_model: int = 256
    mem_dim: int = 64
    num_maskmem: int = 7
    max_obj_ptrs_in_encoder: int = 16
    memory_attention_layers: int = 4
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0
    binarize_mask_from_pts_for_mem_enc: bool = True
    multimask_min_pt_num: int = 0
    multimask_max_pt_num: int = 1
    dynamic_multimask_via_stability: bool = True

    @classmethod
    def from_dict(cls, d: dict) -> "Sam2Config":
        names = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown SAM 2 architecture argument(s) {unknown}; known: {sorted(names)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass
class FrameFeatures:
    """One frame's encoder output: ``feat (HW, B, 256)`` at S/16 and ``high_res`` (S/4 32 ch,
    S/8 64 ch) maps; ``pos (HW, B, 256)`` the S/16 position map."""

    feat: torch.Tensor
    pos: torch.Tensor
    high_res: list[torch.Tensor]
    size: tuple[int, int]


@dataclass
class Decoded:
    low_res: torch.Tensor      # (B, 1, S/4, S/4) logits of the chosen mask
    high_res: torch.Tensor     # (B, 1, S, S)
    obj_ptr: torch.Tensor      # (B, 256)
    object_score: torch.Tensor  # (B, 1)
    iou: torch.Tensor          # (B, M)


class Sam2Model(nn.Module):
    def __init__(self, cfg: Sam2Config | None = None) -> None:
        super().__init__()
        cfg = cfg or Sam2Config()
        self.cfg = cfg
        c, m = cfg.d_model, cfg.mem_dim
        trunk = Hiera(cfg.embed_dim, cfg.num_heads, cfg.stages, cfg.global_att_blocks, cfg.window_spec,
                      cfg.window_pos_embed_bkg_spatial_size)
        self.image_encoder = ImageEncoder(trunk, FpnNeck(c, trunk.channel_list, (2, 3)), scalp=1)
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        self.memory_attention = MemoryAttention(c, cfg.memory_attention_layers, m, (32, 32))
        self.memory_encoder = MemoryEncoder(m, c)
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(cfg.num_maskmem, 1, 1, m))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, c))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, c))
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, c))
        self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, m))
        self.embedding_size = cfg.image_size // 16
        self.sam_prompt_encoder = PromptEncoder(c, self.embedding_size, cfg.image_size, 16)
        self.sam_mask_decoder = MaskDecoder(c, 3, dynamic_multimask_via_stability=cfg.dynamic_multimask_via_stability)
        self.obj_ptr_proj = MLP(c, c, c, 3)
        self.obj_ptr_tpos_proj = nn.Linear(c, m)
        for p in (self.maskmem_tpos_enc, self.no_mem_embed, self.no_mem_pos_enc, self.no_obj_ptr,
                  self.no_obj_embed_spatial):
            nn.init.trunc_normal_(p, std=0.02)

    @property
    def image_size(self) -> int:
        return self.cfg.image_size

    # ----------------------------------------------------------------------------- encoder
    def encode_frames(self, images: torch.Tensor) -> FrameFeatures:
        """``images (B, 3, S, S)`` normalised -> :class:`FrameFeatures`."""
        out = self.image_encoder(images)
        fpn, pos = list(out["backbone_fpn"]), out["vision_pos_enc"]
        fpn[0] = self.sam_mask_decoder.conv_s0(fpn[0])
        fpn[1] = self.sam_mask_decoder.conv_s1(fpn[1])
        top = fpn[-1]
        return FrameFeatures(feat=top.flatten(2).permute(2, 0, 1), pos=pos[-1].flatten(2).permute(2, 0, 1),
                             high_res=[fpn[0], fpn[1]], size=(top.shape[-2], top.shape[-1]))

    # ----------------------------------------------------------------------------- memory in
    def condition(self, f: FrameFeatures, frame_idx: int, num_frames: int, cond: dict, recent: dict,
                  reverse: bool, first: bool) -> torch.Tensor:
        """The frame's S/16 features ``(B, C, h, w)`` conditioned on the memory bank.

        ``cond``: ``{slice: (maskmem, obj_ptr)}`` of the prompted frames; ``recent``: the same
        for tracked frames (only those within ``num_maskmem - 1`` / ``max_obj_ptrs - 1`` of
        ``frame_idx`` are read); ``first``: a prompted frame seen for the first time."""
        b = f.feat.shape[1]
        c = self.cfg.d_model
        h, w = f.size
        if first:
            return (f.feat + self.no_mem_embed).permute(1, 2, 0).view(b, c, h, w)
        nm, m = self.cfg.num_maskmem, self.cfg.mem_dim
        step = 1 if reverse else -1
        mem_pos = self.memory_encoder.position_encoding.grid(h, w, f.feat.device).flatten(1).t()[:, None]
        entries = [(0, mem) for mem in cond.values()]
        entries += [(t_pos, recent.get(frame_idx + step * (nm - t_pos))) for t_pos in range(1, nm)]
        mems, poss = [], []
        for t_pos, mem in entries:
            if mem is None or mem[0] is None:
                continue
            mems.append(mem[0].flatten(2).permute(2, 0, 1))
            poss.append(mem_pos.expand(-1, b, -1) + self.maskmem_tpos_enc[nm - t_pos - 1])
        max_ptrs = min(num_frames, self.cfg.max_obj_ptrs_in_encoder)
        past = [(t, mem) for t, mem in cond.items() if (t >= frame_idx if reverse else t <= frame_idx)]
        ptrs = [((frame_idx - t) * (-1 if reverse else 1), mem[1]) for t, mem in past]
        for d in range(1, max_ptrs):
            t = frame_idx + d if reverse else frame_idx - d
            if t < 0 or t >= num_frames:
                break
            if t in recent:
                ptrs.append((d, recent[t][1]))
        n_ptr_tokens = 0
        if ptrs:
            pos_list, ptr_list = zip(*ptrs)
            obj_ptrs = torch.stack(ptr_list, dim=0)
            obj_pos = sine_pe_1d(torch.tensor(pos_list, device=f.feat.device) / (max_ptrs - 1), c)
            obj_pos = self.obj_ptr_tpos_proj(obj_pos).unsqueeze(1).expand(-1, b, m)
            obj_ptrs = obj_ptrs.reshape(-1, b, c // m, m).permute(0, 2, 1, 3).flatten(0, 1)
            mems.append(obj_ptrs)
            poss.append(obj_pos.repeat_interleave(c // m, dim=0))
            n_ptr_tokens = obj_ptrs.shape[0]
        out = self.memory_attention(f.feat, f.pos, torch.cat(mems, 0), torch.cat(poss, 0), n_ptr_tokens)
        return out.permute(1, 2, 0).view(b, c, h, w)

    # ----------------------------------------------------------------------------- decoder
    def use_multimask(self, first: bool, n_points: int) -> bool:
        """SAM 2.1's rule: several candidate masks for 0 or 1 points (tracking, one click)."""
        return self.cfg.multimask_min_pt_num <= n_points <= self.cfg.multimask_max_pt_num

    def decode(self, pix_feat: torch.Tensor, high_res: list[torch.Tensor], coords: torch.Tensor | None = None,
               labels: torch.Tensor | None = None, mask_logits: torch.Tensor | None = None,
               multimask: bool = False) -> Decoded:
        """``coords (B, N, 2)`` xy in model pixels, ``labels (B, N)`` (see :mod:`.heads`);
        none: tracking. ``mask_logits (B, 1, S/4, S/4)``: the frame's previous logits."""
        b, dev = pix_feat.shape[0], pix_feat.device
        if coords is None:
            coords = torch.zeros(b, 1, 2, device=dev)
            labels = -torch.ones(b, 1, dtype=torch.int32, device=dev)
        if mask_logits is not None and tuple(mask_logits.shape[-2:]) != self.sam_prompt_encoder.mask_input_size:
            mask_logits = F.interpolate(mask_logits.float(), size=self.sam_prompt_encoder.mask_input_size,
                                        align_corners=False, mode="bilinear", antialias=True)
        sparse, dense = self.sam_prompt_encoder(coords, labels, mask_logits)
        masks, ious, tokens, obj_score = self.sam_mask_decoder(
            pix_feat, self.sam_prompt_encoder.dense_pe(), sparse, dense, multimask, high_res)
        appearing = obj_score > 0
        masks = torch.where(appearing[:, None, None], masks, NO_OBJ_SCORE).float()
        high = F.interpolate(masks, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        token = tokens[:, 0]
        if multimask:
            best = torch.argmax(ious, dim=-1)
            rows = torch.arange(b, device=dev)
            low_best, high_best = masks[rows, best].unsqueeze(1), high[rows, best].unsqueeze(1)
            if tokens.size(1) > 1:
                token = tokens[rows, best]
        else:
            low_best, high_best = masks, high
        lam = appearing.float()
        obj_ptr = lam * self.obj_ptr_proj(token) + (1 - lam) * self.no_obj_ptr
        return Decoded(low_best, high_best, obj_ptr, obj_score, ious)

    # ----------------------------------------------------------------------------- memory out
    def encode_memory(self, f: FrameFeatures, high_res_logits: torch.Tensor, object_score: torch.Tensor,
                      from_points: bool) -> torch.Tensor:
        """Memory ``(B, 64, h, w)`` of a frame from its logits at S x S; rounded to bfloat16 as
        the reference stores it (returned as float32)."""
        b, c = f.feat.shape[1], self.cfg.d_model
        pix = f.feat.permute(1, 2, 0).view(b, c, *f.size)
        if from_points and self.cfg.binarize_mask_from_pts_for_mem_enc:
            mask = (high_res_logits > 0).float()
        else:
            mask = torch.sigmoid(high_res_logits)
        mask = mask * self.cfg.sigmoid_scale_for_mem_enc + self.cfg.sigmoid_bias_for_mem_enc
        feats, _ = self.memory_encoder(pix, mask)
        absent = 1 - (object_score > 0).float()
        feats = feats + absent[..., None, None] * self.no_obj_embed_spatial[..., None, None].expand(*feats.shape)
        return feats.to(torch.bfloat16).float()
