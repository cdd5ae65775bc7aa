"""Pure conversions between sam-med geometry and napari layers (no Qt, no napari import).

Geometry convention of the plugin
---------------------------------
* Every layer the plugin makes (scan image, Labels, prompt Points/Shapes) holds
  ``Volume.array`` in its own index order ``(i, j, k)`` and gets
  ``affine=layer_affine(volume)`` — the 4x4 voxel → **RAS+ mm** matrix, used as is.
  The napari *world* is therefore RAS millimetres with world axes ``(R, A, S)``; a
  mask and its scan overlay exactly because they share one matrix (and an axis-aligned
  scan keeps a diagonal-like affine, which napari slices without resampling).
* Display: :func:`view_order` puts the slider on the world axis closest to the
  acquisition plane's normal (S for an axial scan: rows A, columns R) and
  :data:`RADIOLOGICAL_2D` flips the camera so anterior (or superior) is up and the
  patient's right is on the screen's left. The widget sets it as soon as a sam-med scan
  is in the viewer (``_display.show_axial``).
* Because prompt layers carry the same affine, their ``data`` are already
  voxel coordinates ``(i, j, k)`` (napari maps a click from world to layer data
  with the inverse affine). :func:`data_to_voxel` handles a layer with another
  affine (e.g. a Points layer the user made by hand).
* The scan's :class:`~sam_med.volume.Volume` travels in ``layer.metadata``; a layer
  without it (napari's builtin reader: no spacing, no orientation, no DICOM
  references) is refused by :func:`volume_from_layer` with one line on how to
  open the scan with sam-med.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from sam_med.volume import Volume, apply_affine, guess_modality  # noqa: F401 (re-exported)

#: viewer.dims.order for an axial view of RAS world axes: slider = S, rows = A, cols = R
AXIAL_ORDER = (2, 1, 0)
#: viewer.dims.order per RAS axis the slice normal is closest to (slider, rows, columns)
_ORDERS = {2: (2, 1, 0), 0: (0, 2, 1), 1: (1, 2, 0)}
#: viewer.camera.orientation2d: rows A (or S) up, columns R (or A) to the left (radiological)
RADIOLOGICAL_2D = ("up", "left")

#: key under which the source Volume travels in layer.metadata
VOLUME_KEY = "sam_med_volume"

CT_WINDOW = (400.0, 40.0)  # soft tissue: width, level (HU)


class NoGeometry(ValueError):
    """An image layer without the scan's geometry (not opened with sam-med)."""


# ---------------------------------------------------------------- geometry
def view_order(volume: Volume) -> tuple[int, int, int]:
    """viewer.dims.order showing ``volume``'s acquisition plane: the slider on the RAS axis
    closest to the normal of its slices (``volume.slice_axis``)."""
    normal = np.asarray(volume.affine, dtype=np.float64)[:3, volume.slice_axis]
    return _ORDERS[int(np.argmax(np.abs(normal)))]


def layer_affine(volume: Volume) -> np.ndarray:
    """The affine every plugin layer of ``volume`` carries: voxel → RAS mm (napari world)."""
    return np.asarray(volume.affine, dtype=np.float64)


def volume_ml(mask: np.ndarray | None, volume: Volume) -> float:
    """The volume of a bool mask in millilitres, from the scan's voxel size (mm³ / 1000)."""
    if mask is None:
        return 0.0
    voxel_mm3 = abs(float(np.linalg.det(np.asarray(volume.affine, dtype=np.float64)[:3, :3])))
    return float(np.count_nonzero(mask)) * voxel_mm3 / 1000.0


# ---------------------------------------------------------------- image display
def contrast_limits(volume: Volume) -> tuple[float, float]:
    """Display range: CT soft-tissue window W400/L40 (HU); anything else 1–99th percentiles."""
    arr = volume.array
    if guess_modality(volume) == "CT" and volume.intensity != "label":
        w, l = CT_WINDOW
        return (l - w / 2, l + w / 2)
    if arr.dtype == bool or volume.intensity == "label":
        return (0.0, float(max(arr.max(), 1)))
    sample = arr[:: max(1, arr.shape[0] // 128), :: max(1, arr.shape[1] // 128)]
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        return (0.0, 1.0)
    lo, hi = np.percentile(finite, [1, 99])
    if hi <= lo:
        lo, hi = float(finite.min()), float(finite.max())
        if hi <= lo:
            hi = lo + 1.0
    return (float(lo), float(hi))


def layer_name(volume: Volume, fallback: str = "scan") -> str:
    """Series description for DICOM, else the file name."""
    meta = volume.meta or {}
    for key in ("series_description", "SeriesDescription", "description"):
        if meta.get(key):
            return str(meta[key])
    if volume.dicom is not None:
        desc = getattr(volume.dicom, "series_description", None)
        if desc:
            return str(desc)
    if volume.source:
        import os

        name = os.path.basename(os.path.normpath(str(volume.source)))
        for ext in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".npz"):
            if name.lower().endswith(ext):
                return name[: -len(ext)]
        return name
    return fallback


def image_layer_data(volume: Volume, name: str | None = None) -> tuple[np.ndarray, dict[str, Any], str]:
    """napari LayerData tuple for a scan: (array (i, j, k), kwargs with the RAS affine, "image")."""
    kwargs = {
        "name": name or layer_name(volume),
        "affine": layer_affine(volume),
        "contrast_limits": contrast_limits(volume),
        "colormap": "gray",
        "metadata": {VOLUME_KEY: volume, "source": volume.source, "modality": volume.modality},
    }
    return volume.array, kwargs, "image"


def labels_layer_kwargs(volume: Volume, name: str = "sam-med labels") -> dict[str, Any]:
    """kwargs for a Labels layer on the scan's grid (same affine → exact overlay)."""
    return {
        "name": name,
        "affine": layer_affine(volume),
        "metadata": {VOLUME_KEY: volume, "source": volume.source},
    }


def volume_from_layer(data: np.ndarray, affine: np.ndarray | None, metadata: dict | None,
                      name: str = "this layer") -> Volume:
    """The layer's source Volume (kept in metadata by the reader). A layer without it has
    no geometry sam-med can trust (napari's builtin readers give an identity affine, no
    spacing, no orientation, no DICOM references): :class:`NoGeometry`, one line that says
    how to open the scan with sam-med."""
    vol = (metadata or {}).get(VOLUME_KEY)
    if isinstance(vol, Volume):
        return vol
    raise NoGeometry(f"{name!r} has no scan geometry (spacing, orientation): open the scan with "
                     "sam-med (File > Open Folder... or Open File(s)..., reader 'sam-med')")


def volume_from_affine(shape, affine: np.ndarray | None) -> Volume:
    """A Volume of zeros on a layer's own grid (its affine; identity without one): the
    writers' fallback for a labels layer that did not come from the plugin."""
    aff = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    return Volume(np.zeros(tuple(shape), np.uint8), aff)


# ---------------------------------------------------------------- prompts
def data_to_voxel(data: np.ndarray, affine: np.ndarray | None, volume: Volume) -> np.ndarray:
    """Layer data coordinates (N, 3) → voxel (i, j, k) of ``volume`` (N, 3), float.

    A layer with the volume's own affine (as the plugin makes them) maps 1:1."""
    pts = np.atleast_2d(np.asarray(data, dtype=np.float64))[:, -3:]
    if affine is None:
        return pts
    affine = np.asarray(affine, dtype=np.float64)
    if np.allclose(affine, layer_affine(volume), atol=1e-6):
        return pts
    return world_to_voxel(apply_affine(affine, pts), volume).reshape(-1, 3)


def voxel_to_world(ijk, volume: Volume) -> np.ndarray:
    """Voxel (i, j, k) → napari world (RAS mm), the same as ``volume.voxel_to_world``."""
    return apply_affine(layer_affine(volume), np.asarray(ijk, dtype=np.float64))


def world_to_voxel(xyz, volume: Volume) -> np.ndarray:
    """napari world point (RAS mm, e.g. ``viewer.dims.point``) → voxel (i, j, k), float."""
    inv = np.linalg.inv(layer_affine(volume))
    return np.asarray(apply_affine(inv, np.asarray(xyz, dtype=np.float64)), dtype=np.float64)


def current_slice(world_point: Sequence[float], volume: Volume, axis: int | None = None) -> int:
    """Index along ``axis`` (default: the volume's slice axis) of the slice shown at ``world_point``."""
    axis = volume.slice_axis if axis is None else int(axis)
    ijk = world_to_voxel(np.asarray(world_point, dtype=np.float64)[-3:], volume)
    return int(np.clip(np.rint(ijk[axis]), 0, volume.shape[axis] - 1))


def slice_range(center: int, half: int, n: int) -> tuple[int, int]:
    """``center ± half`` clipped to 0..n-1 (inclusive)."""
    half = max(0, int(half))
    return max(0, int(center) - half), min(int(n) - 1, int(center) + half)


def rectangle_to_box(vertices: np.ndarray, z_range: tuple[int, int], volume: Volume,
                     axis: int | None = None) -> list[float]:
    """A Shapes rectangle (vertices in voxel coords (i, j, k)) + a slice range → a 3D voxel box.

    The in-plane extent comes from the rectangle's vertices on the two axes other
    than ``axis`` (default the slice axis); the extent along ``axis`` is
    ``z_range`` (inclusive, any order). Returns ``[i0, j0, k0, i1, j1, k1]``.
    Validated as the CLI validates ``--box`` (:func:`sam_med.prompts.make_box`):
    a box reaching more than half a voxel outside the volume raises
    :class:`~sam_med.errors.PromptError` instead of being clipped."""
    from sam_med.prompts import make_box

    axis = volume.slice_axis if axis is None else int(axis)
    v = np.atleast_2d(np.asarray(vertices, dtype=np.float64))[:, -3:]
    lo, hi = v.min(axis=0), v.max(axis=0)
    z0, z1 = sorted(int(z) for z in z_range)
    lo[axis], hi[axis] = z0, z1
    return make_box([*lo, *hi], volume.shape).to_json()


def rectangle_to_key_box(vertices: np.ndarray, z_range: tuple[int, int] | None, half: int, volume: Volume,
                         axis: int | None = None):
    """A Shapes rectangle (vertices in voxel coords (i, j, k)) drawn on one slice → a
    :class:`~sam_med.prompts.KeySliceBox`: the rectangle bounds that slice only (the slice
    the vertices lie on, rounded); the slice range is ``z_range`` (inclusive, any order),
    or that slice ± ``half`` clipped to the scan when ``z_range`` is None. ``rect`` is the
    rectangle's extent on the two other axes in increasing order. Validated as the CLI
    validates key-slice boxes (:func:`sam_med.prompts.make_key_slice_box`): a rectangle
    outside the volume, or a key slice outside the range, raises
    :class:`~sam_med.errors.PromptError`."""
    from sam_med.prompts import make_key_slice_box

    axis = volume.slice_axis if axis is None else int(axis)
    v = np.atleast_2d(np.asarray(vertices, dtype=np.float64))[:, -3:]
    k = int(np.rint(v[:, axis].mean()))
    zr = slice_range(k, half, volume.shape[axis]) if z_range is None else tuple(sorted(int(z) for z in z_range))
    u, w = [d for d in range(3) if d != axis]
    lo, hi = v.min(axis=0), v.max(axis=0)
    return make_key_slice_box(axis, k, zr, (lo[u], lo[w], hi[u], hi[w]), volume.shape)


def box_to_rectangle(box: Sequence[float], k: int, axis: int = 2) -> np.ndarray:
    """The inverse for display: a 3D voxel box → the 4 rectangle vertices (4, 3) on slice ``k``."""
    b = np.asarray(box, dtype=np.float64)
    lo, hi = b[:3], b[3:]
    a, c = [d for d in range(3) if d != axis]
    out = []
    for ua, uc in ((lo[a], lo[c]), (lo[a], hi[c]), (hi[a], hi[c]), (hi[a], lo[c])):
        p = np.zeros(3)
        p[a], p[c], p[axis] = ua, uc, k
        out.append(p)
    return np.asarray(out)


# ---------------------------------------------------------------- labels colours
def label_colors(objects) -> dict[int | None, tuple[float, float, float, float]]:
    """``{id: RGBA}`` for napari's ``DirectLabelColormap`` from Session objects (0 transparent)."""
    colors: dict[int | None, tuple[float, float, float, float]] = {
        0: (0.0, 0.0, 0.0, 0.0),
        None: (0.5, 0.5, 0.5, 1.0),
    }
    for o in objects:
        r, g, b = (float(c) for c in o.color[:3])
        colors[int(o.id)] = (r, g, b, 1.0)
    return colors


def segments_for(objects) -> list[dict]:
    """DICOM SEG segment list (``write_dicom_seg``) from Session objects."""
    return [{"id": int(o.id), "name": o.name, "color": tuple(o.color)} for o in objects]
