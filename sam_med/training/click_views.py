"""Click-training samples in the slice-wise engine's *zoom view* (issue #27, v2).

The engine decodes an object in its view: usually the zoom crop, a square of ``ZOOM_FACTOR``
x the box side around the box (:func:`sam_med.predictors.slicewise.views.choose_crop`),
encoded at the model's input size. A zoom sample is one object on one slice, encoded in the
crop the engine would use (``predictor.choose_crop(extent, hw)`` then
``predictor.embeddings(geo, [k], crop=crop)``: the engine's cache namespace and key, so an
evaluation run and training share every encode). Its labels (the slice and its two
neighbours) are *cut to the crop*: the engine decodes a view by shifting plane prompts by
the crop's corner and treating the crop as the source image (``SliceDecoder.decode``), so a
sample whose plane is the crop goes through exactly the same mapping.

``extent`` (the engine's ``bound2d``): ``"volume"`` (default) the object's 3D box projected
on the plane (what a 3D box prompt gives the engine for every slice), ``"slice"`` its tight
box on this slice; training crops may widen it by the CVPR 2025 jitter (``jitter: true``),
validation crops never do. Objects whose crop would be None (it would cover the slice: the
whole-slice view already shows them) give no zoom sample.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

from .prompts import mask_box

__all__ = ["cut_to_crop", "object_extent", "zoom_crop_for", "zoom_cases_of_scan"]


def cut_to_crop(arr: np.ndarray, crop) -> np.ndarray:
    """The inclusive ``(x0, y0, x1, y1)`` crop of a plane array (rows = y), contiguous; None: a copy."""
    if crop is None:
        return np.ascontiguousarray(arr)
    x0, y0, x1, y1 = (int(c) for c in crop)
    return np.ascontiguousarray(arr[y0:y1 + 1, x0:x1 + 1])


def object_extent(geo, mask3d: np.ndarray, k: int, mode: str = "volume") -> np.ndarray | None:
    """Inclusive XYXY plane box of the object: over all slices (``volume``) or on slice ``k``."""
    if mode == "slice":
        return mask_box(np.asarray(geo.slice_of(mask3d, k), dtype=bool))
    idx = np.nonzero(mask3d)
    if idx[0].size == 0:
        return None
    lo = [int(i.min()) for i in idx]
    hi = [int(i.max()) for i in idx]
    return geo.box_to_plane(lo, hi)[1].astype(float)  # the engine's bound2d of a tight 3D box


def zoom_crop_for(predictor, extent, hw, rng: np.random.Generator | None = None):
    """The engine's zoom crop for ``extent`` (``views.choose_crop``, box prompt); with ``rng``
    the extent is first widened by the CVPR 2025 jitter (``s ~ U{0..5}`` x ``W/256``, ``H/256``)."""
    e = np.asarray(extent, dtype=float)
    if rng is not None:
        h, w = hw
        s = int(rng.integers(0, 6))
        dx, dy = int(s * w / 256), int(s * h / 256)
        e = np.array([max(0, e[0] - dx), max(0, e[1] - dy), min(w - 1, e[2] + dx), min(h - 1, e[3] + dy)])
    return predictor.choose_crop(np.rint(e).astype(int), tuple(hw), False)


def zoom_cases_of_scan(make, case, predictor, geo, masks: dict, names: dict, ks, *, source: str, min_area: int,
                       value_offset: int = 0, max_objects: int = 0, jitter: bool = False, extent: str = "volume",
                       seed: int = 0) -> list:
    """One ``make(...)`` (:class:`~.click_data.ClickCase`) per (object, slice) of ``ks`` with a zoom crop: its
    embedding in the crop, its labels cut to the crop, ``crops[k]`` the crop (plane px).
    ``masks``: value -> 3D bool mask; ``max_objects``: at most this many objects per slice
    (seeded choice; 0 = all)."""
    out = []
    n_k = geo.n_slices
    rng = np.random.default_rng([seed, zlib.crc32(str(case.case_id).encode())])
    ext3 = {v: object_extent(geo, m, 0, "volume") for v, m in masks.items()} if extent == "volume" else {}
    for k in ks:
        here = [v for v, m in masks.items() if np.asarray(geo.slice_of(m, k)).sum() >= min_area]
        if max_objects and len(here) > max_objects:
            here = sorted(rng.choice(here, max_objects, replace=False).tolist())
        for v in here:
            m = masks[v]
            e = ext3[v] if extent == "volume" else object_extent(geo, m, k, "slice")
            crop = zoom_crop_for(predictor, e, geo.hw, rng if jitter else None)
            if crop is None:
                continue
            emb = predictor.embeddings(geo, [k], crop=crop)[k]
            lab = [cut_to_crop(np.asarray(geo.slice_of(m, j), dtype=bool), crop) if 0 <= j < n_k else None
                   for j in (k - 1, k, k + 1)]
            cur = lab[1]
            lab = [x if x is not None else np.zeros_like(cur) for x in lab]
            cc = make(source=source, case_id=str(case.case_id), hw=tuple(int(s) for s in cur.shape), slices=[k],
                           names={v + value_offset: names.get(v, str(v))}, view="zoom", crops={k: tuple(crop)})
            cc.embeddings[k] = emb.detach().to("cpu", torch.bfloat16).reshape(emb.shape[-3:])
            cc.labels[(k, v + value_offset)] = (lab[0], cur, lab[2])
            out.append(cc)
    return out
