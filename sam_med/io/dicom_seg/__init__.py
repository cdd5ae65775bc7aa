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


from .codes import ANATOMY, LESIONS, segment_codes
from .read import read_dicom_seg, read_dicom_seg_masks
from .source import (LABELMAP_SEG_SOP_CLASS, SEG_SOP_CLASS, TRACKING_PREFIX, SourceIdentity,
                     check_dicom_seg_source, source_identity)
from .write import segments_from_session, write_dicom_seg

__all__ = [
    "write_dicom_seg", "read_dicom_seg", "read_dicom_seg_masks", "segments_from_session",
    "check_dicom_seg_source",
    "segment_codes", "ANATOMY", "LESIONS",
    "source_identity", "SourceIdentity", "SEG_SOP_CLASS", "LABELMAP_SEG_SOP_CLASS", "TRACKING_PREFIX",
]
