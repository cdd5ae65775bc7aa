"""Prompts for one object: 3D points, a tight 3D box and a key-slice box, validated, in voxel space.

All prompts are stored in **voxel coordinates** ``(i, j, k)`` of the volume
(the index order of ``Volume.array``; bounds inclusive). World (RAS mm)
prompts are converted once, at the edge, with :meth:`ObjectPrompts.from_world`
or :func:`point_from_world` / :func:`box_from_world`.

JSON form (``--prompts`` files and saved sessions)::

    {"coords": "voxel" | "world",
     "objects": [{"id": 5, "name": "liver",
                  "box": [x0, y0, z0, x1, y1, z1],
                  "points": [[x, y, z, 1], [x, y, z, 0]],
                  "key_slice_box": {"axis": 2, "slice": k, "range": [k0, k1],
                                    "rect": [u0, v0, u1, v1]}}]}

A *key-slice box* (:class:`KeySliceBox`) is what a user draws on the slice they look at and
what the CVPR 2025 challenge files carry: a 2D rectangle on slice ``k`` of axis ``a`` plus a
slice range ``[k0, k1]`` along ``a``; it bounds the object on slice ``k`` only. ``rect`` is
in the two remaining voxel axes in increasing order (axis 2: (i, j) = (x, y)). All bounds
are inclusive voxel indices. The tight 3D :class:`Box` is a separate prompt type.
The slice-wise predictor bounds only slice ``k`` by the rectangle (the other slices by the
range and by propagation); predictors that know only 3D boxes get the 3D box spanning the
rectangle and the range from :func:`apply_key_slice_box`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from .errors import PromptError
from .volume import Volume

#: clicks one object (or one challenge class) may carry; interactive use needs tens at most,
#: and a million points would stall every predictor
MAX_POINTS = 1000


@dataclass(frozen=True)
class Point:
    """A click at voxel (i, j, k); ``positive`` True = foreground, False = background."""

    ijk: tuple[float, float, float]
    positive: bool = True

    def to_json(self) -> list:
        return [*[float(c) for c in self.ijk], 1 if self.positive else 0]


@dataclass(frozen=True)
class Box:
    """An axis-aligned 3D box in voxel indices, inclusive bounds: (i0, j0, k0, i1, j1, k1)."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]

    def to_json(self) -> list:
        return [float(c) for c in (*self.lo, *self.hi)]

    def int_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Inclusive integer bounds (rounded to the nearest voxel)."""
        return np.rint(self.lo).astype(int), np.rint(self.hi).astype(int)


@dataclass(frozen=True)
class KeySliceBox:
    """A 2D rectangle on slice ``slice`` of voxel axis ``axis`` + the inclusive slice range
    ``range = (k0, k1)`` along that axis. ``rect = (u0, v0, u1, v1)``: inclusive bounds in the
    two other axes in increasing order (axis 2: u = i (x), v = j (y))."""

    axis: int
    slice: int
    range: tuple[int, int]
    rect: tuple[float, float, float, float]

    def other_axes(self) -> tuple[int, int]:
        a, b = (ax for ax in (0, 1, 2) if ax != self.axis)
        return a, b

    def to_json(self) -> dict[str, Any]:
        return {"axis": int(self.axis), "slice": int(self.slice), "range": [int(r) for r in self.range],
                "rect": [float(c) for c in self.rect]}

    def to_box3d(self) -> Box:
        """The tight 3D box spanning the rectangle (in-plane) and the slice range (along ``axis``)."""
        lo, hi = [0.0] * 3, [0.0] * 3
        u, v = self.other_axes()
        lo[u], lo[v], hi[u], hi[v] = self.rect[0], self.rect[1], self.rect[2], self.rect[3]
        lo[self.axis], hi[self.axis] = float(self.range[0]), float(self.range[1])
        return Box(tuple(lo), tuple(hi))


def make_key_slice_box(axis: int, slice_index: int, slice_range: Sequence[int], rect: Sequence[float],
                       shape: Sequence[int] | None = None) -> KeySliceBox:
    """A validated :class:`KeySliceBox`; ``shape`` (the volume's, voxel order) checks it lies inside."""
    if axis not in (0, 1, 2):
        raise PromptError(f"key-slice box: axis must be 0, 1 or 2, got {axis!r}")
    r = _finite(slice_range, "key-slice box range")
    q = _finite(rect, "key-slice box rectangle")
    k = _finite([slice_index], "key-slice box slice")[0]
    if r.shape != (2,) or q.shape != (4,):
        raise PromptError("key-slice box: range is [k0, k1] and rect is [u0, v0, u1, v1]")
    if r[1] < r[0] or q[2] < q[0] or q[3] < q[1]:
        raise PromptError(f"key-slice box is inverted: range {r.tolist()}, rect {q.tolist()}")
    if not r[0] <= k <= r[1]:
        raise PromptError(f"key-slice box: slice {k:g} lies outside its range {r.tolist()}")
    ksb = KeySliceBox(int(axis), int(round(k)), (int(round(r[0])), int(round(r[1]))),
                      tuple(float(c) for c in q))
    if shape is not None:
        b = ksb.to_box3d()
        top = np.asarray(shape) - 1
        if np.any(np.asarray(b.lo) < 0) or np.any(np.asarray(b.hi) > top):
            raise PromptError(f"key-slice box {ksb.to_json()} extends outside the volume "
                              f"(voxel range 0..{top.tolist()})")
    return ksb


@dataclass
class ObjectPrompts:
    """Everything the user said about one object. Points are kept in click order.
    ``key_box`` is a key-slice box; ``box`` the tight 3D box (see :func:`apply_key_slice_box`)."""

    box: Box | None = None
    points: list[Point] = field(default_factory=list)
    key_box: KeySliceBox | None = None

    def is_empty(self) -> bool:
        return self.box is None and not self.points and self.key_box is None

    def copy(self) -> "ObjectPrompts":
        return ObjectPrompts(box=self.box, points=list(self.points), key_box=self.key_box)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.box is not None:
            out["box"] = self.box.to_json()
        if self.key_box is not None:
            out["key_slice_box"] = self.key_box.to_json()
        if self.points:
            out["points"] = [p.to_json() for p in self.points]
        return out

    @classmethod
    def from_json(cls, obj: dict, volume: Volume | None = None, coords: str = "voxel") -> "ObjectPrompts":
        box = None
        points: list[Point] = []
        if len(obj.get("points") or []) > MAX_POINTS:
            raise PromptError(f"object {obj.get('id', '?')}: {len(obj['points']):,} points; at most {MAX_POINTS:,} "
                              "per object")
        if obj.get("box") is not None:
            box = parse_box(obj["box"], volume, coords)
        for p in obj.get("points") or []:
            points.append(parse_point(p, volume, coords))
        key_box = None
        if obj.get("key_slice_box") is not None:
            key_box = parse_key_slice_box(obj["key_slice_box"], volume, coords)
        prompts = cls(box=box, points=points, key_box=key_box)
        if prompts.is_empty():
            raise PromptError(f"object {obj.get('id', '?')} has neither a box nor points")
        return prompts


def apply_key_slice_box(prompts: ObjectPrompts) -> ObjectPrompts:
    """For predictors that know only tight 3D boxes (SAM-Med3D, the threshold baseline): when
    the object has a key-slice box and no tight box, ``box`` is set to ``key_box.to_box3d()``
    (the 3D box spanning the rectangle and the slice range). The slice-wise predictor reads
    the key-slice box itself (the rectangle bounds the key slice only). Returns a new
    ObjectPrompts."""
    out = prompts.copy()
    if out.key_box is not None and out.box is None:
        out.box = out.key_box.to_box3d()
    return out


def parse_key_slice_box(spec: Any, volume: Volume | None, coords: str) -> KeySliceBox:
    """JSON ``{"axis", "slice", "range", "rect"}`` (voxel coordinates only) -> KeySliceBox."""
    if coords != "voxel":
        raise PromptError("key_slice_box is given in voxel coordinates only")
    if not isinstance(spec, dict) or not {"slice", "range", "rect"} <= set(spec):
        raise PromptError(f"key_slice_box needs slice, range and rect (and axis, default 2), got {spec!r}")
    return make_key_slice_box(int(spec.get("axis", 2)), spec["slice"], spec["range"], spec["rect"],
                              volume.shape if volume is not None else None)


# ---------------------------------------------------------------- validation
def _finite(values: Sequence[float], what: str) -> np.ndarray:
    try:
        arr = np.asarray([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PromptError(f"{what}: coordinates must be numbers, got {list(values)!r}") from exc
    if not np.all(np.isfinite(arr)):
        raise PromptError(f"{what}: coordinates must be finite, got {arr.tolist()}")
    return arr


def _check_inside(ijk: np.ndarray, shape: Sequence[int], what: str) -> None:
    hi = np.asarray(shape) - 1
    # half a voxel of slack: a world coordinate on the outer voxel face still names that voxel
    if np.any(ijk < -0.5) or np.any(ijk > hi + 0.5):
        raise PromptError(
            f"{what} at voxel {np.round(ijk, 2).tolist()} lies outside the volume "
            f"(valid (x, y, z) voxel range 0..{hi.tolist()})"
        )


def make_point(ijk: Sequence[float], positive: bool, shape: Sequence[int] | None = None) -> Point:
    arr = _finite(ijk, "point")
    if arr.shape != (3,):
        raise PromptError(f"point needs 3 coordinates (x, y, z), got {arr.size}")
    if shape is not None:
        _check_inside(arr, shape, "point")
        arr = np.clip(arr, 0, np.asarray(shape) - 1)
    return Point(tuple(float(c) for c in arr), bool(positive))


def make_box(bounds: Sequence[float], shape: Sequence[int] | None = None) -> Box:
    arr = _finite(bounds, "box")
    if arr.shape != (6,):
        raise PromptError(f"box needs 6 coordinates (x0 y0 z0 x1 y1 z1), got {arr.size}")
    lo, hi = arr[:3], arr[3:]
    if np.any(hi < lo):
        raise PromptError(
            f"box is inverted: (x0, y0, z0) = {lo.tolist()} must not exceed (x1, y1, z1) = {hi.tolist()}"
        )
    if shape is not None:
        top = np.asarray(shape) - 1
        if np.any(hi < -0.5) or np.any(lo > top + 0.5):
            raise PromptError(
                f"box {arr.tolist()} lies entirely outside the volume (voxel range 0..{top.tolist()})"
            )
        if np.any(lo < -0.5) or np.any(hi > top + 0.5):
            raise PromptError(
                f"box {arr.tolist()} extends outside the volume (voxel range 0..{top.tolist()}); "
                "clip it to the image"
            )
        lo, hi = np.clip(lo, 0, top), np.clip(hi, 0, top)
    return Box(tuple(float(c) for c in lo), tuple(float(c) for c in hi))


def point_from_world(xyz: Sequence[float], volume: Volume, positive: bool) -> Point:
    ijk = volume.world_to_voxel(_finite(xyz, "point"))
    return make_point(ijk, positive, volume.shape)


def box_from_world(bounds: Sequence[float], volume: Volume) -> Box:
    """A world-space box (two opposite corners, RAS mm) → the voxel box that contains it."""
    arr = _finite(bounds, "box")
    if arr.shape != (6,):
        raise PromptError(f"box needs 6 coordinates, got {arr.size}")
    a, b = arr[:3], arr[3:]
    corners = np.array([[x, y, z] for x in (a[0], b[0]) for y in (a[1], b[1]) for z in (a[2], b[2])])
    ijk = volume.world_to_voxel(corners)
    return make_box([*ijk.min(0), *ijk.max(0)], volume.shape)


def parse_point(p: Sequence[float], volume: Volume | None, coords: str) -> Point:
    if len(p) not in (3, 4):
        raise PromptError(f"a point is [x, y, z] or [x, y, z, label], got {list(p)!r}")
    label = 1 if len(p) == 3 else p[3]
    if label not in (0, 1, True, False):
        raise PromptError(f"point label must be 1 (foreground) or 0 (background), got {label!r}")
    if coords == "world":
        if volume is None:
            raise PromptError("world coordinates need the volume to convert them")
        return point_from_world(p[:3], volume, bool(label))
    return make_point(p[:3], bool(label), volume.shape if volume is not None else None)


def parse_box(b: Sequence[float], volume: Volume | None, coords: str) -> Box:
    if coords == "world":
        if volume is None:
            raise PromptError("world coordinates need the volume to convert them")
        return box_from_world(b, volume)
    return make_box(b, volume.shape if volume is not None else None)


def check_coords(coords: str) -> str:
    if coords not in ("voxel", "world"):
        raise PromptError(f"coords must be 'voxel' or 'world', got {coords!r}")
    return coords


def box_from_mask(mask: np.ndarray) -> Box | None:
    """Tight inclusive voxel box of a 3D mask, or None when it is empty."""
    idx = np.argwhere(mask)
    if idx.size == 0:
        return None
    return Box(tuple(float(c) for c in idx.min(0)), tuple(float(c) for c in idx.max(0)))


def prompts_summary(prompts: ObjectPrompts) -> str:
    parts = []
    if prompts.key_box is not None:
        kb = prompts.key_box
        parts.append(f"key-slice box on slice {kb.slice} of axis {kb.axis}, range {kb.range[0]}..{kb.range[1]}")
    if prompts.box is not None:
        parts.append("box " + " ".join(f"{c:g}" for c in prompts.box.to_json()))
    npos = sum(p.positive for p in prompts.points)
    nneg = len(prompts.points) - npos
    if prompts.points:
        parts.append(f"{npos} positive / {nneg} negative points")
    return ", ".join(parts) or "no prompts"


def iter_points(points: Iterable[Point], positive: bool | None = None) -> Iterable[Point]:
    for p in points:
        if positive is None or p.positive == positive:
            yield p


def isclose_point(a: Point, b: Point) -> bool:
    return a.positive == b.positive and all(math.isclose(x, y) for x, y in zip(a.ijk, b.ijk))
