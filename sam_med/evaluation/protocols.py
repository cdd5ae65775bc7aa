"""Seeded prompt protocols: how a simulated user prompts and corrects one object.

Every protocol drives a :class:`~sam_med.session.Session` (``set_box``,
``add_point``), so evaluation runs exactly the computation the GUI and the CLI
run. All coordinates are voxel indices ``(i, j, k)`` of the volume; distances
are in mm on the volume's spacing.

Protocols (``PROTOCOLS``):

``box``
    The tight 3D bounding box of the reference mask (inclusive bounds). With
    ``jitter_mm > 0`` each of the six faces moves independently by a uniform
    offset in ``[-jitter_mm, +jitter_mm]`` (converted to voxels on that axis and
    rounded), then the box is clipped to the volume; a face never crosses its
    opposite face.
``point``
    One positive click at the *centre* of the object: the deepest interior
    voxel of its largest connected component (the maximum of the Euclidean
    distance transform on physical spacing; ties -> the first voxel in C order).
``box+clicks``
    ``box``, then ``N`` corrective clicks. Each click is placed at the centre
    (deepest voxel, same rule) of the largest 3D connected component
    (26-connectivity, size in voxels) of the error ``pred XOR ref``; it is
    positive when that voxel belongs to the reference (a missed region) and
    negative otherwise (a false region) -- the rule of the CVPR 2025
    "Foundation models for interactive 3D biomedical image segmentation"
    challenge. Step 0 is the result after the box, before any click.
``points``
    Points only: click 1 is the corrective click on an empty prediction (the
    centre of the object's largest component), clicks 2..N are corrective
    clicks as above. Step 0 is the empty prediction before any click.

When a prediction becomes perfect, no further click is possible: the remaining
steps repeat the last result (``carried=True`` in the records), so per-click
means always average over the same objects.

Randomness (only the box jitter uses it) comes from :func:`object_rng`, seeded
by ``(seed, case id, label)``: results do not depend on case order or on how
cases are sharded across processes.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
from scipy import ndimage

from ..masks import largest_component  # noqa: F401  (also this module's public name)
from ..prompts import Box
from ..session import Session

PROTOCOLS = ("box", "point", "box+clicks", "points")
CLICK_PROTOCOLS = ("box+clicks", "points")



def object_rng(seed: int, case_id: str, label: int) -> np.random.Generator:
    """A generator that depends only on (seed, case id, label)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(str(case_id).encode()), int(label)])


# ----------------------------------------------------------------- geometry
def tight_box(mask: np.ndarray) -> Box | None:
    """Inclusive voxel bounding box of a 3D mask (None when empty)."""
    idx = np.argwhere(mask)
    if idx.size == 0:
        return None
    return Box(tuple(float(c) for c in idx.min(0)), tuple(float(c) for c in idx.max(0)))


def jittered_box(mask: np.ndarray, spacing, jitter_mm: float, rng: np.random.Generator) -> Box | None:
    """Tight box with each face moved by U(-jitter_mm, jitter_mm) mm, rounded to voxels, clipped."""
    box = tight_box(mask)
    if box is None or not jitter_mm:
        return box
    spacing = np.asarray(spacing, dtype=float)
    lo = np.asarray(box.lo, dtype=float)
    hi = np.asarray(box.hi, dtype=float)
    off = rng.uniform(-jitter_mm, jitter_mm, size=6)
    lo = lo + np.rint(off[:3] / spacing)
    hi = hi + np.rint(off[3:] / spacing)
    top = np.asarray(mask.shape, dtype=float) - 1
    lo = np.clip(lo, 0, top)
    hi = np.clip(hi, 0, top)
    # a face never crosses its opposite: collapse to the midpoint instead
    bad = hi < lo
    mid = np.floor((lo + hi) / 2)
    lo = np.where(bad, mid, lo)
    hi = np.where(bad, mid, hi)
    return Box(tuple(float(c) for c in lo), tuple(float(c) for c in hi))


def deepest_point(mask: np.ndarray, spacing=None) -> tuple[int, int, int] | None:
    """Voxel of ``mask`` farthest (in mm) from its boundary; ties -> first in C order.

    The mask is padded by one background voxel, so the volume's border counts as
    boundary (as ``edt(..., black_border=True)`` in the challenge's code).
    """
    if not mask.any():
        return None
    sampling = None if spacing is None else [float(s) for s in spacing]
    # crop to the bounding box first (exact: the transform only sees background
    # voxels, which the 1-voxel padding provides around the crop)
    idx = np.argwhere(mask)
    lo, hi = idx.min(0), idx.max(0) + 1
    sub = mask[tuple(slice(a, b) for a, b in zip(lo, hi))]
    dist = ndimage.distance_transform_edt(np.pad(sub, 1), sampling=sampling)[1:-1, 1:-1, 1:-1]
    flat = int(np.argmax(dist))
    return tuple(int(c) for c in np.add(np.unravel_index(flat, sub.shape), lo))


def center_point(ref: np.ndarray, spacing=None) -> tuple[int, int, int] | None:
    """Deepest voxel of the largest connected component of ``ref``."""
    if not ref.any():
        return None
    return deepest_point(largest_component(ref), spacing)


@dataclass(frozen=True)
class Click:
    ijk: tuple[int, int, int]
    positive: bool
    component_voxels: int


def corrective_click(pred: np.ndarray, ref: np.ndarray, spacing=None) -> Click | None:
    """Next simulated click: centre of the largest error component; None when pred == ref."""
    err = np.logical_xor(pred, ref)
    if not err.any():
        return None
    comp = largest_component(err)
    ijk = deepest_point(comp, spacing)
    return Click(ijk=ijk, positive=bool(ref[ijk]), component_voxels=int(comp.sum()))


# ----------------------------------------------------------------- protocol runs
@dataclass
class Step:
    """One state of an object during a protocol: the mask after ``step`` clicks."""

    step: int
    mask: np.ndarray
    prompt: str  # "none", "box", "point", "click+", "click-"
    click: tuple[int, int, int] | None = None
    box: tuple[float, ...] | None = None
    carried: bool = False
    seconds: float = 0.0
    info: dict = field(default_factory=dict)


def run_protocol(
    session: Session,
    obj_id: int,
    ref: np.ndarray,
    protocol: str,
    clicks: int = 0,
    *,
    spacing=None,
    jitter_mm: float = 0.0,
    rng: np.random.Generator | None = None,
    progress: Callable | None = None,
) -> Iterator[Step]:
    """Prompt object ``obj_id`` of ``session`` by ``protocol``; yield a :class:`Step` per state.

    ``ref`` is the boolean reference mask on the session volume's grid.
    Box protocols yield ``1 + clicks`` steps (``box`` yields exactly one);
    ``point`` yields one; ``points`` yields ``1 + clicks`` (step 0 = empty).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    spacing = session.volume.spacing if spacing is None else spacing
    rng = rng if rng is not None else np.random.default_rng(0)
    ref = np.asarray(ref, dtype=bool)

    def timed(fn, *a, **k):
        t0 = time.perf_counter()
        obj = fn(*a, **k)
        return obj, time.perf_counter() - t0

    if protocol in ("box", "box+clicks"):
        box = jittered_box(ref, spacing, jitter_mm, rng)
        obj, dt = timed(session.set_box, obj_id, box, run=True, progress=progress)
        mask = session.mask(obj_id)
        yield Step(0, mask, "box", box=tuple(box.to_json()), seconds=dt, info=_info(obj))
        n_clicks = clicks if protocol == "box+clicks" else 0
    elif protocol == "point":
        ijk = center_point(ref, spacing)
        obj, dt = timed(session.add_point, obj_id, ijk, True, run=True, progress=progress)
        yield Step(0, session.mask(obj_id), "point", click=ijk, seconds=dt, info=_info(obj))
        return
    else:  # points
        mask = np.zeros(ref.shape, dtype=bool)
        yield Step(0, mask, "none")
        n_clicks = clicks

    for i in range(1, n_clicks + 1):
        c = corrective_click(mask, ref, spacing)
        if c is None:
            yield Step(i, mask, "none", carried=True)
            continue
        obj, dt = timed(session.add_point, obj_id, c.ijk, c.positive, run=True, progress=progress)
        mask = session.mask(obj_id)
        yield Step(i, mask, "click+" if c.positive else "click-", click=c.ijk, seconds=dt,
                   info=_info(obj))


def _info(obj) -> dict:
    """Numeric entries of the predictor's ``PredictionResult.info`` (timings, sizes, ...)."""
    res = getattr(obj, "result", None)
    info = getattr(res, "info", None)
    return info.numbers() if info is not None else {}
