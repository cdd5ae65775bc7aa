"""Reading a DICOM SEG back onto a volume's grid (rules in :mod:`sam_med.io.dicom_seg`)."""

from __future__ import annotations

import os

import numpy as np

from ...errors import InputFileError
from ...volume import Volume, ras_to_lps
from .source import LABELMAP_SEG_SOP_CLASS, SEG_SOP_CLASS, TRACKING_PREFIX, source_identity


def _seq_item(group, name):
    seq = group.get(name) if group is not None else None
    return seq[0] if seq else None


def _frame_attr(shared, per_frame, seq_name, attr):
    for g in (per_frame, shared):
        item = _seq_item(g, seq_name)
        if item is not None and attr in item:
            return item.get(attr)
    return None


def _segment_infos(ds) -> list[dict]:
    """One dict per item of the SEG's SegmentSequence: number, label, codes, algorithm, tracking."""
    segments = []
    for item in ds.get("SegmentSequence", []):
        num = int(item.SegmentNumber)
        info = {"number": num, "label": str(item.get("SegmentLabel", "") or f"segment {num}"),
                "algorithm_type": str(item.get("SegmentAlgorithmType", "") or "") or None}
        cat = _seq_item(item, "SegmentedPropertyCategoryCodeSequence")
        typ = _seq_item(item, "SegmentedPropertyTypeCodeSequence")
        if cat is not None:
            info["category"] = {"code": str(cat.CodeValue), "scheme": str(cat.CodingSchemeDesignator),
                                "meaning": str(cat.CodeMeaning)}
        if typ is not None:
            info["type"] = {"code": str(typ.CodeValue), "scheme": str(typ.CodingSchemeDesignator),
                            "meaning": str(typ.CodeMeaning)}
            mod = _seq_item(typ, "SegmentedPropertyTypeModifierCodeSequence")
            if mod is not None:
                info["type_modifier"] = str(mod.CodeMeaning)
        alg = _seq_item(item, "SegmentationAlgorithmIdentificationSequence")
        if alg is not None:
            info["algorithm_name"] = str(alg.get("AlgorithmName", ""))
            info["algorithm_version"] = str(alg.get("AlgorithmVersion", ""))
        tid = str(item.get("TrackingID", "") or "")
        if tid:
            info["tracking_id"] = tid
            if tid.startswith(TRACKING_PREFIX) and tid[len(TRACKING_PREFIX):].strip().isdigit():
                info["label_value"] = int(tid[len(TRACKING_PREFIX):])
        segments.append(info)
    return segments


def _read_seg_frames(path, like: Volume, allow_other_series: bool):
    """(segments, masks) with masks {number: bool (X, Y, Z)}."""
    import pydicom

    path = os.path.abspath(os.fspath(path))
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:
        raise InputFileError(f"{path}: not a readable DICOM file ({type(exc).__name__}: {exc})") from exc
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class == LABELMAP_SEG_SOP_CLASS:
        raise InputFileError(f"{path}: Label Map Segmentation Storage is not supported; only "
                             "BINARY and FRACTIONAL Segmentation Storage objects can be read")
    if sop_class != SEG_SOP_CLASS:
        raise InputFileError(f"{path}: not a DICOM Segmentation object (SOP class {sop_class or 'missing'}, "
                             f"modality {ds.get('Modality', '?')})")
    seg_type = str(ds.get("SegmentationType", "")).upper()
    if seg_type not in ("BINARY", "FRACTIONAL"):
        raise InputFileError(f"{path}: SegmentationType {seg_type or 'missing'} is not supported "
                             "(BINARY and FRACTIONAL are)")
    if like.dicom is None and not allow_other_series:
        raise InputFileError(f"{path}: a DICOM SEG is read onto the DICOM series it references; "
                             f"{like.source or 'the volume'} is not DICOM (pass allow_other_series=True "
                             "to place it by patient coordinates alone)")

    # identity checks
    seg_for = str(ds.get("FrameOfReferenceUID", "") or "")
    like_for = like.dicom.frame_of_reference_uid if like.dicom is not None else None
    ref_series = {str(it.get("SeriesInstanceUID", "")) for it in ds.get("ReferencedSeriesSequence", [])}
    ident = None
    if like.dicom is not None:
        try:
            ident = source_identity(like, error=InputFileError)
        except InputFileError:
            ident = None  # resampled volume: place frames by position only
        like_series = ident.series_instance_uid if ident is not None else like.dicom.series_instance_uid
        if seg_for and like_for and seg_for != like_for:
            raise InputFileError(
                f"{path}: the SEG is in frame of reference {seg_for}, the series "
                f"{like.source} in {like_for}; it belongs to another scan"
            )
        if not allow_other_series and like_series and ref_series and like_series not in ref_series:
            raise InputFileError(
                f"{path}: the SEG references series {', '.join(sorted(ref_series))}, not the loaded "
                f"series {like_series} ({like.source}); pass allow_other_series=True to place it by "
                "position in the shared frame of reference"
            )
    uid_to_k = {u: k for k, u in enumerate(ident.sop_instance_uids)} if ident is not None else {}

    segments = _segment_infos(ds)
    numbers = {s["number"] for s in segments}
    if not segments:
        raise InputFileError(f"{path}: the SEG has no SegmentSequence")

    # pixels
    from ..dicom.volume import check_pixel_claim

    check_pixel_claim(ds, path)  # the frames' claim against the stored bytes and the budget
    try:
        px = ds.pixel_array
    except Exception as exc:
        raise InputFileError(f"{path}: cannot decode the segmentation pixel data ({type(exc).__name__}: "
                             f"{exc})") from exc
    nframes = int(ds.get("NumberOfFrames", 1) or 1)
    rows, cols = int(ds.Rows), int(ds.Columns)
    px = np.asarray(px).reshape(nframes, rows, cols)
    if seg_type == "FRACTIONAL":
        maxv = float(ds.get("MaximumFractionalValue", 255) or 255)
        on = px.astype(np.float32) / maxv >= 0.5
    else:
        on = px.astype(bool)

    # geometry: SEG frames -> like's grid
    aff = ras_to_lps(like.affine)
    inv = np.linalg.inv(aff)
    shared = _seq_item(ds, "SharedFunctionalGroupsSequence")
    per = ds.get("PerFrameFunctionalGroupsSequence", [])
    if len(per) != nframes:
        raise InputFileError(f"{path}: {len(per)} per-frame functional groups for {nframes} frames "
                             "(tiled/dimension-organised SEGs without per-frame positions are not supported)")
    spacing = like.spacing
    masks = {n: np.zeros(like.shape, dtype=bool) for n in sorted(numbers)}
    for f in range(nframes):
        pf = per[f]
        sid = _frame_attr(shared, pf, "SegmentIdentificationSequence", "ReferencedSegmentNumber")
        if sid is None or int(sid) not in masks:
            raise InputFileError(f"{path}: frame {f + 1} refers to segment {sid}, which is not described")
        iop = _frame_attr(shared, pf, "PlaneOrientationSequence", "ImageOrientationPatient")
        ipp = _frame_attr(shared, pf, "PlanePositionSequence", "ImagePositionPatient")
        ps = _frame_attr(shared, pf, "PixelMeasuresSequence", "PixelSpacing")
        src_uid = None
        der = _seq_item(pf, "DerivationImageSequence")
        if der is not None:
            src = _seq_item(der, "SourceImageSequence")
            if src is not None:
                src_uid = str(src.get("ReferencedSOPInstanceUID", "") or "") or None
        k_uid = uid_to_k.get(src_uid) if src_uid else None
        if ipp is None or iop is None:
            if k_uid is None:
                raise InputFileError(f"{path}: frame {f + 1} has no plane position and its source "
                                     "image is not in the loaded series")
            i0 = j0 = 0
            k = k_uid
            if (rows, cols) != (like.shape[1], like.shape[0]):
                raise InputFileError(f"{path}: frame size {rows}x{cols} differs from the series")
        else:
            iop = np.array([float(v) for v in iop])
            r_dir = aff[:3, 0] / spacing[0]
            c_dir = aff[:3, 1] / spacing[1]
            if np.abs(iop[:3] - r_dir).max() > 1e-3 or np.abs(iop[3:] - c_dir).max() > 1e-3:
                raise InputFileError(
                    f"{path}: frame {f + 1} has orientation {np.round(iop, 4).tolist()}, the series' "
                    f"slices {np.round(np.r_[r_dir, c_dir], 4).tolist()}; resampling a SEG is not supported"
                )
            if ps is not None:
                ps = np.array([float(v) for v in ps])
                if np.abs(ps - [spacing[1], spacing[0]]).max() > 1e-3:
                    raise InputFileError(f"{path}: frame pixel spacing {ps.tolist()} differs from the "
                                         f"series' {[float(spacing[1]), float(spacing[0])]}")
            idx = inv[:3, :3] @ np.array([float(v) for v in ipp]) + inv[:3, 3]
            rnd = np.round(idx)
            if np.abs((idx - rnd) * spacing).max() > 1e-2:
                if on[f].any():
                    raise InputFileError(
                        f"{path}: frame {f + 1} (segment {sid}) at {[float(v) for v in ipp]} mm lies between "
                        f"the slices of {like.source} (voxel {np.round(idx, 3).tolist()})"
                    )
                continue
            i0, j0, k = (int(v) for v in rnd)
            if k_uid is not None and k_uid != k:
                raise InputFileError(f"{path}: frame {f + 1} references instance {src_uid} (slice {k_uid}) "
                                     f"but its position is slice {k}")
        fr = on[f].T  # (cols i, rows j)
        ia, ja = max(i0, 0), max(j0, 0)
        ib, jb = min(i0 + cols, like.shape[0]), min(j0 + rows, like.shape[1])
        inside = 0 <= k < like.shape[2] and ia < ib and ja < jb
        part = fr[ia - i0:ib - i0, ja - j0:jb - j0] if inside else fr[:0, :0]
        if int(part.sum()) != int(fr.sum()):
            raise InputFileError(f"{path}: frame {f + 1} (segment {sid}) has voxels outside the grid of "
                                 f"{like.source} (slice {k})")
        if inside:
            masks[int(sid)][ia:ib, ja:jb, k] |= part
    for s in segments:
        s["voxels"] = int(masks[s["number"]].sum())
    return segments, masks


def read_dicom_seg_masks(path, like: Volume, *, allow_other_series: bool = False) -> dict[int, np.ndarray]:
    """Every segment of a DICOM SEG as a bool mask (X, Y, Z) on ``like``'s grid, keyed by
    segment number. Overlaps are kept; FRACTIONAL values are thresholded at 0.5.

    The SEG must share ``like``'s frame of reference and reference its series
    (``allow_other_series=True``: any series in the same frame of reference, placed
    by position); otherwise :class:`InputFileError`.
    """
    return _read_seg_frames(path, like, allow_other_series)[1]


def read_dicom_seg(path, like: Volume, *, allow_other_series: bool = False):
    """A DICOM SEG as ``(label_map, segments)`` on ``like``'s grid.

    ``label_map`` is uint16 (X, Y, Z) holding **segment numbers** (0 = background).
    BINARY segments are used directly; FRACTIONAL segments are thresholded at 0.5
    (``value / MaximumFractionalValue >= 0.5``). Where segments overlap, the higher
    segment number wins; each segment dict says how many voxels it has in total
    (``voxels``) and in the label map (``voxels_in_label_map``). Use
    :func:`read_dicom_seg_masks` for the full overlapping masks.

    ``segments``: ``[{"number", "label", "category", "type", "type_modifier"?,
    "algorithm_type", "algorithm_name"?, "tracking_id"?, "label_value"? (the
    original label value of a SEG written by sam-med), "voxels", ...}]``.
    """
    segments, masks = _read_seg_frames(path, like, allow_other_series)
    out = np.zeros(like.shape, dtype=np.uint16)
    for n in sorted(masks):
        out[masks[n]] = n
    for s in segments:
        s["voxels_in_label_map"] = int((out == s["number"]).sum())
    return out, segments
