"""Volumetric (3D) predictor: SAM-Med3D-style models on 128^3 crops of a resampled volume.

Pipeline for one object (all geometry through MONAI MetaTensors, so every step is
invertible and the mask returns to the source grid by the transforms' own inverses):

1. **Geometry** (once per volume, cached): ``Orientation(RAS)`` -> ``Spacing(1.5 mm,
   bilinear)`` from the model config (``preprocessing#geometry``). The source volume's
   affine is voxel -> RAS, exactly what MONAI expects.
2. **Crop plan**: the prompts' extent is mapped into the resampled grid through the
   affines (source voxel -> world -> resampled voxel). One ``SpatialCrop(roi_center,
   S^3) + SpatialPad(S^3, 0)`` cube is centred on it; when the extent exceeds one cube
   (minus a margin) the extent is tiled with overlapping cubes (``tile_overlap``) and
   the results merged with MONAI's Gaussian importance map (sliding window).
3. **Intensity**: z-score with mean/std of the crop's voxels > 0, applied to all
   voxels (TorchIO ``ZNormalization(masking_method=x > 0)``, as SAM-Med3D), after the
   zero padding (the official CropOrPad pads with 0 before normalising).
4. **Prompts in the crop**: points go source voxel -> world (source affine) -> crop
   voxel (inverse of the crop's MetaTensor affine): continuous indices in the crop
   tensor's axis order, which is what the model expects (see
   :mod:`sam_med.models.sam3d.prompt_encoder3d` for the positional-encoding quirk,
   handled inside the model). Points outside a tile are not given to that tile.
5. **Model**: ``encode`` the crop, ``decode`` points + labels + the previous low-res
   logits of this tile (zeros on the first call, as the official inference loop).
   Logits are upsampled trilinearly to S^3 (``align_corners=False``) and passed
   through a sigmoid.
6. **Back to the source grid**: the probability map inherits the crop's
   ``applied_operations``; ``crop.inverse`` puts it on the resampled grid, tiles are
   blended, ``geometry.inverse`` resamples (bilinear) onto the source grid, and the
   mask is ``probability > threshold`` (0.5).

**How a 3D box becomes prompts** (SAM-Med3D has no box embedding; its prompt encoder
has only positive/negative point embeddings):

* the crop (or tiles) are centred on the box, so the box decides the field of view;
* each crop gets one positive point at the centre of (box ∩ crop), added in front of
  the user's clicks (SAM-Med3D's first training click is a voxel inside the object;
  the box centre is the best guess of one for convex organs);
* the final mask is restricted to the box (inclusive voxel bounds) on the source grid.
This is a documented heuristic, not a measured optimum: without the released weights
here we could not compare variants (negative points outside the faces, mask prior).

**Refinement**: :attr:`PredictionResult.state` keeps, per crop, its centre and its
low-res logits. A later call for the same object on the same volume reuses the same
crops (as long as the box is unchanged and every positive click still lies inside
them) and feeds each crop's previous logits as the dense mask prompt together with
the full, grown click list — the official SAM-Med3D click loop.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import PromptError, SamMedError
from ..prompts import ObjectPrompts, apply_key_slice_box
from .base import PredictionInfo, PredictionResult, ProgressFn
from ..volume import Volume, apply_affine

__all__ = ["VolumetricPredictor", "VolumetricOptions", "Sam3DState", "CropPlan", "zscore_positive"]


@dataclass
class CropPlan:
    """One crop: its centre in resampled voxels, and the prompts in its voxel coordinates."""

    center: tuple[int, int, int]
    coords: np.ndarray  # (N, 3) float, crop voxel indices (tensor-dim order)
    labels: np.ndarray  # (N,) int 1/0


@dataclass
class Sam3DState:
    """Private refinement state kept in ``PredictionResult.state``."""

    volume_key: tuple
    box: tuple | None
    centers: list[tuple[int, int, int]]
    low_res: dict[tuple[int, int, int], torch.Tensor] = field(default_factory=dict)


def zscore_positive(crop: torch.Tensor, clip=None) -> torch.Tensor:
    """SAM-Med3D intensity normalisation of one crop: z-score with the mean/std of the
    voxels > 0 (TorchIO ``ZNormalization(masking_method=x > 0)``), applied to all voxels.
    Falls back to all voxels when fewer than 2 are > 0. ``clip``: optional (lo, hi) first."""
    x = torch.as_tensor(crop).as_subclass(torch.Tensor).float()
    if clip is not None:
        x = x.clamp(float(clip[0]), float(clip[1]))
    sel = x[x > 0]
    if sel.numel() < 2:
        sel = x.reshape(-1)
    mean, std = sel.mean(), sel.std()
    return (x - mean) / (std if float(std) > 0 else 1.0)


def _volume_key(volume: Volume) -> tuple:
    a = volume.array
    return (id(a), a.shape, str(a.dtype), volume.affine.round(6).tobytes())


@dataclass
class VolumetricOptions:
    """The options :class:`VolumetricPredictor` takes (``build_predictor`` / ``--option``)."""

    # "config" (the model config's), None (fp32), "bf16"/"bfloat16"
    autocast_dtype: str | None = field(default="config", metadata={"choices": ("config", None, "bf16", "bfloat16")})
    tile_overlap: float | None = None  # None: the config's (0.25)
    threshold: float | None = None  # probability threshold; None: the config's (0.5)
    margin: int = 8


class VolumetricPredictor:
    """Segment one object at a time with a SAM-Med3D-compatible model.

    ``VolumetricPredictor(model=None, *, checkpoint=None, device="cpu", loaded=None, ...)``, as
    :class:`~sam_med.predictors.slicewise.SliceWisePredictor`:

    model: model config name (``configs/models/<name>.yaml``), path or dict; None: the
        ``sam_med3d_turbo`` config (or, with ``loaded``, no config).
    checkpoint: weights file (official container or bare state dict) or a folder;
        None = ``$SAM_MED_CHECKPOINTS/<config's file_name>``.
    device: torch device string.
    loaded: a ready model object with ``encode(image)``, ``decode(emb, coords, labels,
        mask_logits) -> (logits, iou)`` and ``config.img_size`` / ``config.spacing`` (e.g.
        :class:`~sam_med.models.sam3d.Sam3D` or a test double); else loaded from ``model``.
    autocast_dtype: "config" (the config's ``autocast_dtype``), None (fp32) or
        ``torch.bfloat16``.
    """

    def __init__(self, model=None, *, checkpoint=None, device: str = "cpu", loaded=None,
                 autocast_dtype: Any = "config", tile_overlap: float | None = None,
                 threshold: float | None = None, margin: int = 8) -> None:
        from ..models.sam3d import load_model_config, load_sam3d

        self.device = torch.device(device)
        config = model if model is not None or loaded is not None else "sam_med3d_turbo"
        self.config: dict[str, Any] = load_model_config(config) if config is not None else {}
        if loaded is None:
            loaded = load_sam3d(checkpoint, self.config, device=str(self.device))
        elif isinstance(loaded, torch.nn.Module):
            loaded = loaded.to(self.device).eval()
        model = loaded
        self.model = model
        self.model_name = str(self.config.get("name") or getattr(model, "name", None) or "sam3d")
        mcfg = getattr(model, "config", None)
        self.img_size = int(getattr(mcfg, "img_size", None) or self.config.get("image_size", 128))
        self.spacing = tuple(float(s) for s in (getattr(mcfg, "spacing", None) or (1.5, 1.5, 1.5)))
        pre = self.config.get("preprocessing") or {}
        self.tile_overlap = float(tile_overlap if tile_overlap is not None else pre.get("tile_overlap", 0.25))
        self.threshold = float(threshold if threshold is not None else pre.get("threshold", 0.5))
        self.pad_value = float(pre.get("pad_value", 0.0))
        self.clip = (pre.get("normalize") or {}).get("clip")
        self.margin = int(margin)
        ac = self.config.get("autocast_dtype") if autocast_dtype == "config" else autocast_dtype
        self.autocast_dtype = {None: None, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}.get(ac, ac)
        self._geometry = self._build_geometry(pre.get("geometry"))
        self._cache_key: tuple | None = None
        self._cache: Any = None

    # ------------------------------------------------------------------ geometry
    def _build_geometry(self, spec):
        from monai.transforms import Compose, Orientation, Spacing

        if spec:
            if all(hasattr(t, "__call__") and not isinstance(t, dict) for t in spec):
                return Compose(list(spec))  # already instantiated (registry's ConfigParser)
            from monai.bundle import ConfigParser

            return Compose(ConfigParser({"g": list(spec)}).get_parsed_content("g"))
        return Compose([Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
                        Spacing(pixdim=self.spacing, mode="bilinear", padding_mode="border")])

    def _crop_transform(self, center: Sequence[int]):
        from monai.transforms import Compose, SpatialCrop, SpatialPad

        s = (self.img_size,) * 3
        return Compose([SpatialCrop(roi_center=[int(c) for c in center], roi_size=s),
                        SpatialPad(spatial_size=s, value=self.pad_value)])

    def resampled(self, volume: Volume):
        """The volume as a (1, X', Y', Z') MetaTensor in the model's orientation and spacing (cached)."""
        from monai.data import MetaTensor

        key = _volume_key(volume)
        if key != self._cache_key:
            arr = torch.as_tensor(np.asarray(volume.array, dtype=np.float32))[None]
            mt = MetaTensor(arr, affine=torch.as_tensor(volume.affine, dtype=torch.float64))
            self._cache = self._geometry(mt)
            self._cache_key = key
        return self._cache

    def prepare(self, volume: Volume, progress: ProgressFn | None = None) -> None:
        """Resample the volume once (crops are encoded on demand, per object)."""
        if progress:
            progress(0, 1, "resampling volume")
        self.resampled(volume)
        if progress:
            progress(1, 1, "resampling volume")

    # ------------------------------------------------------------------ prompts
    @staticmethod
    def _to_voxels(affine_to: np.ndarray, world: np.ndarray) -> np.ndarray:
        return apply_affine(np.linalg.inv(np.asarray(affine_to, dtype=np.float64)), world)

    def _extent(self, volume: Volume, prompts: ObjectPrompts, r_aff: np.ndarray):
        """Extent (lo, hi) in resampled voxels to cover, and the box in world corners."""
        if prompts.box is not None:
            lo, hi = np.asarray(prompts.box.lo), np.asarray(prompts.box.hi)
            corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
            rv = self._to_voxels(r_aff, volume.voxel_to_world(corners))
            return rv.min(0), rv.max(0)
        pos = [p.ijk for p in prompts.points if p.positive]
        if not pos:
            raise PromptError("a 3D model needs a box or at least one positive point for the object")
        rv = self._to_voxels(r_aff, volume.voxel_to_world(np.asarray(pos, dtype=np.float64)))
        return rv.min(0), rv.max(0)

    def _tile_centers(self, lo: np.ndarray, hi: np.ndarray, shape: Sequence[int]) -> list[tuple[int, int, int]]:
        s, m = self.img_size, self.margin
        per_axis = []
        for a in range(3):
            length = hi[a] - lo[a] + 1 + 2 * m
            if length <= s:
                per_axis.append([int(round((lo[a] + hi[a]) / 2))])
                continue
            step = s * (1.0 - self.tile_overlap)
            n = int(math.ceil((length - s) / step)) + 1
            first, last = lo[a] - m + s / 2, hi[a] + m - s / 2
            per_axis.append([int(round(c)) for c in np.linspace(first, last, n)])
        return [(i, j, k) for i in per_axis[0] for j in per_axis[1] for k in per_axis[2]]

    def _plan(self, volume: Volume, prompts: ObjectPrompts, centers, r, crop_affines) -> list[CropPlan]:
        s = self.img_size
        pts = np.asarray([p.ijk for p in prompts.points], dtype=np.float64).reshape(-1, 3)
        labels = np.asarray([1 if p.positive else 0 for p in prompts.points], dtype=np.int64)
        world = volume.voxel_to_world(pts) if len(pts) else pts
        r_aff = r.affine.numpy()
        plans = []
        for c, aff in zip(centers, crop_affines):
            cv = self._to_voxels(aff, world) if len(pts) else pts
            inside = np.all((cv >= -0.5) & (cv <= s - 0.5), axis=1) if len(pts) else np.zeros(0, bool)
            coords, labs = cv[inside], labels[inside]
            if prompts.box is not None:
                lo, hi = self._extent(volume, prompts, r_aff)
                # crop's extent in resampled voxels: its affine differs from r's by a shift
                start = self._to_voxels(r_aff, apply_affine(aff, np.zeros(3)))
                blo = np.maximum(lo, start)
                bhi = np.minimum(hi, start + s - 1)
                if np.any(bhi < blo):
                    continue
                centre_world = apply_affine(r_aff, (blo + bhi) / 2)
                bc = self._to_voxels(aff, centre_world)
                coords = np.concatenate([bc[None], coords])
                labs = np.concatenate([[1], labs])
            if not np.any(labs == 1):
                continue  # SAM-Med3D needs a positive click in the crop
            plans.append(CropPlan(tuple(int(x) for x in c), coords.astype(np.float32), labs))
        return plans

    # ------------------------------------------------------------------ model
    def _autocast(self):
        import contextlib

        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def normalize(self, crop: torch.Tensor) -> torch.Tensor:
        return zscore_positive(crop, self.clip)

    @torch.inference_mode()
    def _run_crop(self, image: torch.Tensor, plan: CropPlan, prev: torch.Tensor | None):
        s = self.img_size
        x = self.normalize(torch.as_tensor(image).as_subclass(torch.Tensor))[None, None].to(self.device)
        coords = torch.as_tensor(plan.coords, dtype=torch.float32, device=self.device)[None]
        labels = torch.as_tensor(plan.labels, dtype=torch.int64, device=self.device)[None]
        patch = getattr(getattr(self.model, "config", None), "patch_size", None)
        low_size = (4 * (s // patch) if patch else s // 4,) * 3  # 4 x the embedding grid (32^3)
        mask_in = (prev.to(self.device).float() if prev is not None
                   else torch.zeros((1, 1, *low_size), device=self.device))
        with self._autocast():
            emb = self.model.encode(x)
            low, iou = self.model.decode(emb, coords, labels, mask_in)
        low = low.float()
        full = F.interpolate(low, size=(s, s, s), mode="trilinear", align_corners=False) \
            if tuple(low.shape[-3:]) != (s, s, s) else low
        return torch.sigmoid(full)[0, 0].cpu(), low.cpu(), float(iou.float().reshape(-1)[0])

    # ------------------------------------------------------------------ predict
    def predict(self, volume: Volume, prompts: ObjectPrompts, previous: PredictionResult | None = None,
                progress: ProgressFn | None = None) -> PredictionResult:
        prompts = apply_key_slice_box(prompts)  # this predictor knows tight 3D boxes only
        from monai.data import MetaTensor
        from monai.data.utils import compute_importance_map

        if prompts is None or prompts.is_empty():
            raise PromptError("no prompts for this object: give a box or at least one positive point")
        r = self.resampled(volume)
        r_aff = r.affine.numpy()
        vkey = _volume_key(volume)
        box_key = tuple(prompts.box.to_json()) if prompts.box is not None else None
        lo, hi = self._extent(volume, prompts, r_aff)

        prev_state = previous.state if previous is not None and isinstance(previous.state, Sam3DState) else None
        centers = None
        if prev_state is not None and prev_state.volume_key == vkey and prev_state.box == box_key:
            centers = prev_state.centers  # keep the crops fixed while refining
        new_centers = self._tile_centers(lo, hi, r.shape[1:])
        crops = {}
        def crop_of(c):
            if c not in crops:
                t = self._crop_transform(c)
                crops[c] = (t, t(r))
            return crops[c]
        if centers is not None:
            # re-plan if a positive click falls outside every kept crop
            affs = [crop_of(c)[1].affine.numpy() for c in centers]
            pos = [p.ijk for p in prompts.points if p.positive]
            if pos:
                w = volume.voxel_to_world(np.asarray(pos, dtype=np.float64))
                s = self.img_size
                covered = np.zeros(len(pos), bool)
                for aff in affs:
                    cv = self._to_voxels(aff, w)
                    covered |= np.all((cv >= -0.5) & (cv <= s - 0.5), axis=1)
                if not covered.all():
                    centers = None
        if centers is None:
            centers = new_centers
            prev_state = None
        plans = self._plan(volume, prompts, centers, r, [crop_of(c)[1].affine.numpy() for c in centers])
        if not plans:
            raise PromptError("no crop contains a positive prompt for this object")

        s = self.img_size
        weight = compute_importance_map((s, s, s), mode="gaussian" if len(plans) > 1 else "constant",
                                        device="cpu").float()
        weight = weight.clamp_min(1e-3)
        acc = torch.zeros((2, *r.shape[1:]), dtype=torch.float32)
        state = Sam3DState(volume_key=vkey, box=box_key, centers=list(centers))
        ious = []
        for n, plan in enumerate(plans):
            if progress:
                progress(n, len(plans), "3D crops")
            tf, crop = crop_of(plan.center)
            prev = prev_state.low_res.get(plan.center) if prev_state is not None else None
            prob, low, iou = self._run_crop(crop[0], plan, prev)
            state.low_res[plan.center] = low
            ious.append(iou)
            pred = MetaTensor(torch.stack([prob * weight, weight]), affine=crop.affine.clone(),
                              applied_operations=copy.deepcopy(crop.applied_operations))
            back = tf.inverse(pred)  # SpatialPad^-1, SpatialCrop^-1 -> resampled grid
            acc += back.as_tensor()
        if progress:
            progress(len(plans), len(plans), "3D crops")
        merged = torch.where(acc[1] > 0, acc[0] / acc[1].clamp_min(1e-8), torch.zeros_like(acc[0]))
        merged = MetaTensor(merged[None], affine=r.affine.clone(),
                            applied_operations=copy.deepcopy(r.applied_operations))
        src = self._geometry.inverse(merged).as_tensor()[0].numpy()  # Spacing^-1, Orientation^-1
        if src.shape != volume.shape:  # pragma: no cover - MONAI guarantees this
            raise SamMedError(f"inverse transform gave shape {src.shape}, expected {volume.shape}")
        mask = src > self.threshold
        if prompts.box is not None:
            blo, bhi = prompts.box.int_bounds()
            inside = np.zeros(volume.shape, bool)
            inside[blo[0]:bhi[0] + 1, blo[1]:bhi[1] + 1, blo[2]:bhi[2] + 1] = True
            mask &= inside
        iou = [float(v) for v in ious if v is not None]
        info = PredictionInfo(confidence=float(np.mean(iou)) if iou else None,
                              extra={"crops": len(plans)})
        return PredictionResult(mask=mask, state=state, info=info)
