"""Inference fast paths of the TinyViT encoder give the plain computation's result.

* ConvBN folds its BatchNorm into the convolution in eval mode without autograd;
* stage 0 runs in horizontal strips with a halo at large inputs;
* a reduced input (r x r < 256) equals, in the decoder's frame, the top-left corner of a
  zero-padded 256 canvas: same prompt coordinates, the positional encoding's top-left
  corner, and low-res logits of size r.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam_med.models.common import ConvBN


def test_convbn_fold_matches_conv_then_bn():
    torch.manual_seed(0)
    m = ConvBN(8, 16, 3, 1, 1)
    with torch.no_grad():
        m.bn.running_mean.uniform_(-1, 1)
        m.bn.running_var.uniform_(0.5, 2.0)
        m.bn.weight.uniform_(0.5, 1.5)
        m.bn.bias.uniform_(-0.5, 0.5)
    m.eval()
    x = torch.randn(2, 8, 20, 20)
    with torch.enable_grad():
        ref = m(x).detach()  # autograd on: conv then BN
    with torch.inference_mode():
        fused = m(x)
    assert torch.allclose(ref, fused, atol=1e-5)
    # a parameter update invalidates the folded weights
    with torch.no_grad():
        m.bn.weight.mul_(2.0)
        ref2 = m.bn(m.c(x))
        assert torch.allclose(m(x), ref2, atol=1e-5)
        assert not torch.allclose(ref2, ref, atol=1e-3)


@pytest.fixture(scope="module")
def encoder(lite_medsam):
    return lite_medsam.model.image_encoder.eval()


def test_stage0_strips_are_exact(encoder):
    stage0 = encoder.layers[0]
    x = torch.rand(1, 3, 256, 256)
    old = stage0.strip_rows
    try:
        with torch.inference_mode():
            stage0.strip_rows = None
            whole = encoder(x)
            stage0.strip_rows = 32
            strips = encoder(x)
    finally:
        stage0.strip_rows = old
    assert whole.shape == (1, 256, 64, 64)
    assert torch.equal(whole, strips) or float((whole - strips).abs().max()) < 1e-5


def test_reduced_input_shapes_and_decoder(lite_medsam):
    lm = lite_medsam
    assert lm.supports_reduced_input
    pre = lm.preprocess_at(128)
    img = np.zeros((100, 100), np.float32)
    img[30:70, 40:80] = 200.0  # a textured square on a textured background (a flat one is
    img += np.random.default_rng(0).normal(0, 20, img.shape).clip(-50, 50) + 30  # unlike any scan)
    x, meta = pre(img)
    assert tuple(x.shape) == (3, 128, 128) and meta.image_size == 128
    emb = lm.encode(x[None])
    assert tuple(emb.shape) == (1, 256, 32, 32)
    box = pre.box_to_model(np.array([40, 30, 79, 69]), meta.original_size)[None]
    low, iou = lm.decode(emb, boxes=box, multimask=True)
    assert tuple(low.shape) == (1, 3, 128, 128) and tuple(iou.shape) == (1, 3)
    low1, _ = lm.decode(emb, boxes=box)
    mask = (lm.postprocess(low1, meta)[0, 0] > 0).numpy()
    assert mask.shape == img.shape
    truth = np.zeros_like(mask)
    truth[30:70, 40:80] = True
    dice = 2 * (mask & truth).sum() / (mask.sum() + truth.sum())
    assert dice > 0.9, dice  # measured 0.97 (0.967 at the full 256 input)
    # the positional encoding of a reduced grid is the top-left corner of the full one
    pe = lm.model.prompt_encoder
    assert torch.equal(pe.get_dense_pe((32, 32)), pe.get_dense_pe()[..., :32, :32])
    with pytest.raises(ValueError):
        lm.encode(torch.zeros(1, 3, 120, 120))  # not a multiple of 16


def _reference_masks(dec, src, h, w, hyper):
    """The mask decoder's upscaling as the modules define it: NCHW transposed convolutions."""
    b, _, c = src.shape
    up = dec.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))  # (B, C/8, 4h, 4w)
    bb, cc, hh, ww = up.shape
    return (hyper @ up.view(bb, cc, hh * ww)).view(bb, -1, hh, ww)


@pytest.mark.parametrize("hw", [(64, 64), (40, 40)])
def test_decoder_upscaling_matches_the_modules(lite_medsam, hw):
    dec = lite_medsam.model.mask_decoder
    torch.manual_seed(0)
    h, w = hw
    src = torch.randn(2, h * w, dec.transformer_dim)
    hyper = torch.randn(2, dec.num_mask_tokens, dec.transformer_dim // 8)
    with torch.inference_mode():
        fast = dec._masks_from_tokens(src, h, w, hyper)
        ref = _reference_masks(dec, src, h, w, hyper)
    assert fast.shape == (2, dec.num_mask_tokens, 4 * h, 4 * w)
    assert float((fast - ref).abs().max()) < 1e-3 * float(ref.abs().max())


def test_decode_at_inference_equals_the_plain_path(lite_medsam):
    """The memoised positional encodings and the fused decoder give what autograd mode (no
    memo) gives, for full and reduced grids, and a changed PE buffer is not served stale."""
    lm = lite_medsam
    pe = lm.model.prompt_encoder
    torch.manual_seed(1)
    box = torch.tensor([[40.0, 50.0, 150.0, 170.0]])
    for hw in ((64, 64), (32, 32), (64, 64)):
        emb = torch.randn(1, 256, *hw)
        with torch.enable_grad():
            ref_low, ref_iou = (t.detach() for t in lm.model.decode(emb, boxes=box))
        with torch.inference_mode():
            for _ in range(2):  # the second call takes the memoised grids
                low, iou = lm.model.decode(emb, boxes=box)
                assert float((low - ref_low).abs().max()) < 1e-4 and torch.allclose(iou, ref_iou, atol=1e-5)
    g = pe.pe_layer.positional_encoding_gaussian_matrix
    with torch.no_grad():
        before = pe.get_dense_pe().clone()
        g.mul_(2.0)
        try:
            changed = pe.get_dense_pe()
            assert not torch.allclose(changed, before)
            with torch.enable_grad():
                assert torch.allclose(changed, pe.get_dense_pe(), atol=1e-6)
        finally:
            g.div_(2.0)
        assert torch.allclose(pe.get_dense_pe(), before, atol=1e-6)
