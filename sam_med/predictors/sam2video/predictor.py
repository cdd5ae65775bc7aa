"""MedSAM2 / SAM 2 as a sam-med :class:`~sam_med.predictors.base.VolumePredictor`.

The volume's slices along ``axis`` are the frames (shown as in :mod:`..planes`: rows = the
higher in-plane axis). The config's intensity step (``preprocessing.intensity``, by input
kind: ``hu`` / ``raw_mr`` / ``windowed``) gives uint8 grey values for the whole volume; each
slice then goes through ``preprocessing.frame`` (RGB, 512^2, ImageNet normalisation).

Prompts -> slices (as MedSAM2's inference scripts): a key-slice box is a box on its slice
with propagation limited to its range; a tight 3D box is its middle slice's rectangle + its
extent along the axis; points prompt the slice they are on. The first run propagates from
the first prompted slice both ways (each pass starting from an empty bank, as the reference
resets between its forward and reverse pass); a later click re-runs the propagation from its
slice both ways. Result: the union of the passes, > 0 on the slice grid, the largest 3D
connected component (config ``largest_component``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ...errors import PromptError
from ...prompts import ObjectPrompts
from ..base import PredictionInfo, PredictionResult, ProgressFn
from ..planes import PlaneGeometry
from .engine import Sam2VideoEngine
from .state import VideoState

__all__ = ["Sam2VideoOptions", "Sam2VideoPredictor"]


@dataclass
class Sam2VideoOptions:
    """Options of :class:`Sam2VideoPredictor` (``build_predictor`` / ``--option``)."""

    axis: int | None = None             # slicing axis; None: the volume's acquisition axis
    window: tuple[float, float] | None = None  # CT (level, width); None: the config's
    modality: str | None = field(default=None, metadata={"choices": (None, "CT", "MR")})  # None: guessed
    fill_hole_area: int = 8             # reference post-processing (0 = off)
    largest_component: bool | None = None  # None: the config's (true)
    threshold: float | None = None      # on the logits; None: the config's (0.0)
    feature_cache_mb: int = 1024        # encoder features kept (~4 MB per slice)


@dataclass
class _ObjectState:
    """The private state a result carries: the track and what produced it."""

    obj_id: int
    volume_key: tuple
    applied: list                       # (slice, box, points) applied, in order
    limits: tuple[int, int]


def _volume_key(volume) -> tuple:
    a = volume.array
    return (id(a), a.shape, str(a.dtype), a.__array_interface__["data"][0])


class Sam2VideoPredictor:
    """Segment one object at a time with a SAM 2 model, slice by slice with memory."""

    def __init__(self, model: Any = "medsam2", checkpoint=None, device: str = "cpu",
                 options: Sam2VideoOptions | None = None) -> None:
        from ...models import load_model, read_model_config

        self.options = options or Sam2VideoOptions()
        self.device = torch.device(device)
        if isinstance(model, (str, dict)) or hasattr(model, "__fspath__"):
            lm = load_model(model, checkpoint=checkpoint, device=str(self.device), precision="fp32")
            self.config, net = lm.config, lm.model
        else:  # (model, config) ready
            net, self.config = model[0], read_model_config(model[1])
        self.model = net.eval()
        self.model_name = str(self.config.get("name") or "medsam2")
        pre = self.config.get("preprocessing") or {}
        self.intensity = dict(pre.get("intensity") or {})
        missing = {"hu", "raw_mr", "windowed"} - set(self.intensity)
        if missing or pre.get("frame") is None:
            raise PromptError(f"model config {self.model_name}: preprocessing needs intensity "
                              f"hu/raw_mr/windowed and frame (lacks {sorted(missing) or ['frame']})")
        o = self.options
        self.threshold = float(o.threshold if o.threshold is not None else pre.get("threshold", 0.0))
        self.largest_component = bool(pre.get("largest_component", True) if o.largest_component is None
                                      else o.largest_component)
        self.engine = Sam2VideoEngine(self.model, pre["frame"], self.device, cache_bytes=int(o.feature_cache_mb) << 20,
                                      fill_hole_area=int(o.fill_hole_area))
        self._state: VideoState | None = None
        self._geom: PlaneGeometry | None = None
        self._next_id = 1
        self._applied: dict[int, list] = {}  # obj_id -> the prompts its track now holds

    # ------------------------------------------------------------------ volume -> frames
    def _intensity_kind(self, volume) -> str:
        from ...volume import guess_modality

        if volume.intensity == "windowed":
            return "windowed"
        if self.options.modality is not None:
            return "hu" if self.options.modality == "CT" else "raw_mr"
        if volume.intensity == "HU" or guess_modality(volume) == "CT":
            return "hu"
        return "raw_mr"

    def frames_of(self, volume) -> np.ndarray:
        """uint8 ``(D, H, W)`` frames of ``volume`` (intensity step, then slices as planes)."""
        kind = self._intensity_kind(volume)
        if kind == "hu" and self.options.window is not None:
            tf = _window_transform(*(float(v) for v in self.options.window))
        else:
            tf = self.intensity[kind]
        arr = np.asarray(volume.array)
        if kind == "windowed" and (arr.min() < 0 or arr.max() > 255):
            raise PromptError(f"volume marked 'windowed' has values outside 0..255 ({arr.min()}..{arr.max()})")
        grey = np.asarray(tf(arr))
        geom = self._geometry(volume)
        return np.stack([geom.slice_of(grey, k) for k in range(geom.n_slices)]).astype(np.uint8)

    def _geometry(self, volume) -> PlaneGeometry:
        axis = self.options.axis if self.options.axis is not None else int(getattr(volume, "slice_axis", 2))
        return PlaneGeometry(int(axis), tuple(int(s) for s in volume.array.shape))

    def init_state(self, volume) -> VideoState:
        """The video state of ``volume`` (kept: features are reused by every object and click)."""
        key = _volume_key(volume) + (self.options.axis,)
        if self._state is None or self._state.key != key:
            self._geom = self._geometry(volume)
            self._state = self.engine.init_state(self.frames_of(volume), key=key)
        return self._state

    def prepare(self, volume, progress: ProgressFn | None = None) -> None:
        """Make the frames; slices are encoded on demand (and cached)."""
        self.init_state(volume)

    # ------------------------------------------------------------------ prompts -> slices
    def slice_prompts(self, volume, prompts: ObjectPrompts) -> tuple[list, tuple[int, int]]:
        """``[(slice, box XYXY | None, [(x, y, label), ...])]`` (key slice first, then the
        points' slices in click order) and the slice range propagation is limited to."""
        geom = self._geom or self._geometry(volume)
        n = geom.n_slices
        box, limits, key = None, (0, n - 1), None
        if prompts.key_box is not None and prompts.key_box.axis == geom.axis:
            kb = prompts.key_box
            key, box, limits = int(kb.slice), [float(c) for c in kb.rect], (int(kb.range[0]), int(kb.range[1]))
        elif prompts.box is not None or prompts.key_box is not None:
            b = prompts.box if prompts.box is not None else prompts.key_box.to_box3d()
            lo, hi = np.asarray(b.lo, float), np.asarray(b.hi, float)
            p, q = geom.inplane
            a = geom.axis
            key = int(round((lo[a] + hi[a]) / 2))
            box, limits = [lo[p], lo[q], hi[p], hi[q]], (int(round(lo[a])), int(round(hi[a])))
        per_slice: dict[int, list] = {}
        for pt in prompts.points:
            z, x, y = geom.to_plane(pt.ijk)
            per_slice.setdefault(int(round(z)), []).append((x, y, 1 if pt.positive else 0))
        order = ([key] if key is not None else []) + [z for z in per_slice if z != key]
        out = [(z, box if z == key else None, per_slice.get(z, [])) for z in order]
        lo, hi = max(0, min(limits)), min(n - 1, max(limits))
        for z, _, _ in out:
            if not 0 <= z < n:
                raise PromptError(f"prompt on slice {z} is outside the volume (0..{n - 1} along axis {geom.axis})")
            lo, hi = min(lo, z), max(hi, z)
        return out, (lo, hi)

    # ------------------------------------------------------------------ predict
    def predict(self, volume, prompts: ObjectPrompts, previous: PredictionResult | None = None,
                progress: ProgressFn | None = None) -> PredictionResult:
        if prompts is None or prompts.is_empty():
            raise PromptError("no prompts for this object: give a box or at least one positive point")
        state = self.init_state(volume)
        items, limits = self.slice_prompts(volume, prompts)
        prev = previous.state if previous is not None and isinstance(previous.state, _ObjectState) else None
        fresh = (prev is None or prev.volume_key != state.key or prev.obj_id not in state.objects
                 or prev.limits != limits or self._applied.get(prev.obj_id) != prev.applied
                 or not _extends(prev.applied, items))  # undo/redo hands back an older result
        if fresh:
            obj_id = self._next_id
            self._next_id += 1
            todo, starts = items, items[:1]
        else:
            obj_id = prev.obj_id
            todo = [it for it in items if it not in prev.applied]
            changed = {z for z, _, _ in todo}
            todo = [it for it in items if it[0] in changed]
            starts = todo
        for z, box, pts in todo:
            xy = [(x, y) for x, y, _ in pts]
            self.engine.add_prompts(state, z, obj_id, xy or None, [lab for _, _, lab in pts] or None, box)
        for z in dict.fromkeys(it[0] for it in starts):
            self._both_ways(state, obj_id, z, limits, progress)
        self._applied[obj_id] = list(items)
        mask = self.engine.volume_mask(state, obj_id, self.threshold)
        mask[:limits[0]] = False
        mask[limits[1] + 1:] = False
        if self.largest_component and mask.any():
            mask = _largest_component(mask)
        out = np.zeros(volume.array.shape, dtype=bool)
        for k in range(mask.shape[0]):
            self._geom.set_slice(out, k, mask[k])
        track = state.objects[obj_id]
        info = PredictionInfo(axis=self._geom.axis, slices=[int(k) for k in np.flatnonzero(mask.any(axis=(1, 2)))],
                              extra={"prompted_slices": sorted(track.cond), "slice_range": list(limits),
                                     "encoded_slices": state.cache.encoded, "memory_bank": track.bank_size()})
        return PredictionResult(mask=out, state=_ObjectState(obj_id, state.key, list(items), limits), info=info)

    def _both_ways(self, state: VideoState, obj_id: int, z: int, limits: tuple[int, int],
                   progress: ProgressFn | None) -> None:
        total = limits[1] - limits[0] + 2
        done = 0
        for reverse, end in ((False, limits[1]), (True, limits[0])):
            for _ in self.engine.propagate(state, obj_id, start=z, reverse=reverse, end=end):
                done += 1
                if progress:
                    progress(min(done, total), total, "encode")


def _extends(old: list, new: list) -> bool:
    """True when ``new`` only adds points (or slices) to ``old``: a click, not an edit or undo."""
    by_slice = {z: (box, pts) for z, box, pts in new}
    for z, box, pts in old:
        if z not in by_slice or by_slice[z][0] != box or by_slice[z][1][:len(pts)] != pts:
            return False
    return True


def _window_transform(level: float, width: float):
    from monai.transforms import CastToType, Compose, ScaleIntensity, ThresholdIntensity

    lo, hi = level - width / 2, level + width / 2
    return Compose([ThresholdIntensity(lo, above=True, cval=lo), ThresholdIntensity(hi, above=False, cval=hi),
                    ScaleIntensity(minv=0.0, maxv=255.0, dtype=np.float64), CastToType(np.uint8)])


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component (ties: the first in raster order), as the reference."""
    from scipy import ndimage

    lab, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if n <= 1:
        return mask
    return lab == (int(np.argmax(np.bincount(lab.ravel())[1:])) + 1)

