"""DICOM Segmentation (SEG) objects: export a label map onto its source series, read one back.

Writer (:func:`write_dicom_seg`, the function the CLI calls)::

    write_dicom_seg(label_map, like, path, segments, *, algorithm, overwrite=True, ...) -> str

* ``label_map`` is (X, Y, Z) like ``like.array`` (index order i = column, j = row,
  k = slice in ``like.dicom`` order); value ``segments[n]["id"]`` marks object n,
  0 is background.
* One BINARY segment per object, numbered 1..N in the order of ``segments``
  (highdicom requires consecutive numbers). The object's label value is kept as
  ``TrackingID = "sam-med label <id>"`` and its name as ``SegmentLabel``.
* Segmented property category/type: SNOMED CT codes for common anatomy and
  lesions (see :data:`ANATOMY`), with a Left/Right type modifier when the name
  says so (``kidney_left``); a generic Tissue/Tissue otherwise.
* Algorithm identification: family "Artificial Intelligence", name = model,
  version = sam-med version, parameters = model + checkpoint sha256.
* Source images are the series' files re-read (headers only) from
  ``like.dicom.file_paths``; the SEG references their SOP instances, frame of
  reference, patient and study. Only non-empty frames are stored.
* Identity repair: anonymised files sometimes carry empty SOP Class/Instance UIDs
  (the file meta still has them) or no Study/Series Instance UID. The SOP UIDs are
  taken from the file meta; missing Study/Series UIDs are replaced by UIDs
  derived deterministically from the frame of reference and instance UIDs (the
  same every time, so a SEG written for such a series is read back onto it), and a
  warning says so. The input files are never modified.
* Written atomically (temporary file + rename); never onto an input file. A
  non-DICOM ``like``, a resampled series (no 1:1 source slice per k) or an empty
  result raise :class:`~sam_med.errors.OutputError` before anything is written.

Readers::

    read_dicom_seg(path, like) -> (label_map uint16 (X, Y, Z), segments)
    read_dicom_seg_masks(path, like) -> {segment number: bool mask (X, Y, Z)}

Frames are placed on ``like``'s grid by their plane position (ImagePositionPatient
in the shared frame of reference), cross-checked against the referenced source
SOP instance when the series has instance UIDs. BINARY segments are used as
stored; FRACTIONAL segments (PROBABILITY or OCCUPANCY) are thresholded at 0.5,
i.e. ``value / MaximumFractionalValue >= 0.5``. In the label map, overlapping
segments are resolved by "the higher segment number wins"; use
:func:`read_dicom_seg_masks` to get every segment's full mask.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import InputFileError, OutputError
from ..volume import Volume, ras_to_lps

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
LABELMAP_SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.7"
TRACKING_PREFIX = "sam-med label "

__all__ = [
    "write_dicom_seg", "read_dicom_seg", "read_dicom_seg_masks", "segments_from_session",
    "check_dicom_seg_source",
    "segment_codes", "ANATOMY",
]

# --------------------------------------------------------------------------- coding
#: normalised name -> pydicom ``codes.SCT`` keyword of the segmented property type
#: (category: Anatomical Structure, or Morphologically Abnormal Structure for lesions).
ANATOMY: dict[str, str] = {
    "liver": "Liver", "spleen": "Spleen", "kidney": "Kidney", "aorta": "Aorta",
    "pancreas": "Pancreas", "gallbladder": "Gallbladder", "gall_bladder": "Gallbladder",
    "stomach": "Stomach", "lung": "Lung", "heart": "Heart", "bladder": "Bladder",
    "urinary_bladder": "Bladder", "prostate": "Prostate", "brain": "Brain",
    "colon": "Colon", "esophagus": "Esophagus", "oesophagus": "Esophagus",
    "duodenum": "Duodenum", "adrenal_gland": "AdrenalGland", "adrenal": "AdrenalGland",
    "inferior_vena_cava": "InferiorVenaCava", "ivc": "InferiorVenaCava",
    "spinal_cord": "SpinalCord", "trachea": "Trachea", "small_bowel": "SmallIntestine",
    "small_intestine": "SmallIntestine", "portal_vein": "PortalVein", "rib": "Rib",
    "vertebra": "Vertebra", "vertebrae": "Vertebra", "humerus": "Humerus", "femur": "Femur",
    "bone": "Bone", "muscle": "Muscle",
}
LESIONS: dict[str, str] = {
    "tumor": "Tumor", "tumour": "Tumor", "lesion": "Lesion", "neoplasm": "Neoplasm",
    "mass": "Mass", "cyst": "Cyst", "nodule": "Nodule",
}
_LEFT = {"left", "l", "lt"}
_RIGHT = {"right", "r", "rt"}
_LEVEL = re.compile(r"^([cltsCLTS]\d{1,2}|\d+)$")  # vertebral levels, rib numbers


def segment_codes(name: str):
    """(category, type, modifier or None) pydicom ``Code`` s for an object name.

    ``"kidney_left"`` -> (Anatomical Structure, Kidney, Left); ``"rib_right_7"`` ->
    (Anatomical Structure, Rib, Right); ``"Tumor"`` -> (Morphologically Abnormal
    Structure, Tumor, None); unknown names -> (Tissue, Tissue, None).
    """
    from pydicom.sr.codedict import codes

    sct = codes.SCT
    tokens = [t for t in re.split(r"[\s_\-./]+", str(name).strip().lower()) if t]
    modifier = None
    if any(t in _LEFT for t in tokens):
        modifier = sct.Left
    elif any(t in _RIGHT for t in tokens):
        modifier = sct.Right
    core = [t for t in tokens if t not in _LEFT | _RIGHT and not _LEVEL.match(t)]
    key = "_".join(core)
    if key in LESIONS:
        return sct.MorphologicallyAbnormalStructure, getattr(sct, LESIONS[key]), modifier
    if key.endswith("s") and key[:-1] in LESIONS:  # "lesions", "tumors"
        return sct.MorphologicallyAbnormalStructure, getattr(sct, LESIONS[key[:-1]]), modifier
    if key in ANATOMY:
        return sct.AnatomicalStructure, getattr(sct, ANATOMY[key]), modifier
    return sct.Tissue, sct.Tissue, None


def _color(color):
    """highdicom CIELabColor from an RGB tuple in 0..1 (floats) or 0..255."""
    if color is None:
        return None
    import highdicom as hd

    rgb = np.asarray(color, dtype=np.float64).reshape(-1)[:3]
    if rgb.size != 3 or not np.all(np.isfinite(rgb)):
        raise OutputError(f"segment colour must be (r, g, b), got {color!r}")
    if rgb.max() <= 1.0:
        rgb = rgb * 255.0
    r, g, b = (int(round(v)) for v in np.clip(rgb, 0, 255))
    return hd.color.CIELabColor.from_rgb(r, g, b)


# --------------------------------------------------------------------------- source identity
@dataclass(frozen=True)
class _Identity:
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


def source_identity(like: Volume, *, error=OutputError) -> _Identity:
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
    return _Identity(dsets, sops, series, study, for_uid, tuple(repaired))


def _check_source_geometry(like: Volume, dsets, error=OutputError) -> None:
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
    _check_source_geometry(like, ident.datasets)


# --------------------------------------------------------------------------- writer
def segments_from_session(session) -> list[dict]:
    """``segments`` for :func:`write_dicom_seg` from a :class:`~sam_med.session.Session`
    (objects with a non-empty mask, in id order)."""
    return [{"id": o.id, "name": o.name, "color": o.color}
            for o in sorted(session.objects.values(), key=lambda o: o.id)
            if o.mask is not None and o.mask.any()]


def write_dicom_seg(label_map, like: Volume, path, segments: list[dict], *, algorithm: dict,
                    overwrite: bool = True, algorithm_type: str = "SEMIAUTOMATIC",
                    series_description: str = "sam-med segmentation",
                    series_number: int | None = None) -> str:
    """Write ``label_map`` (X, Y, Z) as a DICOM SEG referencing ``like``'s DICOM series.

    Parameters
    ----------
    label_map: integer array on ``like``'s grid (or a Volume on it); 0 = background.
    like: the source Volume, loaded from a DICOM series (``like.dicom`` set, not resampled).
    path: output file (conventionally ``.dcm``); written atomically.
    segments: ``[{"id": label value, "name": str, "color": (r, g, b) optional}]``; one
        segment each, numbered 1..N in this order. Every non-zero value of
        ``label_map`` must be listed; listed objects absent from the map are kept as
        segments without frames.
    algorithm: ``{"name": model name, "version": sam-med version (default: installed),
        "checkpoint_sha256": str or None, "parameters": {str: str} optional}``.
    algorithm_type: "SEMIAUTOMATIC" (prompted, the default), "AUTOMATIC" or "MANUAL".

    Returns the absolute path written. Raises :class:`OutputError` (nothing written)
    for a non-DICOM or resampled ``like``, unlisted labels, an empty result or a path
    that is one of the input files.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from .writers import atomic_path, check_not_input, label_array

    path = os.path.abspath(os.fspath(path))
    if like.dicom is None:
        raise OutputError(
            f"{path}: DICOM SEG output needs a DICOM source series; {like.source or 'the volume'} "
            "was not read from DICOM (write NIfTI or NRRD instead)"
        )
    check_not_input(path, like)
    if os.path.exists(path) and not overwrite:
        raise OutputError(f"{path}: already exists (pass overwrite=True to replace it)")
    if not os.path.isdir(os.path.dirname(path)):
        raise OutputError(f"{path}: the output folder {os.path.dirname(path)} does not exist")
    labels = label_array(label_map, like)
    if not segments:
        raise OutputError(f"{path}: no segments given")
    ids = [int(s["id"]) for s in segments]
    if len(set(ids)) != len(ids) or min(ids) < 1:
        raise OutputError(f"{path}: segment ids must be distinct positive label values, got {ids}")
    present = set(np.unique(labels).tolist()) - {0}
    if not present:
        raise OutputError(f"{path}: the label map is empty; there is nothing to export")
    unlisted = sorted(present - set(ids))
    if unlisted:
        raise OutputError(f"{path}: label values {unlisted} in the label map have no segment description")

    ident = source_identity(like)
    _check_source_geometry(like, ident.datasets)
    if ident.repaired:
        warnings.warn(
            f"{like.source}: the source series lacks {', '.join(ident.repaired)}; "
            + ("SOP UIDs taken from the file meta" if {"SOPClassUID", "SOPInstanceUID"} & set(ident.repaired) else "")
            + ("; " if {"SOPClassUID", "SOPInstanceUID"} & set(ident.repaired) and
               {"SeriesInstanceUID", "StudyInstanceUID"} & set(ident.repaired) else "")
            + ("missing study/series UIDs replaced by UIDs derived from the frame of reference "
               "and instance UIDs, so the SEG will not link to a PACS study"
               if {"SeriesInstanceUID", "StudyInstanceUID"} & set(ident.repaired) else ""),
            UserWarning, stacklevel=2,
        )

    from ..session import versions

    name = str(algorithm.get("name") or "").strip()
    if not name:
        raise OutputError(f"{path}: algorithm['name'] (the model name) is required")
    version = str(algorithm.get("version") or versions().get("sam-med", "unknown"))
    params = {"model": name, "checkpoint_sha256": str(algorithm.get("checkpoint_sha256") or "unknown")}
    params.update({str(k): str(v) for k, v in (algorithm.get("parameters") or {}).items()})
    algo = hd.AlgorithmIdentificationSequence(
        name=name[:64], family=codes.DCM.ArtificialIntelligence, version=version[:64],
        source="sam-med", parameters=params,
    )

    descs = []
    number_map = np.zeros(int(labels.max()) + 1, dtype=np.uint16)
    for n, s in enumerate(segments, start=1):
        seg_name = str(s.get("name") or f"object {s['id']}")
        cat, typ, mod = segment_codes(seg_name)
        d = hd.seg.SegmentDescription(
            segment_number=n, segment_label=seg_name[:64], segmented_property_category=cat,
            segmented_property_type=typ, algorithm_type=str(s.get("algorithm_type", algorithm_type)),
            algorithm_identification=algo, tracking_uid=hd.UID(),
            tracking_id=f"{TRACKING_PREFIX}{int(s['id'])}", display_color=_color(s.get("color")),
        )
        if mod is not None:
            d.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
                hd.sr.CodedConcept(mod.value, mod.scheme_designator, mod.meaning)]
        descs.append(d)
        if int(s["id"]) < number_map.size:
            number_map[int(s["id"])] = n
    seg_numbers = number_map[labels]  # (X, Y, Z) segment numbers
    pixels = np.ascontiguousarray(np.transpose(seg_numbers, (2, 1, 0)))  # (frames k, rows j, cols i)
    if len(descs) < 256:
        pixels = pixels.astype(np.uint8)

    src_series_number = like.dicom.series_number
    if series_number is None:
        series_number = (src_series_number or 0) + 1000
    try:
        seg = hd.seg.Segmentation(
            source_images=ident.datasets, pixel_array=pixels, segmentation_type="BINARY",
            segment_descriptions=descs, series_instance_uid=hd.UID(), series_number=int(series_number),
            sop_instance_uid=hd.UID(), instance_number=1, manufacturer="sam-med",
            manufacturer_model_name=name[:64], software_versions=version[:64],
            device_serial_number="none", content_description=series_description[:64],
            content_label="SAM_MED", omit_empty_frames=True,
        )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise OutputError(f"{path}: highdicom could not build the segmentation: {exc}") from exc
    seg.SeriesDescription = series_description[:64]
    with atomic_path(path, overwrite=overwrite) as tmp:
        seg.save_as(tmp, enforce_file_format=True)
    return path


# --------------------------------------------------------------------------- reader
def _seq_item(group, name):
    seq = group.get(name) if group is not None else None
    return seq[0] if seq else None


def _frame_attr(shared, per_frame, seq_name, attr):
    for g in (per_frame, shared):
        item = _seq_item(g, seq_name)
        if item is not None and attr in item:
            return item.get(attr)
    return None


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

    # segments
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
    numbers = {s["number"] for s in segments}
    if not segments:
        raise InputFileError(f"{path}: the SEG has no SegmentSequence")

    # pixels
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
