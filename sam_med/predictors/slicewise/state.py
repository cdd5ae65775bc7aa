"""What the slice-wise predictor remembers about one object (``PredictionResult.state``).

Conventions (see :mod:`sam_med.predictors.planes`): slice ``k`` along ``axis`` is an
``(H, W)`` plane; 2D boxes are inclusive ``(x0, y0, x1, y1)`` plane pixels; a *view*
is ``(crop, res)``: the inclusive crop of the plane the model sees (None: the whole
slice) and its encoder input size (None: the model's own S).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ...prompts import ObjectPrompts

__all__ = ["SliceOut", "ObjectState", "Propagation", "is_extension", "mask_bounds", "keep_region", "volume_plane",
           "adopted"]


@dataclass
class SliceOut:
    """Result on one slice: full-plane ``(H, W)`` bool mask, the low-res logits
    ``(1, 1, 4h, 4w)`` of an ``h x w`` embedding (256 x 256 at the model's S) in the view's frame (None for an edit without a decoder call),
    the 2D box used, and the model's predicted IoU."""

    mask: np.ndarray
    logits: torch.Tensor | None
    box: np.ndarray | None
    score: float = 0.0


@dataclass
class Propagation:
    """One pending pass: from slice ``start`` (already decoded) in direction ``step`` (+1/-1)."""

    start: int
    step: int


@dataclass
class ObjectState:
    """One object on one volume, in the SAM 2 video-predictor style (slices = frames).

    ``prompts``: everything the object was prompted with (voxel coordinates);
    ``crop``/``res``: the view; ``bound2d``: the box's in-plane extent (None: points
    only; with ``key_only`` it bounds the key slice alone: a key-slice box); ``srange``: inclusive slice range propagation may reach; ``slices``: per
    slice results; ``key``: the slice the first run started from (None: not run yet);
    ``seed_stats``: points only, (mean, sd) of the seed slice's mask on the model's 0-255
    scale; ``changed``: slices a prompt changed that :meth:`SliceWisePredictor.propagate` has
    not yielded yet; ``pending``: passes it will run; ``volume``: the volume the state belongs
    to."""

    axis: int
    prompts: ObjectPrompts
    crop: tuple[int, int, int, int] | None = None
    bound2d: np.ndarray | None = None
    srange: tuple[int, int] = (0, -1)
    slices: dict[int, SliceOut] = field(default_factory=dict)
    key: int | None = None
    res: int | None = None
    seed_stats: tuple[float, float] | None = None
    changed: list[int] = field(default_factory=list)
    pending: list[Propagation] = field(default_factory=list)
    volume: Any = None
    key_only: bool = False  # bound2d bounds the key slice only (a key-slice box)
    res_cap: int | None = None  # the encode budget's cap on the view's input size (views.budget_res)

    @property
    def view(self) -> tuple[tuple[int, int, int, int] | None, int | None]:
        return self.crop, self.res

    def set_view(self, view) -> None:
        self.crop, self.res = view

    def branch(self, prompts: ObjectPrompts) -> "ObjectState":
        """A copy for new ``prompts`` that leaves this state (an undo snapshot) untouched."""
        return dataclasses.replace(self, prompts=prompts.copy(), slices=dict(self.slices), pending=[], changed=[])

    def mask_slices(self) -> list[int]:
        """Sorted indices of the slices with a non-empty mask."""
        return sorted(k for k, s in self.slices.items() if s.mask.any())

    def confidence(self) -> float | None:
        """The model's mean predicted IoU over the slices with a mask (None: none)."""
        scores = [s.score for s in self.slices.values() if s.mask.any()]
        return float(np.mean(scores)) if scores else None


def is_extension(st: ObjectState, prompts: ObjectPrompts, axis: int) -> bool:
    """True when ``prompts`` = the state's prompts + appended points (same box, same axis)."""
    old = st.prompts
    if (st.key is None or st.axis != axis or old.box != prompts.box or old.key_box != prompts.key_box
            or len(prompts.points) <= len(old.points)):
        return False
    return prompts.points[: len(old.points)] == old.points


def mask_bounds(state: "ObjectState", geo) -> tuple[np.ndarray, np.ndarray] | None:
    """Inclusive voxel bounds the object's mask stays in: the tight 3D box; for a
    key-slice box only its slice range (its rectangle bounds the key slice alone, which
    the propagation keeps); None for points only."""
    prompts = state.prompts
    if prompts.box is not None:
        return prompts.box.int_bounds()
    if prompts.key_box is None:
        return None
    lo = np.zeros(3, dtype=int)
    hi = np.asarray(geo.shape3d, dtype=int) - 1
    lo[geo.axis], hi[geo.axis] = prompts.key_box.range
    return lo, hi


def keep_region(state: "ObjectState", geo) -> tuple[np.ndarray, np.ndarray] | None:
    """Inclusive voxel bounds the object's mask may fill: :func:`mask_bounds` grown to the
    positive clicks (None: anywhere)."""
    bounds = mask_bounds(state, geo)
    if bounds is None:
        return None
    lo, hi = bounds
    for p in state.prompts.points:
        if p.positive:
            ijk = np.rint(p.ijk).astype(int)
            lo, hi = np.minimum(lo, ijk), np.maximum(hi, ijk)
    return lo, hi


def volume_plane(mask2d: np.ndarray, k: int, geo, keep: tuple | None) -> np.ndarray:
    """An ``(H, W)`` slice mask as the volume's plane ``np.take(mask3d, k, geo.axis)``, inside the
    bounds ``keep`` (:func:`keep_region`), as the predictor's ``volume_mask`` has it. No 3D array
    is made: this runs for every streamed slice and every click."""
    plane = mask2d.T
    if keep is None:
        return plane
    lo, hi = keep
    a, (p, q) = geo.axis, geo.inplane
    out = np.zeros_like(plane)
    if lo[a] <= k <= hi[a]:
        out[lo[p]:hi[p] + 1, lo[q]:hi[q] + 1] = plane[lo[p]:hi[p] + 1, lo[q]:hi[q] + 1]
    return out


def adopted(state: "ObjectState", mask3d: np.ndarray, geo) -> "ObjectState":
    """A branch of ``state`` whose slices are ``mask3d``'s (a hand edit): changed slices lose their
    logits (the edit is not the model's) and keep their predicted IoU; the next click refines them."""
    from ..planes import mask_bbox

    st = state.branch(state.prompts)
    for k in range(geo.n_slices):
        plane = geo.slice_of(mask3d, k)
        old = st.slices.get(k)
        if (old is None and not plane.any()) or (old is not None and np.array_equal(old.mask, plane)):
            continue
        st.slices[k] = SliceOut(plane.copy(), None, mask_bbox(plane), old.score if old is not None else 0.0)
    return st
