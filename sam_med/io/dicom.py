"""DICOM series reading with pydicom + numpy geometry.

Geometry (all in LPS, converted to RAS at the end with :func:`lps_to_ras`):

* row direction ``r`` = ImageOrientationPatient[:3] (the direction of increasing
  column index i), column direction ``c`` = IOP[3:] (increasing row index j),
  slice normal ``n = r x c``.
* ``PixelSpacing = [row spacing, column spacing]`` = [spacing along j, along i].
* Slices are sorted by ``d = n . ImagePositionPatient`` (never by file name or
  InstanceNumber). ``array[i, j, k]`` is pixel (row j, column i) of slice k.
* Irregular series are detected and refused unless asked: several images at one
  position (4D: ``time_index=``), uneven gaps or gantry tilt (``resample=True``).
  A resampled volume's slices no longer correspond to source instances, so its
  ``DicomRef.sop_instance_uids`` is empty (``file_paths`` still lists the sources,
  so writers can refuse to overwrite them) and ``meta["resampled"]`` says what was done.
* One file given -> only that file is read (a one-slice volume; the slice
  spacing then comes from SpacingBetweenSlices/SliceThickness and is noted in meta).
* Files without a SeriesInstanceUID (anonymised) are grouped by series number,
  description and frame of reference, under a ``no-series-uid:...`` key.
* Not supported (refused with a message): multi-frame/enhanced DICOM, RGB, DICOM SEG
  as an image, series mixing orientations or matrix sizes.
"""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from ..errors import DicomSeriesError, InputFileError
from .guards import check_spacing, is_regular, require_regular
from ..volume import DicomRef, Volume, lps_to_ras

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
_SKIP_NAMES = {"DICOMDIR"}


@dataclass(frozen=True)
class SeriesInfo:
    uid: str
    description: str | None
    number: int | None
    modality: str | None
    n_files: int
    n_slices: int  # distinct slice positions (n_files / time points for 4D)
    files: tuple[str, ...] = ()

    def line(self) -> str:
        desc = self.description or "(no description)"
        extra = f", {self.n_files} files" if self.n_files != self.n_slices else ""
        return f"{self.uid} [{self.modality or '?'}] {desc!r}: {self.n_slices} slices{extra}"


# --------------------------------------------------------------------------- scanning
def _read_header(path: str, *, strict: bool):
    """pydicom dataset without pixels, or None when the file is not DICOM (strict=False)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        missing = [k for k in ("SOPClassUID", "SeriesInstanceUID") if k not in ds]
        if missing:
            raise InputFileError(
                f"{path}: incomplete DICOM header (no {' or '.join(missing)}); truncated or corrupt file?"
            )
        return ds
    except InputFileError:
        raise
    except InvalidDicomError:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            if "SOPClassUID" in ds and "SeriesInstanceUID" in ds:
                return ds
        except Exception:
            pass
        if strict:
            raise InputFileError(f"{path}: not a DICOM file") from None
        return None
    except Exception as exc:  # truncated / corrupt header
        raise InputFileError(f"{path}: corrupt or truncated DICOM file ({type(exc).__name__}: {exc})") from exc


def _collect_files(path) -> list[str]:
    if isinstance(path, (list, tuple)):
        files = [os.path.abspath(os.fspath(p)) for p in path]
        for f in files:
            if not os.path.isfile(f):
                raise InputFileError(f"{f}: no such file")
            require_regular(f)
        if not files:
            raise InputFileError("an empty list of DICOM files was given")
        return files
    path = os.path.abspath(os.fspath(path))
    if os.path.isfile(path):
        return [require_regular(path)]
    if not os.path.isdir(path):
        raise InputFileError(f"{path}: no such file or folder")
    files = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for n in sorted(names):
            if n.startswith(".") or n in _SKIP_NAMES or not is_regular(os.path.join(root, n)):
                continue  # FIFOs, devices, sockets (and symlinks to them) are never opened
            files.append(os.path.join(root, n))
    return files


def _scan(path):
    """{series uid: [(file, header)]} and the number of non-DICOM files skipped."""
    files = _collect_files(path)
    explicit = isinstance(path, (list, tuple)) or os.path.isfile(os.fspath(path))
    series: dict[str, list] = defaultdict(list)
    skipped = 0
    for f in files:
        ds = _read_header(f, strict=explicit)
        if ds is None:
            skipped += 1
            continue
        series[series_key(ds)].append((f, ds))
    if not series:
        where = path if not isinstance(path, (list, tuple)) else "the given files"
        raise InputFileError(
            f"{where}: no DICOM files found"
            + (f" ({skipped} other files skipped)" if skipped else " (the folder is empty)")
        )
    return series, skipped


def series_key(ds) -> str:
    """SeriesInstanceUID, or for anonymised files without one a stand-in key built from
    SeriesNumber / SeriesDescription / FrameOfReferenceUID (shown in listings; accepted as series_uid)."""
    uid = str(ds.get("SeriesInstanceUID", "") or "").strip()
    if uid:
        return uid
    return "no-series-uid:{}:{}:{}".format(
        ds.get("SeriesNumber", "") or "", str(ds.get("SeriesDescription", "") or "").strip(),
        str(ds.get("FrameOfReferenceUID", "") or "")[-12:])


def _count_positions(items) -> int:
    pos = set()
    for _, ds in items:
        ipp = ds.get("ImagePositionPatient")
        pos.add(tuple(round(float(v), 2) for v in ipp) if ipp is not None else id(ds))
    return len(pos)


def _info(uid, items) -> SeriesInfo:
    ds = items[0][1]
    num = ds.get("SeriesNumber")
    return SeriesInfo(
        uid=uid,
        description=str(ds.get("SeriesDescription", "") or "") or None,
        number=int(num) if num not in (None, "") else None,
        modality=str(ds.get("Modality", "") or "") or None,
        n_files=len(items),
        n_slices=_count_positions(items),
        files=tuple(f for f, _ in items),
    )


def _malformed(path, exc) -> InputFileError:
    where = path if not isinstance(path, (list, tuple)) else "the given DICOM files"
    return InputFileError(f"{where}: malformed DICOM numeric tag ({exc.__class__.__name__}: "
                          f"{' '.join(str(exc).split())[:200]})")


def list_dicom_series(path) -> list[SeriesInfo]:
    """The DICOM series in a folder (recursively), a file list or a file, sorted by series number."""
    try:
        return _list_dicom_series(path)
    except (ValueError, TypeError, OverflowError, AttributeError) as exc:
        raise _malformed(path, exc) from exc


def _list_dicom_series(path) -> list[SeriesInfo]:
    series, _ = _scan(path)
    infos = [_info(uid, items) for uid, items in series.items()]
    return sorted(infos, key=lambda s: (s.number if s.number is not None else 1 << 30, s.uid))


# --------------------------------------------------------------------------- geometry
def _floats(ds, key, n, path):
    v = ds.get(key)
    if v is None:
        raise InputFileError(f"{path}: missing {key}; the slice geometry is unknown")
    try:
        out = np.array([float(x) for x in v], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputFileError(f"{path}: invalid {key} {v!r}") from exc
    if out.size != n:
        raise InputFileError(f"{path}: {key} must have {n} values, got {out.size}")
    if not np.all(np.isfinite(out)):
        raise InputFileError(f"{path}: {key} {out.tolist()} is not finite")
    if key == "PixelSpacing":
        check_spacing(out, path, "PixelSpacing")
    return out


def _gap_summary(gaps: np.ndarray) -> str:
    c = Counter(np.round(gaps, 2).tolist())
    parts = [f"{n}x {g:.2f} mm" for g, n in sorted(c.items(), key=lambda t: (-t[1], t[0]))[:4]]
    more = "" if len(c) <= 4 else f", +{len(c) - 4} other values"
    return ", ".join(parts) + more


def _pixels(path, ds_header):
    import pydicom

    try:
        ds = pydicom.dcmread(path)
        arr = ds.pixel_array
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


def _rescale(ds):
    slope = float(ds.get("RescaleSlope", 1) or 1)
    inter = float(ds.get("RescaleIntercept", 0) or 0)
    return slope, inter


def load_dicom(path, *, series_uid=None, time_index=None, resample=False) -> Volume:
    """Load one DICOM series as a Volume (see the module docstring for the rules).

    Malformed numeric tags (InstanceNumber "abc", RescaleSlope "x", ...) raise
    :class:`InputFileError`; spacings must be positive."""
    try:
        return _load_dicom(path, series_uid=series_uid, time_index=time_index, resample=resample)
    except (ValueError, TypeError, OverflowError, AttributeError) as exc:
        raise _malformed(path, exc) from exc


def _load_dicom(path, *, series_uid=None, time_index=None, resample=False) -> Volume:
    series, skipped = _scan(path)
    src = os.path.abspath(os.fspath(path)) if not isinstance(path, (list, tuple)) else None
    where = src or "the given DICOM files"
    if series_uid is not None:
        if series_uid not in series:
            listing = "; ".join(_info(u, it).line() for u, it in series.items())
            raise DicomSeriesError(f"{where}: no series with UID {series_uid}; found: {listing}")
        items = series[series_uid]
    elif len(series) > 1:
        infos = sorted((_info(u, it) for u, it in series.items()), key=lambda s: (s.number or 0, s.uid))
        listing = "; ".join(s.line() for s in infos)
        raise DicomSeriesError(
            f"{where}: {len(series)} DICOM series found, choose one with series_uid=UID "
            f"(CLI --series UID): {listing}"
        )
    else:
        items = next(iter(series.values()))
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
    iop0 = _floats(first, "ImageOrientationPatient", 6, first_path)
    shapes = Counter((int(ds.Rows), int(ds.Columns)) for _, ds in items if "Rows" in ds)
    if len(shapes) > 1:
        raise DicomSeriesError(
            f"{where}: series {uid} mixes image sizes {sorted(shapes)}; it is not one volume"
        )
    for f, ds in items:
        iop = _floats(ds, "ImageOrientationPatient", 6, f)
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
    ps = _floats(first, "PixelSpacing", 2, first_path)
    for f, ds in items:
        if np.abs(_floats(ds, "PixelSpacing", 2, f) - ps).max() > 1e-4:
            raise DicomSeriesError(f"{where}: series {uid} mixes pixel spacings ({f} differs)")

    pos = np.array([_floats(ds, "ImagePositionPatient", 3, f) for f, ds in items])
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
    stack = []
    rescales = []
    modality = str(first.get("Modality", "") or "") or None
    for f, hdr in items:
        ds, px = _pixels(f, hdr)
        if px.ndim != 2 or px.shape != (int(ds.Rows), int(ds.Columns)):
            raise InputFileError(f"{f}: unexpected pixel array shape {px.shape}")
        rescales.append(_rescale(ds))
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

    dx, dy = float(ps[1]), float(ps[0])  # along i (row direction r), along j (column direction c)
    if irregular:
        vol, aff_lps, note = _resample_stack(vol, r, c, n, dx, dy, pos, d)
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


def _resample_stack(vol, r, c, n, dx, dy, pos, d):
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
