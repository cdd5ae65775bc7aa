"""One DICOM series -> :class:`~sam_med.volume.Volume`: geometry checks, slice order,
4D time-point choice, pixel data with rescale, and the :class:`DicomRef` of the source
(rules in :mod:`sam_med.io.dicom`)."""

from __future__ import annotations

import math
import os
from collections import Counter

import numpy as np

from ...errors import DicomSeriesError, InputFileError
from ...volume import DicomRef, Volume, lps_to_ras
from .resample import resample_stack
from .series import scan, series_info, series_key
from .tags import SEG_SOP_CLASS, malformed_tag_error, read_floats, rescale_of


def _gap_summary(gaps: np.ndarray) -> str:
    c = Counter(np.round(gaps, 2).tolist())
    parts = [f"{n}x {g:.2f} mm" for g, n in sorted(c.items(), key=lambda t: (-t[1], t[0]))[:4]]
    more = "" if len(c) <= 4 else f", +{len(c) - 4} other values"
    return ", ".join(parts) + more


#: transfer syntaxes with a bounded expansion (RLE PackBits: 2 bytes -> at most 128)
_RLE = "1.2.840.10008.1.2.5"
#: a compressed slice may always claim this much; beyond it, at most _CODEC_RATIO x its bytes
_FREE_CLAIM = 64 << 20
_CODEC_RATIO = 4096


def pixel_claim(ds) -> int:
    """Bytes the decoded pixel data of ``ds`` claims (rows x columns x samples x frames)."""
    bits = int(ds.get("BitsAllocated", 16) or 16)
    n = int(ds.get("Rows", 0) or 0) * int(ds.get("Columns", 0) or 0)
    n *= int(ds.get("SamplesPerPixel", 1) or 1) * int(ds.get("NumberOfFrames", 1) or 1)
    return n * max(1, (bits + 7) // 8)


def check_pixel_claim(ds, path) -> None:
    """Before decoding: the claim against the stored pixel bytes (by transfer syntax) and the budget."""
    from ..guards import memory_budget

    claim = pixel_claim(ds)
    stored = len(ds.PixelData) if "PixelData" in ds else 0
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    compressed = bool(getattr(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None), "is_compressed",
                              False))
    if claim > memory_budget():
        raise InputFileError(f"{path}: the header claims {claim:,} bytes of pixels, over the memory budget")
    bits = int(ds.get("BitsAllocated", 16) or 16)
    if ts == _RLE:
        limit = stored * 64 + 64
    elif compressed:
        limit = max(_FREE_CLAIM, stored * _CODEC_RATIO)
    else:  # native: the bits themselves must be stored (1-bit SEG frames are packed)
        limit = stored * max(1, (bits + 7) // 8) * 8 // bits if bits else stored
    if claim > limit:
        raise InputFileError(f"{path}: the header claims {int(ds.get('Rows', 0) or 0)}x{int(ds.get('Columns', 0) or 0)} "
                             f"pixels ({claim:,} bytes) but its {stored:,} stored bytes cannot hold them; corrupt")


def _pixels(path, ds_header):
    import pydicom

    try:
        ds = pydicom.dcmread(path)
        check_pixel_claim(ds, path)
        arr = ds.pixel_array
    except InputFileError:
        raise
    except Exception as exc:
        ts = getattr(getattr(ds_header, "file_meta", None), "TransferSyntaxUID", None)
        tsname = getattr(ts, "name", ts)
        hint = ""
        if "decod" in str(exc).lower() or "plugin" in str(exc).lower() or "handler" in str(exc).lower():
            hint = " (compressed DICOM needs: pip install 'sam-med[dicom]', i.e. pylibjpeg + pylibjpeg-openjpeg)"
        raise InputFileError(
            f"{path}: cannot read pixel data (transfer syntax {tsname}): {type(exc).__name__}: {exc}{hint}"
        ) from exc
    return ds, arr



def load_dicom(path, *, series_uid=None, time_index=None, resample=False) -> Volume:
    """Load one DICOM series as a Volume (see the module docstring for the rules).

    Malformed numeric tags (InstanceNumber "abc", RescaleSlope "x", ...) raise
    :class:`InputFileError`; spacings must be positive."""
    try:
        return _load_dicom(path, series_uid=series_uid, time_index=time_index, resample=resample)
    except (ValueError, TypeError, OverflowError, AttributeError) as exc:
        raise malformed_tag_error(path, exc) from exc


def _choose_series(series: dict, series_uid, where: str) -> list:
    """The ``(file, header)`` items of the requested series (the only one when ``series_uid``
    is None); a missing UID or several series without a choice raise :class:`DicomSeriesError`."""
    if series_uid is not None:
        if series_uid not in series:
            listing = "; ".join(series_info(u, it).line() for u, it in series.items())
            raise DicomSeriesError(f"{where}: no series with UID {series_uid}; found: {listing}")
        return series[series_uid]
    elif len(series) > 1:
        infos = sorted((series_info(u, it) for u, it in series.items()), key=lambda s: (s.number or 0, s.uid))
        listing = "; ".join(s.line() for s in infos)
        raise DicomSeriesError(
            f"{where}: {len(series)} DICOM series found, choose one with series_uid=UID "
            f"(CLI --series UID): {listing}"
        )
    else:
        return next(iter(series.values()))


def _pixel_volume(items) -> np.ndarray:
    """Pixel data of the sorted slices, rescaled (slope/intercept), as ``(i, j, k)``: int16/int32
    when every slice has slope 1 and an integer intercept, else float32."""
    from ..guards import memory_budget

    total = sum(pixel_claim(hdr) for _, hdr in items) * 2  # the stack, then its rescaled copy
    if total > memory_budget():
        raise InputFileError(f"{items[0][0]}: the series claims {total:,} bytes of pixels, over the memory budget "
                             "(set SAM_MED_MAX_BYTES to raise it)")
    stack = []
    rescales = []
    for f, hdr in items:
        ds, px = _pixels(f, hdr)
        if px.ndim != 2 or px.shape != (int(ds.Rows), int(ds.Columns)):
            raise InputFileError(f"{f}: unexpected pixel array shape {px.shape}")
        rescales.append(rescale_of(ds))
        stack.append(px)
    raw = np.stack(stack, axis=-1)  # (rows j, cols i, k)
    if len(set(rescales)) == 1:
        slope, inter = rescales[0]
        if slope == 1 and inter == int(inter):
            vol = raw.astype(np.int32) + int(inter)
        else:
            vol = raw.astype(np.float32) * np.float32(slope) + np.float32(inter)
    else:
        vol = np.stack([stack[k].astype(np.float32) * np.float32(rs[0]) + np.float32(rs[1])
                        for k, rs in enumerate(rescales)], axis=-1)
    if np.issubdtype(vol.dtype, np.integer):
        lo, hi = int(vol.min()), int(vol.max())
        for dt in (np.int16, np.int32):
            if np.iinfo(dt).min <= lo and hi <= np.iinfo(dt).max:
                vol = vol.astype(dt)
                break
    vol = np.ascontiguousarray(vol.transpose(1, 0, 2))  # (i, j, k)
    return vol


def _load_dicom(path, *, series_uid=None, time_index=None, resample=False) -> Volume:
    series, skipped = scan(path)
    src = os.path.abspath(os.fspath(path)) if not isinstance(path, (list, tuple)) else None
    where = src or "the given DICOM files"
    items = _choose_series(series, series_uid, where)
    uid = series_key(items[0][1])
    if uid.startswith("no-series-uid:"):
        meta_note = "files have no SeriesInstanceUID; grouped by series number/description/frame of reference"
    else:
        meta_note = None

    first_path, first = items[0]
    sop_class = str(first.get("SOPClassUID", ""))
    if sop_class == SEG_SOP_CLASS or str(first.get("Modality", "")) == "SEG":
        raise DicomSeriesError(f"{first_path}: series {uid} is a DICOM SEG object, not an image series")
    for f, ds in items:
        nframes = int(ds.get("NumberOfFrames", 1) or 1)
        if nframes > 1:
            raise DicomSeriesError(
                f"{f}: multi-frame (enhanced) DICOM with {nframes} frames is not supported; "
                "convert it to single-frame files or NIfTI (e.g. with dcm2niix)"
            )
        if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
            raise DicomSeriesError(f"{f}: colour (RGB) DICOM images are not supported")

    # orientation: all images must share it (and the matrix size)
    iop0 = read_floats(first, "ImageOrientationPatient", 6, first_path)
    shapes = Counter((int(ds.Rows), int(ds.Columns)) for _, ds in items if "Rows" in ds)
    if len(shapes) > 1:
        raise DicomSeriesError(
            f"{where}: series {uid} mixes image sizes {sorted(shapes)}; it is not one volume"
        )
    for f, ds in items:
        iop = read_floats(ds, "ImageOrientationPatient", 6, f)
        if np.abs(iop - iop0).max() > 1e-4:
            raise DicomSeriesError(
                f"{where}: series {uid} mixes slice orientations ({f} differs from {first_path}); "
                "it is not one volume (localizer or multi-stack series?)"
            )
    r, c = iop0[:3], iop0[3:]
    r = r / np.linalg.norm(r)
    c = c / np.linalg.norm(c)
    if abs(float(r @ c)) > 1e-3:
        raise InputFileError(f"{first_path}: ImageOrientationPatient rows/columns are not perpendicular")
    n = np.cross(r, c)
    ps = read_floats(first, "PixelSpacing", 2, first_path)
    for f, ds in items:
        if np.abs(read_floats(ds, "PixelSpacing", 2, f) - ps).max() > 1e-4:
            raise DicomSeriesError(f"{where}: series {uid} mixes pixel spacings ({f} differs)")

    pos = np.array([read_floats(ds, "ImagePositionPatient", 3, f) for f, ds in items])
    d = pos @ n
    inst = np.array([int(ds.get("InstanceNumber", 0) or 0) for _, ds in items])
    order = np.lexsort((inst, d))
    items = [items[i] for i in order]
    pos, d = pos[order], d[order]

    # group images at the same position (4D: time points, echoes, b-values ...)
    groups: list[list[int]] = [[0]]
    for idx in range(1, len(items)):
        if abs(d[idx] - d[groups[-1][0]]) < 1e-3 and np.abs(pos[idx] - pos[groups[-1][0]]).max() < 1e-2:
            groups[-1].append(idx)
        else:
            groups.append([idx])
    counts = Counter(len(g) for g in groups)
    meta: dict = {"format": "dicom", "series_instance_uid": uid}
    if meta_note:
        meta["series_note"] = meta_note
    if skipped:
        meta["skipped_non_dicom_files"] = skipped
    if len(counts) > 1 or max(counts) > 1:
        if len(counts) > 1:
            raise DicomSeriesError(
                f"{where}: series {uid} has a varying number of images per slice position "
                f"({dict(sorted(counts.items()))} positions with that many images); incomplete 4D series?"
            )
        nt = next(iter(counts))
        if time_index is None:
            raise DicomSeriesError(
                f"{where}: series {uid} is 4D: {len(groups)} slice positions x {nt} time points "
                f"({len(items)} images); choose a time point with time_index=0..{nt - 1} "
                "(CLI --time-index N)"
            )
        if not 0 <= int(time_index) < nt:
            raise DicomSeriesError(f"{where}: time_index {time_index} out of range 0..{nt - 1}")

        def tkey(i):
            ds = items[i][1]
            return (
                float(ds.get("TemporalPositionIdentifier", 0) or 0),
                float(ds.get("TriggerTime", 0) or 0),
                float(ds.get("AcquisitionNumber", 0) or 0),
                int(ds.get("InstanceNumber", 0) or 0),
            )

        sel = [sorted(g, key=tkey)[int(time_index)] for g in groups]
        meta["time_index"] = int(time_index)
        meta["time_points"] = nt
    else:
        if time_index not in (None, 0):
            raise DicomSeriesError(f"{where}: time_index={time_index} given but series {uid} is 3D")
        sel = [g[0] for g in groups]
    items = [items[i] for i in sel]
    pos, d = pos[sel], d[sel]
    nz = len(items)

    # slice spacing, evenness, tilt
    tilt_deg = 0.0
    irregular = []
    if nz > 1:
        gaps = np.diff(d)
        sp = (d[-1] - d[0]) / (nz - 1)
        resid = np.abs(d - (d[0] + sp * np.arange(nz))).max()
        if resid > 0.01 * sp + 1e-3:
            irregular.append(
                f"uneven slice spacing along the slice normal: gaps {_gap_summary(gaps)} "
                f"(from {gaps.min():.3f} to {gaps.max():.3f} mm)"
            )
        lateral = (pos - pos[0]) - np.outer(d - d[0], n)
        lat = np.linalg.norm(lateral, axis=1)
        if lat.max() > 1e-2:
            k = int(np.argmax(lat))
            tilt_deg = math.degrees(math.atan2(lat[k], abs(d[k] - d[0])))
            tag = first.get("GantryDetectorTilt")
            tagtxt = f", GantryDetectorTilt {float(tag):g} deg" if tag not in (None, "") else ""
            irregular.append(
                f"gantry tilt / non-orthogonal slice stacking: slices are shifted in-plane by up to "
                f"{lat.max():.2f} mm, i.e. a tilt of {tilt_deg:.1f} deg{tagtxt}"
            )
    else:
        sp = float(first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 1.0)
        meta["slice_spacing_from"] = "SpacingBetweenSlices/SliceThickness (single slice)"
    if irregular and not resample:
        raise DicomSeriesError(
            f"{where}: series {uid} cannot be stacked on a regular grid as is: "
            + "; ".join(irregular)
            + ". Pass resample=True (CLI --resample) to resample it onto a regular grid."
        )

    # pixels
    modality = str(first.get("Modality", "") or "") or None
    vol = _pixel_volume(items)

    dx, dy = float(ps[1]), float(ps[0])  # along i (row direction r), along j (column direction c)
    if irregular:
        vol, aff_lps, note = resample_stack(vol, r, c, n, dx, dy, pos, d)
        meta["resampled"] = note
    else:
        aff_lps = np.eye(4)
        aff_lps[:3, 0] = r * dx
        aff_lps[:3, 1] = c * dy
        aff_lps[:3, 2] = n * sp
        aff_lps[:3, 3] = pos[0]
    affine = lps_to_ras(aff_lps)

    intensity = "raw"
    if modality == "CT":
        rtype = str(first.get("RescaleType", "HU") or "HU").upper()
        intensity = "HU" if rtype in ("HU", "US") or "RescaleType" not in first else "raw"
    if str(first.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        meta["photometric"] = "MONOCHROME1 (values not inverted)"

    def s(key):
        v = first.get(key)
        return None if v in (None, "") else str(v)

    num = first.get("SeriesNumber")
    ref = DicomRef(
        study_instance_uid=s("StudyInstanceUID"),
        series_instance_uid=None if meta_note else uid,
        frame_of_reference_uid=s("FrameOfReferenceUID"),
        sop_class_uid=s("SOPClassUID"),
        sop_instance_uids=() if irregular else tuple(str(ds.get("SOPInstanceUID", "") or "") for _, ds in items),
        file_paths=tuple(f for f, _ in items),
        patient_id=s("PatientID"),
        patient_name=s("PatientName"),
        patient_birth_date=s("PatientBirthDate"),
        patient_sex=s("PatientSex"),
        study_date=s("StudyDate"),
        study_id=s("StudyID"),
        accession_number=s("AccessionNumber"),
        series_description=s("SeriesDescription"),
        series_number=int(num) if num not in (None, "") else None,
        modality=modality,
    )
    if irregular:
        meta["source_files"] = [f for f, _ in items]
    return Volume(vol, affine, modality=modality, intensity=intensity, slice_axis=2,
                  source=src or os.path.commonpath([f for f, _ in items]), dicom=ref, meta=meta)

