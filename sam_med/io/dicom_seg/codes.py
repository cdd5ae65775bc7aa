"""Coded concepts and colours of DICOM SEG segments (SNOMED CT via pydicom, CIELab via highdicom)."""

from __future__ import annotations

import re

import numpy as np

from ...errors import OutputError

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


def segment_color(color):
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
