"""Image preprocessing for the SAM-family models, as MONAI transforms.

Two stages, both declared in the model config (``sam_med/configs/models/*.yaml``):

1. **Intensity** (per modality, on the whole volume or a slice) -> float32 in [0, 255]:
   CT in Hounsfield units -> window (default W400/L40, soft tissue) with
   ``monai.transforms.ScaleIntensityRange``; raw MR -> :class:`PercentileNormalize`
   (MedSAM rule: clip to the 0.5/99.5 percentiles of the nonzero voxels of the whole
   volume, min-max to 0..255, background stays 0); already windowed 0..255 input ->
   unchanged.
2. **The model's own slice preprocessing** (:class:`SlicePreprocessor`): resize the
   longest side to S (256 for LiteMedSAM) with area interpolation identical to
   ``cv2.INTER_AREA`` (separable weight matrices, exact for non-integer scales),
   round to 8-bit like the reference (which resizes a uint8 image), min-max normalise
   to [0, 1], zero-pad bottom/right to S×S, repeat to 3 channels.

The inverse, :class:`LowResToSource`, maps low-res logits ``(..., 256, 256)`` back to the
source slice grid: crop the unpadded ``(h, w)`` region (in low-res units) and resize
bilinearly (``align_corners=False``) to ``(H, W)``.

Arrays are 2D slices indexed ``[row, column]`` = ``[y, x]``; prompts are in ``(x, y)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import ScaleIntensityRange, Transform

__all__ = [
    "DEFAULT_CT_WINDOW", "SliceMeta", "SlicePreprocessor", "ResizeLongestSideArea",
    "MinMaxNormalize", "PadBottomRight", "RepeatChannels", "PercentileNormalize",
    "LowResToSource", "CheckUint8Range", "area_resize_matrix", "resize_area", "ct_window_transform",
    "default_intensity_transforms", "intensity_to_uint8_range", "box_to_model", "points_to_model",
    "longest_side_size",
]

#: (level, width) in HU: soft-tissue window, used by MedSAM/LiteMedSAM for CT.
DEFAULT_CT_WINDOW = (40.0, 400.0)


# --------------------------------------------------------------------------- resize
def area_resize_matrix(src: int, dst: int) -> np.ndarray:
    """``(dst, src)`` float64 matrix reproducing ``cv2.INTER_AREA`` along one axis.

    Downscaling (``src >= dst``): each output pixel averages the source interval
    ``[i*s, (i+1)*s)``, ``s = src/dst``, with fractional weights at the borders
    (OpenCV's ``computeResizeAreaTab``). Upscaling: OpenCV's INTER_AREA falls back to
    a linear rule with weight ``f = (i+1) - (x0+1)/s`` (clipped to [0, 1)) on the next
    source pixel, ``x0 = floor(i*s)``; reproduced here too.
    """
    if src <= 0 or dst <= 0:
        raise ValueError(f"sizes must be positive, got {src} -> {dst}")
    m = np.zeros((dst, src), dtype=np.float64)
    scale = src / dst
    if scale >= 1.0:
        for dx in range(dst):
            fsx1 = dx * scale
            fsx2 = fsx1 + scale
            cell = min(scale, src - fsx1)
            sx1 = min(math.ceil(fsx1), src - 1)
            sx2 = min(math.floor(fsx2), src - 1)
            sx1 = min(sx1, sx2)
            if sx1 - fsx1 > 1e-3:
                m[dx, sx1 - 1] += (sx1 - fsx1) / cell
            for sx in range(sx1, sx2):
                m[dx, sx] += 1.0 / cell
            if fsx2 - sx2 > 1e-3:
                m[dx, sx2] += min(min(fsx2 - sx2, 1.0), cell) / cell
    else:
        inv = dst / src
        for dx in range(dst):
            sx = math.floor(dx * scale)
            fx = (dx + 1) - (sx + 1) * inv
            fx = 0.0 if fx <= 0 else fx - math.floor(fx)
            if sx < 0:
                sx, fx = 0, 0.0
            if sx >= src - 1:
                sx, fx = src - 1, 0.0
            m[dx, sx] += 1.0 - fx
            if fx:
                m[dx, sx + 1] += fx
    return m


def longest_side_size(hw: Sequence[int], target: int) -> tuple[int, int]:
    """``(new_h, new_w)`` with the longest side = ``target`` (``int(x * scale + 0.5)``)."""
    h, w = int(hw[0]), int(hw[1])
    scale = target / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def resize_area(img: np.ndarray, size: tuple[int, int], round_uint8: bool = False) -> np.ndarray:
    """Area-resize a 2D ``(H, W)`` array to ``size=(h, w)`` (float64 out).

    ``round_uint8`` emulates OpenCV on a uint8 image (the LiteMedSAM reference resizes
    uint8): downscaling rounds half up (as its integer 2x fast path); upscaling uses
    OpenCV's fixed-point linear path bit-exactly. (Mixed up/down scaling of the two
    axes, which a longest-side resize never produces, is not emulated bit-exactly.)"""
    img = np.asarray(img, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"expected a 2D slice, got shape {img.shape}")
    upscale = img.shape[0] < size[0] or img.shape[1] < size[1]
    if round_uint8 and upscale:
        return _cv2_area_upscale_u8(img, size)
    ry = area_resize_matrix(img.shape[0], size[0])
    rx = area_resize_matrix(img.shape[1], size[1])
    out = ry @ img @ rx.T
    if round_uint8:
        out = np.clip(np.floor(out + 0.5), 0, 255)
    return out


def _linear_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV INTER_AREA-upscale taps: left index, right index, 11-bit fixed-point weights."""
    m = area_resize_matrix(src, dst)  # at most two taps per row
    left = np.argmax(m > 0, axis=1)
    right = np.minimum(left + 1, src - 1)
    w0 = m[np.arange(dst), left]
    a = np.stack([np.round(w0 * 2048), np.round((1 - w0) * 2048)], axis=1).astype(np.int64)
    return left, right, a


def _cv2_area_upscale_u8(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bit-exact emulation of ``cv2.resize(uint8, INTER_AREA)`` when upscaling: OpenCV then
    uses its linear path with 11-bit fixed-point weights (horizontal pass in int, vertical
    pass as in its SIMD ``VResizeLinearVec_32s8u``). Input is rounded to uint8 first."""
    u8 = np.clip(np.floor(img + 0.5), 0, 255).astype(np.int64)
    xl, xr, ax = _linear_taps(u8.shape[1], size[1])
    yl, yr, ay = _linear_taps(u8.shape[0], size[0])
    rows = u8[:, xl] * ax[:, 0] + u8[:, xr] * ax[:, 1]
    s0, s1 = rows[yl] >> 4, rows[yr] >> 4
    b0, b1 = ay[:, :1], ay[:, 1:]
    out = (((b0 * s0) >> 16) + ((b1 * s1) >> 16) + 2) >> 2
    return np.clip(out, 0, 255).astype(np.float64)


@dataclass(frozen=True)
class SliceMeta:
    """Geometry of one preprocessed slice: source ``(H, W)``, resized ``(h, w)``, model size S."""

    original_size: tuple[int, int]
    resized_size: tuple[int, int]
    image_size: int

    def __getitem__(self, key: str):  # dict-style access for convenience
        return getattr(self, key)


class ResizeLongestSideArea(Transform):
    """``(H, W)`` array -> ``(h, w)`` with longest side ``image_size``, cv2.INTER_AREA-exact."""

    def __init__(self, image_size: int = 256, round_uint8: bool = True, keep_aspect: bool = True) -> None:
        self.image_size = int(image_size)
        self.round_uint8 = round_uint8
        self.keep_aspect = keep_aspect

    def target_size(self, hw: Sequence[int]) -> tuple[int, int]:
        if not self.keep_aspect:
            return self.image_size, self.image_size
        return longest_side_size(hw, self.image_size)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return resize_area(img, self.target_size(np.shape(img)), self.round_uint8)


class MinMaxNormalize(Transform):
    """``(x - min) / max(max - min, eps)`` -> [0, 1] (LiteMedSAM/MedSAM normalisation)."""

    def __init__(self, eps: float = 1e-8) -> None:
        self.eps = eps

    def __call__(self, img):
        lo, hi = img.min(), img.max()
        return (img - lo) / max(float(hi - lo), self.eps)


class MeanStdNormalize(Transform):
    """``(x - mean) / std`` per channel on the 0..255 scale (original SAM)."""

    def __init__(self, mean: Sequence[float] = (123.675, 116.28, 103.53),
                 std: Sequence[float] = (58.395, 57.12, 57.375)) -> None:
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)

    def __call__(self, img):  # (3, h, w)
        return (img - self.mean[:, None, None]) / self.std[:, None, None]


class PadBottomRight(Transform):
    """Zero-pad the last two axes at the bottom/right to ``image_size``²."""

    def __init__(self, image_size: int = 256) -> None:
        self.image_size = int(image_size)

    def __call__(self, img):
        h, w = img.shape[-2:]
        pad = [(0, 0)] * (img.ndim - 2) + [(0, self.image_size - h), (0, self.image_size - w)]
        return np.pad(img, pad)


class RepeatChannels(Transform):
    """``(h, w)`` -> ``(n, h, w)`` by repetition (grey -> RGB)."""

    def __init__(self, n: int = 3) -> None:
        self.n = n

    def __call__(self, img):
        return np.repeat(np.asarray(img)[None], self.n, axis=0)


class SlicePreprocessor(Transform):
    """One 2D slice (0..255) -> model input tensor, LiteMedSAM/MedSAM/SAM style.

    ``__call__(slice2d (H, W) float, intensity already mapped to 0..255)`` returns
    ``(tensor (3, S, S) float32, SliceMeta)`` with ``meta.original_size == (H, W)`` and
    ``meta.resized_size == (h, w)``. ``normalize`` is ``"minmax"`` (LiteMedSAM, MedSAM)
    or ``"mean_std"`` (SAM). ``keep_aspect=False`` resizes straight to S×S (MedSAM ViT-B).
    """

    def __init__(self, image_size: int = 256, normalize: str = "minmax", round_uint8: bool = True,
                 keep_aspect: bool = True, box_rule: str = "floor_longest") -> None:
        if normalize not in ("minmax", "mean_std"):
            raise ValueError(f"normalize must be 'minmax' or 'mean_std', got {normalize!r}")
        self.image_size = int(image_size)
        self.normalize = normalize
        self.box_rule = box_rule
        self.resize = ResizeLongestSideArea(image_size, round_uint8, keep_aspect)
        self.pad = PadBottomRight(image_size)

    def __call__(self, slice2d: np.ndarray) -> tuple[torch.Tensor, SliceMeta]:
        arr = np.asarray(slice2d)
        if arr.ndim != 2:
            raise ValueError(f"SlicePreprocessor expects a 2D (H, W) slice, got shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError("slice contains NaN or infinite values")
        resized = self.resize(arr)
        rgb = RepeatChannels(3)(resized)
        if self.normalize == "minmax":
            rgb = MinMaxNormalize()(rgb)
        else:
            rgb = MeanStdNormalize()(rgb)
        out = torch.from_numpy(self.pad(rgb).astype(np.float32))
        meta = SliceMeta(tuple(int(v) for v in arr.shape), tuple(int(v) for v in resized.shape),
                         self.image_size)
        return out, meta

    def at_size(self, image_size: int) -> "SlicePreprocessor":
        """The same preprocessing with another output size (a reduced encoder input)."""
        return SlicePreprocessor(image_size, self.normalize, self.resize.round_uint8,
                                 self.resize.keep_aspect, self.box_rule)

    def box_to_model(self, box, original_size) -> np.ndarray:
        return box_to_model(box, original_size, self.image_size, self.box_rule,
                            keep_aspect=self.resize.keep_aspect)

    def points_to_model(self, points, original_size) -> np.ndarray:
        return points_to_model(points, original_size, self.image_size,
                               keep_aspect=self.resize.keep_aspect)


class LowResToSource(Transform):
    """Inverse mapping of low-res logits to the source slice grid.

    ``__call__(logits (..., L, L) tensor, meta: SliceMeta) -> (..., H, W)``: crop the
    unpadded region ``[:ceil(h*L/S), :ceil(w*L/S)]`` (L=256=S for LiteMedSAM, so
    ``[:h, :w]``), then bilinear (``align_corners=False``) resize to ``(H, W)``.
    For SAM (S=1024, L=256) logits are first upsampled to S×S as in SAM.
    """

    def __call__(self, logits: torch.Tensor, meta: SliceMeta) -> torch.Tensor:
        squeeze = logits.ndim == 2
        x = logits[None, None] if squeeze else logits
        lead = x.shape[:-2]
        x = x.reshape(-1, 1, *x.shape[-2:]) if x.ndim != 4 else x
        s = meta.image_size
        if x.shape[-1] != s:
            x = F.interpolate(x.float(), size=(s, s), mode="bilinear", align_corners=False)
        h, w = meta.resized_size
        x = x[..., :h, :w]
        x = F.interpolate(x.float(), size=tuple(meta.original_size), mode="bilinear",
                          align_corners=False)
        x = x.reshape(*lead, *x.shape[-2:])
        return x[0, 0] if squeeze else x


# --------------------------------------------------------------------------- prompts
def box_to_model(box, original_size, image_size: int = 256, rule: str = "floor_longest",
                 keep_aspect: bool = True) -> np.ndarray:
    """XYXY box in source pixels -> model-input pixels.

    ``rule="floor_longest"`` is the official LiteMedSAM rule: ``int(c * S / max(H, W))``
    for every coordinate (truncation). ``rule="scale"`` (SAM ``apply_boxes``) scales x by
    ``new_w / W`` and y by ``new_h / H`` without rounding. Accepts ``(4,)`` or ``(B, 4)``.
    """
    b = np.asarray(box, dtype=np.float64)
    h, w = int(original_size[0]), int(original_size[1])
    if rule == "floor_longest" and keep_aspect:
        return np.trunc(b * image_size / max(h, w)).astype(np.float32)
    pts = points_to_model(b.reshape(-1, 2), original_size, image_size, keep_aspect)
    return pts.reshape(b.shape).astype(np.float32)


def points_to_model(points, original_size, image_size: int = 256,
                    keep_aspect: bool = True) -> np.ndarray:
    """``(..., 2)`` xy source pixels -> model-input pixels (SAM ``apply_coords``:
    ``x * new_w / W``, ``y * new_h / H``)."""
    p = np.asarray(points, dtype=np.float64).copy()
    h, w = int(original_size[0]), int(original_size[1])
    nh, nw = longest_side_size((h, w), image_size) if keep_aspect else (image_size, image_size)
    p[..., 0] *= nw / w
    p[..., 1] *= nh / h
    return p.astype(np.float32)


# --------------------------------------------------------------------------- intensity
class PercentileNormalize(Transform):
    """MedSAM MR rule: clip to the ``lower``/``upper`` percentiles of the voxels ``> 0`` (of the
    whole array given: pass the whole volume), min-max to [b_min, b_max]; zero voxels stay b_min."""

    def __init__(self, lower: float = 0.5, upper: float = 99.5, b_min: float = 0.0,
                 b_max: float = 255.0, nonzero: bool = True) -> None:
        self.lower, self.upper, self.b_min, self.b_max, self.nonzero = lower, upper, b_min, b_max, nonzero

    def __call__(self, img):
        a = np.asarray(img, dtype=np.float64)
        sel = a[a > 0] if self.nonzero else a.ravel()
        if sel.size == 0:
            return np.full(a.shape, self.b_min, dtype=np.float32)
        lo, hi = np.percentile(sel, self.lower), np.percentile(sel, self.upper)
        v = np.clip(a, lo, hi)
        vmin, vmax = v.min(), v.max()
        v = (v - vmin) / max(vmax - vmin, 1e-8) * (self.b_max - self.b_min) + self.b_min
        if self.nonzero:
            v[a == 0] = self.b_min
        return v.astype(np.float32)


def ct_window_transform(level: float = DEFAULT_CT_WINDOW[0], width: float = DEFAULT_CT_WINDOW[1]):
    """MONAI ``ScaleIntensityRange`` mapping the HU window ``(level, width)`` to 0..255 (clipped).
    The one definition of the CT window (model configs name it as their ``intensity.hu``)."""
    if float(width) <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    level, width = float(level), float(width)
    return ScaleIntensityRange(a_min=level - width / 2, a_max=level + width / 2, b_min=0.0,
                               b_max=255.0, clip=True, dtype=np.float32)


class CheckUint8Range(Transform):
    """Already windowed input (0..255, e.g. research npz): returned as float32, unchanged;
    values outside 0..255 raise ``ValueError`` (use intensity ``hu`` or ``raw``)."""

    def __call__(self, img):
        out = np.asarray(img, dtype=np.float32)
        if out.size and (out.min() < 0 or out.max() > 255):
            raise ValueError(f"intensity='windowed' expects values in 0..255, got "
                             f"[{out.min():g}, {out.max():g}]; use intensity='hu' or 'raw'")
        return out


def default_intensity_transforms(window: tuple[float, float] = DEFAULT_CT_WINDOW,
                                 percentiles: tuple[float, float] = (0.5, 99.5)) -> dict:
    """The per-input-kind intensity transforms of the built-in model configs (their
    ``intensity:`` block): ``hu`` (CT window), ``raw_mr`` (MedSAM percentiles), ``windowed``."""
    return {"hu": ct_window_transform(*window),
            "raw_mr": PercentileNormalize(float(percentiles[0]), float(percentiles[1])),
            "windowed": CheckUint8Range()}


def intensity_to_uint8_range(volume_array_or_slice, intensity: str, modality: str | None = None,
                             window: tuple[float, float] | None = None,
                             percentiles: tuple[float, float] = (0.5, 99.5)) -> np.ndarray:
    """Per-modality intensity step -> float32 array in [0, 255] (same shape as the input).

    ``intensity``: ``"windowed"`` (already 0..255: returned unchanged, as float32),
    ``"hu"`` (CT Hounsfield units: window ``(level, width)``, default W400/L40) or
    ``"raw"`` (scanner values: CT -> window, anything else (MR, ...) -> percentile
    normalisation over the *whole array given*, so pass the whole volume). Prefer
    :meth:`LoadedModel.intensity_to_uint8_range`, which runs the model config's transforms.
    """
    arr = np.asarray(volume_array_or_slice)
    kind = str(intensity).lower()
    table = default_intensity_transforms(window if window is not None else DEFAULT_CT_WINDOW, percentiles)
    if kind == "hu" or (kind == "raw" and (modality or "").upper() == "CT"):
        t = table["hu"]
    elif kind in ("raw", "windowed"):
        t = table["raw_mr" if kind == "raw" else "windowed"]
    else:
        raise ValueError(f"unknown intensity {intensity!r}: expected 'windowed', 'hu' or 'raw'")
    return np.asarray(t(arr.astype(np.float32)), dtype=np.float32)

