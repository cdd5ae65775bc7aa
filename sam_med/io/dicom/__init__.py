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

from .series import SeriesInfo, list_dicom_series, series_key
from .tags import SEG_SOP_CLASS
from .volume import load_dicom

__all__ = ["SEG_SOP_CLASS", "SeriesInfo", "list_dicom_series", "load_dicom", "series_key"]
