"""The guard of ``click_rule="ball"``: paint (or cut) only the clicked tissue inside the ball.

A raw ball of radius ``r`` (the distance from the click to the mask's edge) ignores the image:
a positive click far from the mask paints into the neighbouring tissue, and the ball goes on
into slices where the clicked structure has ended. The guard keeps, on each slice, the part of
the disk (positive) or of ``mask ∩ disk`` (negative) connected to the click within the pixels
whose intensity is *like the click's*: ``|I - m| <= BALL_SD * s``, with ``m`` the median of the
5x5 patch around the click on the clicked slice and ``s`` the larger of the patch's robust SD
(1.4826 x MAD) and the local noise SD (the robust Immerkaer estimate, ``1.4826 x median|I * N| /
6`` with ``N`` the 3x3 Laplacian difference kernel, over the disk's square on the clicked slice),
at least 1 (the 0..255 scale is quantised). On a neighbouring slice the ball stops where the
click's own pixel is not like that: the clicked tissue is not there.

Intensities are the predictor's model-range image (``pred.slice_image``: the bound volume on the
0..255 scale after the model's window / percentile mapping), read one slice at a time; slices are
``(H, W)`` planes, clicks ``(x, y)`` plane pixels.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import ndimage

from ..planes import PlaneGeometry, component_at
from .constants import BALL_SD

__all__ = ["click_tolerance", "make_guard"]

_LAPLACE = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
_PATCH = 2  # half-size of the click's patch (5x5)


def click_tolerance(img: np.ndarray, x: int, y: int, r: float, n_sd: float) -> tuple[float, float]:
    """``(m, tol)``: the click's intensity (median of its 5x5 patch of the ``(H, W)`` image) and
    how far a pixel may be from it and still be the same tissue (``n_sd`` x the larger of the
    patch's robust SD and the local noise SD over the ``±max(r, 8)`` square; at least 1)."""
    h, w = img.shape
    patch = img[max(0, y - _PATCH): y + _PATCH + 1, max(0, x - _PATCH): x + _PATCH + 1]
    m = float(np.median(patch))
    sd_patch = 1.4826 * float(np.median(np.abs(patch - m)))
    a = int(max(r, 8)) + 1
    win = img[max(0, y - a): min(h, y + a + 1), max(0, x - a): min(w, x + a + 1)].astype(np.float64)
    sd_noise = 0.0
    if win.shape[0] >= 3 and win.shape[1] >= 3:
        resp = ndimage.convolve(win, _LAPLACE, mode="reflect")[1:-1, 1:-1]
        sd_noise = 1.4826 * float(np.median(np.abs(resp))) / 6.0
    return m, max(n_sd * max(sd_patch, sd_noise), 1.0)


def make_guard(pred, geo: PlaneGeometry, k: int, x: int, y: int, positive: bool, r: float) -> Callable:
    """The guard for a click at plane ``(x, y)`` of slice ``k`` with ball radius ``r``:
    ``guard(z, mask, disk, first=False)`` returns the ``(H, W)`` bool part of ``disk`` to paint
    (positive) or cut (negative) on slice ``z`` given its current ``mask``, or None where the ball
    stops (never on the clicked slice, ``first``: there the click's pixel is always kept)."""
    m, tol = click_tolerance(pred.slice_image(geo, k), x, y, r, BALL_SD)

    def guard(z: int, mask: np.ndarray, disk: np.ndarray, first: bool = False) -> np.ndarray | None:
        like = np.abs(pred.slice_image(geo, z) - m) <= tol
        if not first and not like[y, x]:
            return None
        region = (disk if positive else disk & mask) & like
        region[y, x] = True
        return component_at(region, x, y)

    return guard
