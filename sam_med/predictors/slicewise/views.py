"""Which part of the slice the model sees: the view ``(crop, res)`` of an object.

* **zoom view**: a square of ``ZOOM_FACTOR`` x the box side around the box (at least
  ``MIN_CROP`` px), resized to the model's S;
* **context view**: a square of ``CONTEXT`` x the box side at the whole slice's scale,
  encoded as a reduced ``r x r`` input (r < S), or the whole slice at S when that square
  would not fit;
* **whole-slice view**: the whole slice at S, or at ``whole_res_alt`` when the model rates that
  better at the key slice.

A box prompt that spans more slices than ``encode_budget`` has every view's input size capped
(:func:`budget_res`, :func:`cap_view`): the encoder's cost grows with the input area, so a
long object is encoded at a smaller input instead of taking minutes.

:func:`select_view` decodes the key slice in both and keeps the zoom only when the
model's own predicted IoU there beats the context view's by ``ZOOM_MARGIN``. Crops are
inclusive ``(x0, y0, x1, y1)`` plane pixels; None = the whole slice.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .constants import BUDGET_MIN_RES, CONTEXT, MIN_CROP, ZOOM_FACTOR, ZOOM_MARGIN
from .options import SliceWiseOptions, checked_res

__all__ = ["square_crop", "round_up", "choose_crop", "context_view", "select_view", "whole_res_alt",
           "budget_res", "cap_view"]

View = tuple  # (crop | None, res | None)


def round_up(v: float, m: int) -> int:
    return int(np.ceil(v / m) * m)


def square_crop(cx: float, cy: float, side: float, hw) -> tuple[int, int, int, int]:
    """Inclusive (x0, y0, x1, y1) square of ``side`` px centred on (cx, cy), shifted to lie
    inside the plane (clipped to it when larger)."""
    h, w = hw
    side = int(round(side))
    sx, sy = min(side, w), min(side, h)
    x0 = int(np.clip(round(cx - sx / 2), 0, w - sx))
    y0 = int(np.clip(round(cy - sy / 2), 0, h - sy))
    return (x0, y0, x0 + sx - 1, y0 + sy - 1)


def choose_crop(options: SliceWiseOptions, extent, hw, from_points: bool) -> tuple[int, int, int, int] | None:
    """The zoom crop around a 2D ``extent`` (inclusive box), or None (whole slice): for
    points-only prompts, with ``zoom="never"``, or when the crop would cover the slice."""
    side = max(extent[2] - extent[0] + 1, extent[3] - extent[1] + 1)
    if from_points or options.zoom == "never":
        return None
    crop_side = int(max(MIN_CROP, round(side * ZOOM_FACTOR)))
    if crop_side >= max(hw):
        return None
    cx, cy = (extent[0] + extent[2]) / 2.0, (extent[1] + extent[3]) / 2.0
    return square_crop(cx, cy, crop_side, hw)


def whole_res_alt(options: SliceWiseOptions, size: int, reduced_ok: bool) -> int | None:
    """``options.whole_res_alt``: a second input size for a box prompt's whole-slice view,
    scored against the whole slice at S at the key slice (:func:`select_view`)."""
    return checked_res("whole_res_alt", options.whole_res_alt, size, reduced_ok)


def context_view(zoom_crop, hw, size: int) -> View:
    """The non-zoomed view for a zoom crop: a square crop of ``CONTEXT`` x the box side around
    the box at the whole slice's scale, or the whole slice when that would not fit."""
    if zoom_crop is None:
        return None, None
    x0, y0, x1, y1 = zoom_crop
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    side = (x1 - x0 + 1) / ZOOM_FACTOR * CONTEXT
    h, w = hw
    if side >= max(h, w):
        return None, None
    crop = square_crop(cx, cy, side, hw)
    scale = size / max(h, w)
    res = round_up(max(crop[2] - crop[0] + 1, crop[3] - crop[1] + 1) * scale, 16)
    return crop, min(res, size)


def select_view(options: SliceWiseOptions, zoom: View, hw, size: int, score: Callable[[View], float],
                reduced_ok: bool = True, cap: int | None = None) -> View:
    """Zoom or context view? ``score(view)``: the model's predicted IoU of the key slice's
    box decoded in ``view`` (costs an encode). The zoom is not scored when the context
    view's score is so high that it cannot win by the margin. When the context view is the
    whole slice and ``whole_res_alt`` is set, the whole slice at that size is scored too and
    replaces it when its score is higher by ``ZOOM_MARGIN``. ``cap``: the encode budget's
    input-size cap (:func:`budget_res`), applied to every view scored and to the result."""
    seen: dict = {}  # capped views already scored (two may cap to the same view)

    def capped_score(view: View) -> float:
        view = cap_view(view, cap, size)
        if view not in seen:
            seen[view] = score(view)
        return seen[view]

    return cap_view(_select(options, zoom, hw, size, capped_score, reduced_ok), cap, size)


def _select(options: SliceWiseOptions, zoom: View, hw, size: int, score: Callable[[View], float],
            reduced_ok: bool) -> View:
    wide = context_view(zoom[0], hw, size)
    s_wide = score(wide)
    alt = whole_res_alt(options, size, reduced_ok)
    if wide[0] is None and alt is not None and alt != wide[1]:
        s_alt = score((None, alt))
        if s_alt > s_wide + ZOOM_MARGIN:
            wide, s_wide = (None, alt), s_alt
    if s_wide + ZOOM_MARGIN >= 1.0:
        return wide
    return zoom if score(zoom) > s_wide + ZOOM_MARGIN else wide


def budget_res(options: SliceWiseOptions, n_slices: int, size: int, reduced_ok: bool) -> int | None:
    """The input-size cap of a box prompt spanning ``n_slices`` under ``options.encode_budget``
    (S x S slice encodes): None when the budget is off, the encoder takes only S, or
    ``n_slices`` fits; else the largest multiple of 16 ``r`` with ``n_slices x (r / S)^2 <=
    budget``, at least ``BUDGET_MIN_RES`` (and below S)."""
    b = options.encode_budget  # checked positive when the predictor was made (options.check_options)
    if b is None or not reduced_ok or n_slices <= b:
        return None
    lo = BUDGET_MIN_RES if BUDGET_MIN_RES < size else None
    r = int(size * np.sqrt(b / n_slices)) // 16 * 16
    r = max(r, lo or size)
    return r if r < size else None


def cap_view(view: View, cap: int | None, size: int) -> View:
    """``view`` with its input size at most ``cap`` (None: no cap)."""
    crop, res = view
    if cap is None or (res or size) <= cap:
        return view
    return crop, cap
