"""Numerics of the 3D model parts that must follow the official SAM-Med3D behaviour."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sam_med.models.sam3d import Sam3DConfig, build_sam3d
from sam_med.models.sam3d.image_encoder3d import Block3D
from sam_med.models.sam3d.prompt_encoder3d import PromptEncoder3D


def _naive_window_block(blk: Block3D, x: torch.Tensor) -> torch.Tensor:
    """Official order: pad the 8^3 grid to one 14^3 window, attend over all of it, crop."""
    ws = blk.window_size
    B, D, H, W, C = x.shape
    h = blk.norm1(x)
    hp = F.pad(h, (0, 0, 0, ws - W, 0, ws - H, 0, ws - D))
    out = blk.attn(hp)[:, :D, :H, :W]
    y = x + out
    return y + blk.mlp(blk.norm2(y))


def test_single_window_shortcut_equals_official_padding():
    torch.manual_seed(0)
    blk = Block3D(dim=24, num_heads=2, window_size=14, input_size=(8, 8, 8)).eval()
    for p in (blk.attn.rel_pos_d, blk.attn.rel_pos_h, blk.attn.rel_pos_w):
        torch.nn.init.normal_(p, std=0.5)
    x = torch.randn(1, 8, 8, 8, 24)
    with torch.no_grad():
        torch.testing.assert_close(blk(x), _naive_window_block(blk, x), rtol=1e-4, atol=1e-5)


def test_dense_pe_swaps_first_two_axes_like_the_official_code():
    torch.manual_seed(0)
    pe = PromptEncoder3D(embed_dim=384, image_embedding_size=(8, 8, 8), input_image_size=(128, 128, 128))
    dense = pe.get_dense_pe()[0]  # (C, 8, 8, 8)
    a, b, c = 1, 5, 3
    # a point at the centre of embedding cell (a, b, c) in tensor-dim order (no +0.5 by the caller)
    point = torch.tensor([[[16 * a + 7.5, 16 * b + 7.5, 16 * c + 7.5]]]) + 0.5
    enc = pe.pe_layer.with_coords(point, (128, 128, 128))[0, 0]
    torch.testing.assert_close(enc, dense[:, b, a, c])          # official: components 0/1 swapped
    assert not torch.allclose(enc, dense[:, a, b, c], atol=1e-3)


def test_small_model_shapes_and_gradients():
    torch.manual_seed(0)
    m = build_sam3d(Sam3DConfig.small())
    x = torch.randn(2, 1, 64, 64, 64)
    full, low, iou = m(x, torch.rand(2, 3, 3) * 64, torch.tensor([[1, 0, 1], [1, 1, -1]]),
                       torch.zeros(2, 1, 32, 32, 32))
    assert full.shape == (2, 1, 64, 64, 64) and low.shape == (2, 1, 32, 32, 32) and iou.shape == (2, 1)
    (full.mean() + iou.mean()).backward()
    # unused by construction: no-mask embedding (a mask prompt is given), and the hypernetworks of
    # the 3 multimask tokens (multimask_output=False, as in SAM-Med3D training and inference)
    unused = ("no_mask_embed", "output_hypernetworks_mlps.1.", "output_hypernetworks_mlps.2.",
              "output_hypernetworks_mlps.3.")
    no_grad = [n for n, p in m.named_parameters() if p.grad is None and not n.startswith(
        tuple("prompt_encoder." + u if u == "no_mask_embed" else "mask_decoder." + u for u in unused))]
    assert no_grad == []
