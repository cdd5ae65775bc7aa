"""Resampling an irregular slice stack (uneven gaps, gantry tilt) onto a regular grid."""

from __future__ import annotations

import math

import numpy as np


def resample_stack(vol, r, c, n, dx, dy, pos, d):
    """Resample slices at arbitrary positions (uneven gaps, in-plane shifts from gantry
    tilt) onto a regular grid with axes (r, c, n), linear interpolation.

    The slice k origin P(t) is interpolated piecewise linearly between the measured
    ImagePositionPatient values, so every target voxel is sampled from the exact
    world position of the source pixels. Target slice spacing: the median gap.
    Target in-plane extent: the union of the shifted slices. Outside: the volume minimum.
    """
    from scipy.ndimage import map_coordinates

    nx, ny, nz = vol.shape
    gaps = np.diff(d)
    sp = float(np.median(gaps))
    nk = int(math.floor((d[-1] - d[0]) / sp + 1e-6)) + 1
    # in-plane offsets of each slice origin relative to slice 0 (tilt shift), in r/c coords
    off_r = (pos - pos[0]) @ r
    off_c = (pos - pos[0]) @ c
    u0 = min(0.0, off_r.min())
    v0 = min(0.0, off_c.min())
    u1 = max(0.0, off_r.max()) + (nx - 1) * dx
    v1 = max(0.0, off_c.max()) + (ny - 1) * dy
    ni = int(round((u1 - u0) / dx)) + 1
    nj = int(round((v1 - v0) / dy)) + 1
    dt = d[0] + sp * np.arange(nk)
    kf = np.interp(dt, d, np.arange(nz))  # fractional source slice per target slice
    src_off_r = np.interp(dt, d, off_r)
    src_off_c = np.interp(dt, d, off_c)
    ii = u0 / dx + np.arange(ni)  # target i in units of dx relative to slice-0 origin
    jj = v0 / dy + np.arange(nj)
    I = ii[:, None, None] - (src_off_r / dx)[None, None, :]
    J = jj[None, :, None] - (src_off_c / dy)[None, None, :]
    K = np.broadcast_to(kf[None, None, :], (ni, nj, nk))
    I = np.broadcast_to(I, (ni, nj, nk))
    J = np.broadcast_to(J, (ni, nj, nk))
    fill = float(vol.min())
    out = map_coordinates(vol.astype(np.float32), [I, J, K], order=1, mode="constant", cval=fill)
    if np.issubdtype(vol.dtype, np.integer):
        out = np.round(out).astype(vol.dtype)
    aff = np.eye(4)
    aff[:3, 0] = r * dx
    aff[:3, 1] = c * dy
    aff[:3, 2] = n * sp
    aff[:3, 3] = pos[0] + u0 * r + v0 * c
    note = (f"resampled from {nz} irregular slices onto {nk} slices at {sp:.3f} mm along the slice "
            f"normal (linear interpolation), in-plane grid {ni}x{nj}")
    return np.ascontiguousarray(out), aff, note
