"""Mapping a whole volume's intensities slab by slab when the transform is voxel-wise, so
binding a 512 x 512 x 300 CT costs one float32 copy, not several (issue #16, memory)."""

from __future__ import annotations

import numpy as np
from monai.transforms import Compose, ScaleIntensityRange

from .transforms import CheckUint8Range

__all__ = ["is_voxelwise", "map_voxelwise"]


def is_voxelwise(transform) -> bool:
    """Whether ``transform`` maps each voxel on its own (a CT window, a 0..255 check, or a
    MONAI ``Compose`` of those), so a volume can be mapped slab by slab with the same result."""
    if isinstance(transform, Compose):
        return all(is_voxelwise(t) for t in transform.transforms)
    return isinstance(transform, (ScaleIntensityRange, CheckUint8Range))


def map_voxelwise(transform, array: np.ndarray, slab_voxels: int = 1 << 22) -> np.ndarray:
    """``transform(array)`` as a float32 array of the same shape. A voxel-wise transform
    (:func:`is_voxelwise`) runs on slabs of about ``slab_voxels`` voxels along the last axis,
    written into one preallocated float32 array: peak memory is that array plus one slab's
    temporaries, not several full-volume float copies (a 512 x 512 x 300 CT). Any other
    transform (MR percentiles need the whole volume) runs on the whole array."""
    a = np.asarray(array)
    if a.ndim < 3 or not is_voxelwise(transform) or a.size <= slab_voxels:
        return np.asarray(transform(a.astype(np.float32)), dtype=np.float32)
    out = np.empty(a.shape, dtype=np.float32)
    step = max(1, slab_voxels // max(1, a[..., 0].size))
    for k in range(0, a.shape[-1], step):
        out[..., k : k + step] = np.asarray(transform(a[..., k : k + step].astype(np.float32)), dtype=np.float32)
    return out
