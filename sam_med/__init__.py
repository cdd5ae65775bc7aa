"""sam-med: promptable 3D segmentation of CT and MRI with Segment-Anything-style models.

The public face::

    import sam_med
    vol = sam_med.load("scan.nii.gz")                  # DICOM folder, NIfTI, NRRD/MHA, npz
    session = sam_med.Session(vol, sam_med.build_predictor("lite_medsam"))
    obj = session.add_object("liver")
    session.set_box(obj.id, sam_med.Box((41, 25, 0), (105, 86, 29)))   # voxel (i, j, k), inclusive
    session.add_point(obj.id, (70, 60, 12), positive=False)
    sam_med.save_label(session.label_map(), "liver.nii.gz", like=vol)

Names are imported on first use, so ``import sam_med`` stays light.
"""

from __future__ import annotations

from importlib import import_module

from .errors import SamMedError
from .volume import Volume

__version__ = "0.1.0"

_LAZY = {
    "load": ("sam_med.io", "load"),
    "load_label": ("sam_med.io", "load_label"),
    "save_label": ("sam_med.io", "save_label"),
    "save_volume": ("sam_med.io", "save_volume"),
    "write_dicom_seg": ("sam_med.io", "write_dicom_seg"),
    "Session": ("sam_med.session", "Session"),
    "build_predictor": ("sam_med.predictors.factory", "build_predictor"),
    "Box": ("sam_med.prompts", "Box"),
    "KeySliceBox": ("sam_med.prompts", "KeySliceBox"),
    "Point": ("sam_med.prompts", "Point"),
    "ObjectPrompts": ("sam_med.prompts", "ObjectPrompts"),
    "PredictionResult": ("sam_med.predictors.base", "PredictionResult"),
}

__all__ = ["Volume", "SamMedError", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sam_med' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
