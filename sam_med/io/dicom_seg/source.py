"""The source series of a DICOM SEG: its headers in slice order, identity repair, grid checks.

Shared by the writer (a SEG references these instances) and the reader (frames are
cross-checked against them). Also the SOP class and tracking-ID conventions both use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import OutputError
from ...volume import Volume, ras_to_lps
from ..dicom.tags import SEG_SOP_CLASS

LABELMAP_SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.7"
#: ``TrackingID`` prefix of a segment written by sam-med; the object's label value follows.
TRACKING_PREFIX = "sam-med label "

__all__ = ["LABELMAP_SEG_SOP_CLASS", "SEG_SOP_CLASS", "TRACKING_PREFIX", "SourceIdentity",
           "check_dicom_seg_source", "check_source_geometry", "source_identity"]


@dataclass(frozen=True)
class SourceIdentity:
    """The source series as a DICOM SEG references it (see :func:`source_identity`)."""

    datasets: list  # pydicom headers (repaired copies), slice order k
    sop_instance_uids: tuple[str, ...]
    series_instance_uid: str
    study_instance_uid: str
    frame_of_reference_uid: str | None
    repaired: tuple[str, ...]


def _derived_uid(kind: str, parts) -> str:
    import uuid

    # "2.25." + a name-based (SHA-1) UUID: the same inputs always give the same UID
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, '|'.join(['sam-med', kind, *map(str, parts)])).int}"


def source_identity(like: Volume, *, error=OutputError) -> SourceIdentity:
    """The source series' headers in slice order with SOP/series/study UIDs filled in
    where anonymisation left them empty (see the module docstring)."""
    import pydicom

    ref = like.dicom
    if ref is None:
        raise error(
            f"{like.source or 'the volume'} was not read from DICOM: a DICOM SEG must reference "
            "the source DICOM series (export NIfTI/NRRD instead)"
        )
    files = list(ref.file_paths)
    nz = like.shape[2]
    if not ref.sop_instance_uids or len(files) != nz or like.meta.get("resampled"):
        raise error(
            f"{like.source}: the volume was resampled from its DICOM series "
            f"({like.meta.get('resampled', f'{len(files)} files for {nz} slices')}); a DICOM SEG must lie "
            "on the source slices. Export NIfTI/NRRD instead, or load the series without resampling"
        )
    dsets = []
    for f in files:
        try:
            dsets.append(pydicom.dcmread(f, stop_before_pixels=True))
        except Exception as exc:
            raise error(f"{f}: cannot re-read the source DICOM file ({type(exc).__name__}: {exc})") from exc
    repaired = []
    for f, ds in zip(files, dsets):
        meta = getattr(ds, "file_meta", None)
        for key, mkey in (("SOPClassUID", "MediaStorageSOPClassUID"),
                          ("SOPInstanceUID", "MediaStorageSOPInstanceUID")):
            if not str(ds.get(key, "") or "").strip():
                v = str(getattr(meta, mkey, "") or "").strip() if meta is not None else ""
                if not v:
                    raise error(f"{f}: the source image has no {key} (not even in its file meta); "
                                "it cannot be referenced by a DICOM SEG")
                setattr(ds, key, v)
                if key not in repaired:
                    repaired.append(key)
    sops = tuple(str(ds.SOPInstanceUID) for ds in dsets)
    if len(set(sops)) != len(sops):
        raise error(f"{like.source}: the source images do not have distinct SOP Instance UIDs")
    if any(ref.sop_instance_uids) and tuple(ref.sop_instance_uids) != sops:
        raise error(f"{like.source}: the source files changed since the series was loaded (SOP UIDs differ)")
    for_uid = str(dsets[0].get("FrameOfReferenceUID", "") or "").strip() or None
    if for_uid is None:
        raise error(f"{like.source}: the source series has no FrameOfReferenceUID; a SEG cannot be "
                    "anchored to it")

    def fill(key, kind):
        vals = {str(ds.get(key, "") or "").strip() for ds in dsets}
        if len(vals) > 1:
            raise error(f"{like.source}: the source images disagree on {key} ({sorted(vals)})")
        v = vals.pop()
        if not v:
            v = _derived_uid(kind, [for_uid, *sorted(sops)])
            for ds in dsets:
                setattr(ds, key, v)
            repaired.append(key)
        return v

    series = fill("SeriesInstanceUID", "series")
    study = fill("StudyInstanceUID", "study")
    return SourceIdentity(dsets, sops, series, study, for_uid, tuple(repaired))


def check_source_geometry(like: Volume, dsets, error=OutputError) -> None:
    """Each source file must be slice k of ``like`` with rows along j and columns along i."""
    aff = ras_to_lps(like.affine)
    nx, ny, _ = like.shape
    for k, ds in enumerate(dsets):
        rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
        if (rows, cols) != (ny, nx):
            raise error(f"source image {k} is {rows}x{cols} (rows x columns); the volume grid is {ny}x{nx}")
        ipp = np.array([float(v) for v in ds.ImagePositionPatient])
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
        expect = aff[:3, 3] + k * aff[:3, 2]
        if np.abs(ipp - expect).max() > 1e-2 or \
                np.abs(iop[:3] - aff[:3, 0] / np.linalg.norm(aff[:3, 0])).max() > 1e-3 or \
                np.abs(iop[3:] - aff[:3, 1] / np.linalg.norm(aff[:3, 1])).max() > 1e-3:
            raise error(
                f"source image {k} ({ds.get('SOPInstanceUID')}) is not slice {k} of the volume's grid "
                "(its position/orientation differs); the volume does not lie on its DICOM series"
            )


def check_dicom_seg_source(like: Volume) -> None:
    """Raise :class:`OutputError` now (before any model runs) when ``like`` cannot be the
    source of a DICOM SEG: not DICOM, resampled, unreadable or inconsistent source files."""
    ident = source_identity(like)
    check_source_geometry(like, ident.datasets)
