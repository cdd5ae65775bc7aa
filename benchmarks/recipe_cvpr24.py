"""A plain re-implementation of the LiteMedSAM CVPR 2024 3D inference recipe (the baseline).

Follows ``CVPR24_LiteMedSAM_infer.py`` (bowang-lab/MedSAM, branch LiteMedSAM):
mid slice of the box's z-range prompted with the box; slices above and below
prompted with the bounding box (+3 px at 256²) of the previous slice's mask,
falling back to the mid-slice box when that mask is empty; whole slice resized
to 256² (longest side, area interpolation, zero pad); the encoder re-run for
every slice; fp32. As in the official loop, the upward pass is
``range(z_mid, z_max)`` (the box's last slice is not segmented).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from sam_med.transforms import SliceMeta, longest_side_size, resize_area


@contextlib.contextmanager
def plain_encoder(loaded):
    """Run the encoder as the reference code does: plain conv + BatchNorm, stage 0 on the
    whole image at once (our inference fast paths off; same numbers to float rounding)."""
    from sam_med.models.common import ConvBN

    enc = loaded.model.image_encoder
    convbns = [m for m in enc.modules() if isinstance(m, ConvBN)]
    stages = [m for m in enc.modules() if hasattr(m, "strip_rows")]
    saved = [m.strip_rows for m in stages]
    try:
        for m in convbns:
            m.fold = False
        for m in stages:
            m.strip_rows = None
        yield loaded
    finally:
        for m in convbns:
            m.fold = True
        for m, r in zip(stages, saved):
            m.strip_rows = r


def _bbox256(mask256: np.ndarray, shift: int = 3) -> np.ndarray:
    ys, xs = np.nonzero(mask256)
    h, w = mask256.shape
    return np.array([max(0, xs.min() - shift), max(0, ys.min() - shift),
                     min(w, xs.max() + shift), min(h, ys.max() + shift)], dtype=np.float32)


def recipe_segment(loaded, imgs: np.ndarray, box3d) -> np.ndarray:
    """``imgs`` (D, H, W) 0..255, ``box3d`` (x0, y0, z0, x1, y1, z1) → segs (D, H, W) uint8."""
    d, h, w = imgs.shape
    size = loaded.image_size
    x0, y0, z_min, x1, y1, z_max = [int(v) for v in box3d]
    z_mid = (z_min + z_max) // 2
    mid_box = loaded.box_to_model(np.array([x0, y0, x1, y1], dtype=float), (h, w)).reshape(1, 4)
    rh, rw = longest_side_size((h, w), size)
    meta = SliceMeta((h, w), (rh, rw), size)
    segs = np.zeros((d, h, w), dtype=np.uint8)

    def one(z: int, prev: int | None) -> None:
        x, _ = loaded.preprocess(imgs[z].astype(np.float32))
        emb = loaded.encode(x[None])
        box = mid_box
        if prev is not None and segs[prev].any():
            m256 = resize_area(segs[prev].astype(np.float32), (rh, rw), round_uint8=True) > 0
            if m256.any():
                box = _bbox256(m256)[None]
        low, _ = loaded.decode(emb, boxes=torch.as_tensor(box))
        logits = loaded.postprocess(low[:, :1], meta)
        segs[z] = (torch.sigmoid(logits.reshape(h, w)) > 0.5).numpy()

    for z in range(z_mid, z_max):
        one(z, None if z == z_mid else z - 1)
    for z in range(z_mid - 1, z_min - 1, -1):
        one(z, z + 1)
    return segs
