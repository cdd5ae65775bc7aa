"""The one image type of sam-med: a validated 3D array with exact world geometry.

Conventions (used everywhere in sam-med; conversions happen only at the edges):

* ``Volume.array`` has shape ``(X, Y, Z)``: index order ``(i, j, k)`` as in
  nibabel and ITK index space (i = column, j = row, k = slice). This is the
  order of voxel coordinates on the CLI and in prompt files.
* ``Volume.affine`` is a 4x4 matrix mapping homogeneous voxel indices
  ``(i, j, k, 1)`` to **RAS+ millimetres** (the NIfTI / nibabel world). DICOM
  and ITK use LPS; :func:`lps_to_ras` converts at the reader/writer edge.
* ``spacing``, ``direction`` and ``origin`` are derived from the affine:
  ``affine[:3, :3] == direction @ diag(spacing)`` and ``origin == affine[:3, 3]``
  (the world position of the centre of voxel (0, 0, 0)).
* ``slice_axis`` is the acquisition axis (the axis slices were acquired along;
  2 for DICOM series and most NIfTI files). Slice-wise models work on planes
  perpendicular to it.

A ``Volume`` is validated on construction: 3D, finite affine, positive spacing,
orthonormal direction (shear is refused; gantry-tilted DICOM must be resampled
by the reader first).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import GeometryError

#: Flip between LPS (DICOM/ITK) and RAS (NIfTI) world coordinates.
LPS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

_ORTHO_TOL = 1e-4


def lps_to_ras(affine_lps: np.ndarray) -> np.ndarray:
    """Convert a voxel->LPS affine to voxel->RAS (the flip is its own inverse)."""
    return LPS_RAS @ np.asarray(affine_lps, dtype=np.float64)


ras_to_lps = lps_to_ras


def affine_from_geometry(spacing, direction, origin) -> np.ndarray:
    """4x4 affine from spacing (3,), direction (3x3, columns = axis directions) and origin (3,)."""
    spacing = np.asarray(spacing, dtype=np.float64).reshape(3)
    direction = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    aff = np.eye(4)
    aff[:3, :3] = direction * spacing[None, :]
    aff[:3, 3] = np.asarray(origin, dtype=np.float64).reshape(3)
    return aff


def split_affine(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(spacing, direction, origin) of a 4x4 affine; the inverse of :func:`affine_from_geometry`."""
    affine = np.asarray(affine, dtype=np.float64)
    m = affine[:3, :3]
    spacing = np.linalg.norm(m, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        direction = m / spacing[None, :]
    return spacing, direction, affine[:3, 3].copy()


def apply_affine(affine: np.ndarray, points) -> np.ndarray:
    """Apply a 4x4 affine to points shaped (..., 3)."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]


def axcodes(affine: np.ndarray) -> tuple[str, str, str]:
    """Orientation codes (e.g. ('L', 'P', 'S')) of a voxel->RAS affine, as nibabel's aff2axcodes."""
    import nibabel as nib

    return tuple(nib.aff2axcodes(affine))


def validate_affine(affine: np.ndarray) -> np.ndarray:
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise GeometryError(f"affine must be 4x4, got shape {affine.shape}")
    if not np.all(np.isfinite(affine)):
        raise GeometryError("affine contains NaN or infinite values")
    if not np.allclose(affine[3], [0, 0, 0, 1]):
        raise GeometryError(f"affine's last row must be [0 0 0 1], got {affine[3].tolist()}")
    spacing, direction, _ = split_affine(affine)
    if np.any(spacing <= 0) or not np.all(np.isfinite(spacing)):
        raise GeometryError(f"voxel spacing must be positive, got {spacing.tolist()}")
    gram = direction.T @ direction
    err = np.abs(gram - np.eye(3)).max()
    if err > _ORTHO_TOL:
        raise GeometryError(
            "direction cosines are not orthonormal (sheared grid, max |D^T D - I| = "
            f"{err:.2e}); resample onto a regular grid first"
        )
    return affine


def guess_modality(volume: "Volume") -> str | None:
    """The volume's modality; for files that carry none (NIfTI, NRRD), "CT" when the values
    reach air in Hounsfield units (min <= -500 and integer-valued), else None (unknown: MR-style
    percentile normalisation). Used for ``--modality auto``."""
    if volume.modality:
        return str(volume.modality).upper()
    if volume.intensity == "HU":
        return "CT"
    arr = volume.array
    if volume.intensity == "raw" and arr.size and np.issubdtype(arr.dtype, np.number) and arr.min() <= -500:
        sample = arr.ravel()[:: max(1, arr.size // 100000)]
        if np.array_equal(sample, np.round(sample)):
            return "CT"
    return None


@dataclass(frozen=True)
class DicomRef:
    """DICOM identity of a series, kept so results can be written back as DICOM SEG.

    ``sop_instance_uids`` lists the source instances in slice order (index k of
    ``Volume.array``); ``datasets_paths`` are the files they came from.
    """

    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    frame_of_reference_uid: str | None = None
    sop_class_uid: str | None = None
    sop_instance_uids: tuple[str, ...] = ()
    file_paths: tuple[str, ...] = ()
    patient_id: str | None = None
    patient_name: str | None = None
    patient_birth_date: str | None = None
    patient_sex: str | None = None
    study_date: str | None = None
    study_id: str | None = None
    accession_number: str | None = None
    series_description: str | None = None
    series_number: int | None = None
    modality: str | None = None


@dataclass
class Volume:
    """A 3D scalar image: ``array`` (X, Y, Z) + voxel->RAS ``affine`` + metadata.

    Parameters
    ----------
    array: 3D numpy array, index order (i, j, k).
    affine: 4x4 voxel->RAS mm.
    modality: "CT", "MR", ... or None when unknown.
    intensity: what the values mean: "HU" (CT, rescaled), "raw" (scanner units,
        e.g. MR), "windowed" (already mapped to 0-255; must not be windowed again),
        or "label".
    slice_axis: acquisition axis (0, 1 or 2).
    source: file or folder it was read from (None for in-memory volumes).
    dicom: DICOM identity when read from a DICOM series.
    meta: free-form extra metadata (reader notes, selected time point, ...).
    """

    array: np.ndarray
    affine: np.ndarray
    modality: str | None = None
    intensity: str = "raw"
    slice_axis: int = 2
    source: str | None = None
    dicom: DicomRef | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        arr = np.asarray(self.array)
        if arr.ndim != 3:
            raise GeometryError(
                f"a Volume is 3D; got an array with {arr.ndim} dimensions, shape {arr.shape}"
            )
        if min(arr.shape) < 1:
            raise GeometryError(f"empty volume, shape {arr.shape}")
        self.array = arr
        self.affine = validate_affine(self.affine)
        if self.slice_axis not in (0, 1, 2):
            raise GeometryError(f"slice_axis must be 0, 1 or 2, got {self.slice_axis}")
        if self.intensity not in ("HU", "raw", "windowed", "label"):
            raise GeometryError(f"unknown intensity kind {self.intensity!r}")

    # ---- geometry -------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape)

    @property
    def spacing(self) -> np.ndarray:
        return split_affine(self.affine)[0]

    @property
    def direction(self) -> np.ndarray:
        return split_affine(self.affine)[1]

    @property
    def origin(self) -> np.ndarray:
        return self.affine[:3, 3].copy()

    @property
    def axcodes(self) -> tuple[str, str, str]:
        return axcodes(self.affine)

    def voxel_to_world(self, ijk) -> np.ndarray:
        """Voxel indices (..., 3) in (i, j, k) order -> RAS mm (..., 3)."""
        return apply_affine(self.affine, ijk)

    def world_to_voxel(self, xyz) -> np.ndarray:
        """RAS mm (..., 3) -> continuous voxel indices (..., 3) in (i, j, k) order."""
        return apply_affine(np.linalg.inv(self.affine), xyz)

    def same_grid(self, other: "Volume", atol: float = 1e-3) -> bool:
        """True when ``other`` has the same shape and affine (within ``atol`` mm)."""
        return self.shape == other.shape and np.allclose(self.affine, other.affine, atol=atol)

    def with_array(self, array: np.ndarray, **changes) -> "Volume":
        """A new Volume on the same grid holding ``array`` (e.g. a label map)."""
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise GeometryError(
                f"array shape {array.shape} does not match the volume's grid {self.array.shape}"
            )
        return dataclasses.replace(self, array=array, meta=dict(self.meta), **changes)

    def summary(self) -> dict[str, Any]:
        """Machine-readable description (used by ``sam-med info --json``)."""
        out = {
            "source": self.source,
            "shape": list(self.shape),
            "spacing": [round(float(s), 6) for s in self.spacing],
            "orientation": "".join(self.axcodes),
            "origin": [round(float(o), 6) for o in self.origin],
            "affine": np.round(self.affine, 6).tolist(),
            "modality": self.modality,
            "intensity": self.intensity,
            "slice_axis": self.slice_axis,
            "dtype": str(self.array.dtype),
            "min": float(np.min(self.array)),
            "max": float(np.max(self.array)),
        }
        if self.dicom is not None:
            out["series_instance_uid"] = self.dicom.series_instance_uid
            out["series_description"] = self.dicom.series_description
            out["study_instance_uid"] = self.dicom.study_instance_uid
        for k, v in self.meta.items():
            if isinstance(v, (str, int, float, bool, list)) or v is None:
                out.setdefault(k, v)
        return out

    def __repr__(self) -> str:  # keep reprs short: arrays are large
        sp = ", ".join(f"{s:.4g}" for s in self.spacing)
        return (
            f"Volume(shape={self.shape}, spacing=({sp}), orientation={''.join(self.axcodes)}, "
            f"modality={self.modality}, intensity={self.intensity}, source={self.source!r})"
        )
