"""Training data for 2D slice models: labelled slices from any evaluation dataset.

1. :func:`extract_slices` reads cases of an :class:`~sam_med.evaluation.EvalDataset`
   (MSD/nnU-Net folder, npz folder, CSV: whatever ``sam-med evaluate`` reads) and cuts,
   for every object (label value) and every slice along the scan's slicing axis where the
   object is present, the model-input region **exactly as the slice-wise predictor does at
   inference**: the intensity mapping of the model config (CT window / MR percentiles),
   the same slicing axis and in-plane layout, and the same zoom crop around the object's
   3D box for small objects (``SliceWisePredictor.choose_crop``). Training and inference
   therefore see the same pixels.
2. :class:`SliceDataset` (a MONAI ``CacheDataset``) applies MONAI augmentations for CT/MR
   (intensity scale/shift, small rotation/scale/translation, optional left-right flip) on
   the source-resolution slice + label, then the model's own preprocessing from its config
   (:class:`ToModelInputd`: ``LoadedModel.preprocess``, the label brought to the same
   model grid). Deterministic transforms are cached; the random ones are re-seeded per
   (seed, epoch, index) so that every process of a DDP run, and a resumed run, produce the
   same sample for the same index.

Sample dict after the transforms: ``image`` ``(3, S, S)`` float32, ``label`` ``(1, S, S)``
float32 in {0, 1} on the model grid (zero in the padding), ``bbox`` ``(4,)`` tight XYXY box
of the (augmented) label in source pixels, ``hw`` source ``(H, W)``, plus ``case_id``,
``object``, ``slice``, ``index``.
"""

from __future__ import annotations

import zlib
from typing import Any, Sequence

import numpy as np
import torch
from monai.data import CacheDataset
from monai.transforms import (Compose, MapTransform, RandAffined, RandFlipd, RandScaleIntensityd,
                              RandShiftIntensityd, ScaleIntensityRanged)

from .prompts import mask_box

__all__ = ["extract_slices", "SliceDataset", "ToModelInputd", "build_augmentations", "sample_seed",
           "DEFAULT_AUGMENT"]

DEFAULT_AUGMENT: dict[str, Any] = {
    "enabled": True,
    "prob": 0.5,
    "intensity_scale": 0.1,   # x * (1 + U(-s, s)) on the 0..255 scale
    "intensity_shift": 10.0,  # + U(-o, o) on the 0..255 scale
    "rotate_deg": 10.0,
    "scale": 0.1,
    "translate_px": 4.0,
    # left-right flip: anatomy is roughly mirror-symmetric in axial CT/MR, but not for
    # every target (liver, spleen, heart); off by default, turn on per dataset
    "flip_lr": False,
}


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed that depends only on (seed, epoch, index)."""
    return zlib.crc32(f"{int(seed)}/{int(epoch)}/{int(index)}".encode()) & 0x7FFFFFFF


def _predictor_for(loaded, options: dict | None = None, cache=None):
    from ..predictors.slicewise import SliceWisePredictor

    return SliceWisePredictor(loaded=loaded, cache=cache, **(options or {}))


def extract_slices(dataset, loaded, case_ids: Sequence[str] | None = None, *, predictor=None,
                   predictor_options: dict | None = None, max_slices_per_case: int | None = None,
                   with_embeddings: bool = False, progress=None) -> list[dict]:
    """Labelled 2D samples of the chosen cases (see the module docstring).

    ``dataset``: an ``EvalDataset`` (or a path for :func:`open_dataset`); ``loaded``: the base
    :class:`~sam_med.models.LoadedModel`; ``case_ids``: subset (default all).
    ``with_embeddings``: also encode every sample through the predictor's embedding cache
    (``embedding`` key, ``(256, 64, 64)``; the frozen-encoder fast path; the same cache
    entries the evaluation reuses). ``max_slices_per_case``: keep the slices nearest each
    object's largest slice (for tiny test runs).
    Each dict: ``image (1, H, W)`` float32 0..255, ``label (1, H, W)`` uint8, ``case_id``,
    ``object``, ``slice``, ``axis``, ``crop``.
    """
    from ..evaluation import open_dataset
    from ..evaluation.protocols import tight_box

    ds = open_dataset(dataset) if isinstance(dataset, (str, bytes)) or hasattr(dataset, "__fspath__") else dataset
    by_id = {c.case_id: c for c in ds.cases}
    if case_ids is not None:
        missing = [c for c in case_ids if c not in by_id]
        if missing:
            from ..errors import SamMedError
            raise SamMedError(f"case ids not in dataset {ds.root}: {missing}; available: {sorted(by_id)}")
    chosen = [by_id[c] for c in case_ids] if case_ids is not None else list(ds.cases)
    pred = predictor or _predictor_for(loaded, predictor_options)
    out: list[dict] = []
    for ci, case in enumerate(chosen):
        image, label = case.load()
        geo = pred.geometry(image)
        for value, _name in case.objects(label):
            ref = label.array == value
            box = tight_box(ref)
            if box is None:
                continue
            (s0, s1), bound2d = geo.box_to_plane(*box.int_bounds())
            crop = pred.choose_crop(bound2d, geo.hw, from_points=False)
            ks = [k for k in range(s0, s1 + 1) if geo.slice_of(ref, k).any()]
            if max_slices_per_case and len(ks) > max_slices_per_case:
                areas = {k: int(geo.slice_of(ref, k).sum()) for k in ks}
                kmax = max(ks, key=lambda k: (areas[k], -k))
                ks = sorted(sorted(ks, key=lambda k: (abs(k - kmax), k))[:max_slices_per_case])
            embs = pred.embeddings(geo, ks, crop) if with_embeddings else {}
            for k in ks:
                img = pred.slice_image(geo, k, crop)
                lab = geo.slice_of(ref, k)
                if crop is not None:
                    x0, y0, x1, y1 = crop
                    lab = lab[y0:y1 + 1, x0:x1 + 1]
                item = {"image": img[None].astype(np.float32), "label": np.ascontiguousarray(lab)[None].astype(np.uint8),
                        "case_id": case.case_id, "object": int(value), "slice": int(k),
                        "axis": int(geo.axis), "crop": crop}
                if with_embeddings:
                    item["embedding"] = embs[k]
                out.append(item)
        if progress:
            progress(ci + 1, len(chosen), "slices")
    return out


class ToModelInputd(MapTransform):
    """Source slice -> model input with the model config's preprocessing.

    ``image (1, H, W)`` 0..255 -> ``(3, S, S)`` by ``preprocess`` (e.g. LiteMedSAM's
    area resize + min-max + pad); ``label (1, H, W)`` -> ``(1, S, S)`` on the same grid
    (area resize of the mask, > 0.5, zero padding); adds ``bbox`` (source px) and ``hw``."""

    def __init__(self, preprocess, keys=("image", "label")) -> None:
        super().__init__(keys)
        self.pre = preprocess

    def __call__(self, data):
        from ..transforms import resize_area

        d = dict(data)
        img = np.asarray(d["image"], dtype=np.float64)[0]
        lab = np.asarray(d["label"])[0] > 0.5
        x, meta = self.pre(np.clip(img, 0, 255))
        h, w = meta.resized_size
        s = meta.image_size
        lab_r = resize_area(lab.astype(np.float64), (h, w), False) > 0.5
        lab_m = np.zeros((1, s, s), dtype=np.float32)
        lab_m[0, :h, :w] = lab_r
        bbox = mask_box(lab)
        d["image"] = x
        d["label"] = torch.from_numpy(lab_m)
        d["bbox"] = torch.as_tensor(bbox if bbox is not None else [-1, -1, -1, -1], dtype=torch.float32)
        d["hw"] = torch.as_tensor(lab.shape, dtype=torch.int64)
        return d


def build_augmentations(cfg: dict | None) -> list:
    """MONAI dictionary augmentations on ``image``/``label`` ``(1, H, W)`` (source pixels)."""
    c = {**DEFAULT_AUGMENT, **(cfg or {})}
    if not c.get("enabled", True):
        return []
    p = float(c["prob"])
    keys = ["image", "label"]
    out = [
        RandScaleIntensityd(keys="image", factors=float(c["intensity_scale"]), prob=p),
        RandShiftIntensityd(keys="image", offsets=float(c["intensity_shift"]), prob=p),
        RandAffined(keys=keys, prob=p, rotate_range=np.deg2rad(float(c["rotate_deg"])),
                    scale_range=float(c["scale"]), translate_range=float(c["translate_px"]),
                    mode=("bilinear", "nearest"), padding_mode="zeros"),
    ]
    if c.get("flip_lr"):
        out.append(RandFlipd(keys=keys, prob=p, spatial_axis=1))
    out.append(ScaleIntensityRanged(keys="image", a_min=0, a_max=255, b_min=0, b_max=255, clip=True))
    return out


class SliceDataset(CacheDataset):
    """MONAI ``CacheDataset`` of extracted slices: augmentations, then the model's preprocessing.

    Deterministic: call :meth:`set_epoch`; sample ``i`` of epoch ``e`` re-seeds the random
    transforms with :func:`sample_seed` (seed, e, i), independent of the process drawing it.
    """

    def __init__(self, items: list[dict], preprocess, augment: dict | None = None, seed: int = 0) -> None:
        items = [{k: v for k, v in it.items() if k != "embedding"} | {"index": i} for i, it in enumerate(items)]
        self.seed = int(seed)
        self.epoch = 0
        aug = build_augmentations(augment)
        tf = Compose(aug + [ToModelInputd(preprocess)]) if aug else Compose([ToModelInputd(preprocess)])
        super().__init__(items, tf, cache_rate=1.0, num_workers=0, progress=False, copy_cache=True)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _transform(self, index: int):
        self.transform.set_random_state(seed=sample_seed(self.seed, self.epoch, index))
        return super()._transform(index)
