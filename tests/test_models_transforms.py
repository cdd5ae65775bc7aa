"""Preprocessing transforms: cv2.INTER_AREA-exact resize, inverse mapping, prompts, intensity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from sam_med.transforms import (LowResToSource, SliceMeta, SlicePreprocessor, area_resize_matrix,
                                box_to_model, intensity_to_uint8_range, points_to_model, resize_area)

GOLDEN = Path(__file__).parent / "golden"


def test_area_resize_matches_cv2_non_integer_downscale():
    g = np.load(GOLDEN / "lite_medsam_resize_only.npz")
    out = resize_area(g["image"], g["resized"].shape, round_uint8=True)
    assert np.array_equal(out.astype(np.uint8), g["resized"])  # 400x333 -> 256x213


def test_area_resize_matches_cv2_upscale():
    g = np.load(GOLDEN / "lite_medsam_resize_only.npz")
    out = resize_area(g["small"], g["small_resized"].shape, round_uint8=True)
    # OpenCV upscales uint8 with 11-bit fixed-point linear weights; emulated bit-exactly
    assert np.array_equal(out.astype(np.uint8), g["small_resized"])  # 101x122 -> 212x256


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 60), st.integers(1, 60))
def test_area_matrix_rows_sum_to_one(src, dst):
    m = area_resize_matrix(src, dst)
    assert m.shape == (dst, src) and np.allclose(m.sum(1), 1.0) and (m >= 0).all()


def test_slice_preprocessor_shapes_and_padding():
    img = np.tile(np.linspace(0, 255, 300), (200, 1))  # H=200, W=300
    x, meta = SlicePreprocessor(256)(img)
    assert x.shape == (3, 256, 256) and x.dtype == torch.float32
    assert meta.original_size == (200, 300) and meta.resized_size == (171, 256)
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert torch.all(x[:, 171:] == 0) and torch.equal(x[0], x[2])
    with pytest.raises(ValueError):
        SlicePreprocessor(256)(np.zeros((2, 3, 4)))


def test_low_res_to_source_crops_and_resizes():
    meta = SliceMeta((200, 300), (171, 256), 256)
    lo = torch.full((1, 1, 256, 256), -5.0)
    lo[..., :171, :256] = 3.0  # padded area is negative; valid region positive
    out = LowResToSource()(lo, meta)
    assert out.shape == (1, 1, 200, 300) and torch.all(out > 0)
    assert LowResToSource()(lo[0, 0], meta).shape == (200, 300)


def test_box_rule_is_official_truncation():
    b = box_to_model([265, 231, 326, 283], (512, 512))
    assert b.tolist() == [132, 115, 163, 141]
    b = box_to_model([[44, 27, 104, 81]], (101, 122))  # upscale: int(c*256/122)
    assert b.tolist() == [[92, 56, 218, 169]]
    p = points_to_model([[100, 50]], (200, 300))
    assert np.allclose(p, [[100 * 256 / 300, 50 * 171 / 200]])


def test_intensity_modes():
    hu = np.array([[-1000, -160, 40, 240, 3000]], dtype=np.int16)
    out = intensity_to_uint8_range(hu, "hu", "CT")
    assert out.dtype == np.float32 and np.allclose(out, [[0, 0, 127.5, 255, 255]])
    out = intensity_to_uint8_range(hu, "raw", "CT", window=(40, 80))
    assert np.allclose(out, [[0, 0, 127.5, 255, 255]])
    w = np.array([[0, 17, 255]], dtype=np.uint8)
    assert np.array_equal(intensity_to_uint8_range(w, "windowed"), w.astype(np.float32))
    with pytest.raises(ValueError):
        intensity_to_uint8_range(hu, "windowed")
    rng = np.random.default_rng(0)
    mr = np.concatenate([np.zeros(1000), rng.gamma(2, 100, 9000)]).reshape(10, 10, 100)
    out = intensity_to_uint8_range(mr, "raw", "MR")
    assert out.min() == 0 and out.max() == 255 and np.all(out[mr == 0] == 0)
    with pytest.raises(ValueError):
        intensity_to_uint8_range(mr, "bogus")
