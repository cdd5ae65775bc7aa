"""Make napari pick the sam-med reader for the scans it reads (napari's public settings).

napari asks which reader to use when several plugins claim a path and the user has no
preference for it; its builtin reader claims folders, ``*.dcm``, ``*.nii(.gz)`` and
``*.nrrd`` too (an identity-affine stack without spacing, orientation or DICOM
references). npe2 has no reader priority, so sam-med (1) sorts first in that dialog
(its display name starts with a capital letter, napari lists names in ``sorted`` order
and checks the first), and (2) once the widget is opened or a scan is read with sam-med,
records napari's own reader preference (``settings.plugins.extension2reader``, what the
dialog's "Remember this choice" writes) for the scan formats and for folders, leaving
every preference the user already has untouched. A folder that holds no DICOM series is
then refused by sam-med and napari offers the other readers.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

PLUGIN = "sam-med"
#: napari reader-preference patterns sam-med takes when the user has none for them
PATTERNS = ("*.nii", "*.nii.gz", "*.nrrd", "*.nhdr", "*.mha", "*.mhd", "*.dcm", "*/")


def prefer_sam_med(settings=None) -> list[str]:
    """Add ``pattern → sam-med`` to napari's reader preferences for each of :data:`PATTERNS`
    the user has no preference for; returns the patterns added (nothing without napari)."""
    try:
        if settings is None:
            from napari.settings import get_settings

            settings = get_settings()
        current = dict(settings.plugins.extension2reader)
    except Exception as exc:  # noqa: BLE001 - napari missing or its settings unreadable: not our call
        log.debug("sam-med: napari reader preferences unavailable: %s", exc)
        return []
    added = [p for p in PATTERNS if p not in current]
    if added:
        settings.plugins.extension2reader = {**current, **{p: PLUGIN for p in added}}
    return added
