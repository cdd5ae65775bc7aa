"""Slab-wise intensity mapping gives the whole-volume result (issue #16, memory)."""

import numpy as np
import pytest
from monai.transforms import Compose

from sam_med.transforms import CheckUint8Range, PercentileNormalize, ct_window_transform
from sam_med.voxelwise import is_voxelwise, map_voxelwise


def test_ct_window_slabs_equal_whole_volume():
    rng = np.random.default_rng(0)
    ct = rng.integers(-1024, 2000, size=(40, 30, 23), dtype=np.int16)
    t = ct_window_transform(40, 400)
    whole = np.asarray(t(ct.astype(np.float32)), dtype=np.float32)
    slabs = map_voxelwise(t, ct, slab_voxels=40 * 30 * 4)  # 4 slices per slab, a ragged last one
    assert slabs.dtype == np.float32 and slabs.shape == ct.shape
    np.testing.assert_array_equal(slabs, whole)


def test_only_voxelwise_transforms_run_in_slabs():
    assert is_voxelwise(ct_window_transform()) and is_voxelwise(CheckUint8Range())
    assert is_voxelwise(Compose([ct_window_transform(), CheckUint8Range()]))
    mr = PercentileNormalize()
    assert not is_voxelwise(mr)
    rng = np.random.default_rng(1)
    vol = rng.gamma(2.0, 100.0, size=(20, 20, 12)).astype(np.float32)
    np.testing.assert_array_equal(map_voxelwise(mr, vol, slab_voxels=400), mr(vol))


def test_out_of_range_windowed_input_still_refused_per_slab():
    vol = np.zeros((10, 10, 8), np.float32)
    vol[..., 6] = 300.0
    with pytest.raises(ValueError, match="0..255"):
        map_voxelwise(CheckUint8Range(), vol, slab_voxels=100)
