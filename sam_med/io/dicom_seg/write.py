"""Writing a label map as a DICOM SEG onto its source series (rules in :mod:`sam_med.io.dicom_seg`)."""

from __future__ import annotations

import os
import warnings

import numpy as np

from ...errors import OutputError
from ...volume import Volume
from .codes import segment_codes, segment_color
from .source import TRACKING_PREFIX, check_source_geometry, source_identity


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

    from ..writers import atomic_path, check_not_input, label_array

    path = os.path.abspath(os.fspath(path))
    if like.dicom is None:
        raise OutputError(
            f"{path}: DICOM SEG output needs a DICOM source series; {like.source or 'the volume'} "
            "was not read from DICOM (write NIfTI or NRRD instead)"
        )
    check_not_input(path, like)
    if os.path.exists(path) and not overwrite:
        raise OutputError(f"{path}: already exists (pass overwrite=True to replace it)")
    from ..atomic import in_output_set

    if not os.path.isdir(os.path.dirname(path)) and not in_output_set():  # a set makes it at commit
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
    check_source_geometry(like, ident.datasets)
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

    from ...provenance import versions

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
            tracking_id=f"{TRACKING_PREFIX}{int(s['id'])}", display_color=segment_color(s.get("color")),
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
