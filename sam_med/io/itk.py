"""NRRD / MetaImage (MHA/MHD) via SimpleITK. ITK world is LPS; converted here."""

from __future__ import annotations

import os

import numpy as np

from ..errors import InputFileError, OutputError
from ..volume import Volume, affine_from_geometry, lps_to_ras, ras_to_lps, split_affine
from .nifti import guess_slice_axis


def sitk_to_volume_parts(img):
    """(array (X,Y,Z), voxel->RAS affine) of a 3D SimpleITK image."""
    import SimpleITK as sitk

    arr = sitk.GetArrayFromImage(img).transpose(2, 1, 0)  # (z,y,x) -> (x,y,z)
    aff = lps_to_ras(affine_from_geometry(img.GetSpacing(), np.array(img.GetDirection()).reshape(3, 3),
                                          img.GetOrigin()))
    return np.ascontiguousarray(arr), aff


def volume_to_sitk(array: np.ndarray, affine: np.ndarray):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(array).transpose(2, 1, 0)))
    spacing, direction, origin = split_affine(ras_to_lps(affine))
    img.SetSpacing([float(s) for s in spacing])
    img.SetDirection([float(d) for d in direction.reshape(-1)])
    img.SetOrigin([float(o) for o in origin])
    return img


def read_itk(path, fmt: str = "itk") -> Volume:
    import SimpleITK as sitk

    from .guards import require_regular
    from .itk_header import check_metaimage, check_nrrd

    path = require_regular(os.fspath(path))
    if fmt == "nrrd":  # the header's claim against the data and the budget, before ITK allocates
        check_nrrd(path)
    elif fmt == "metaimage":
        check_metaimage(path)
    try:
        io_name = {"nrrd": "NrrdImageIO", "metaimage": "MetaImageIO"}.get(fmt)
        img = sitk.ReadImage(path, imageIO=io_name) if io_name else sitk.ReadImage(path)  # by content, not name
    except RuntimeError as exc:
        msg = str(exc).strip().splitlines()
        raise InputFileError(f"{path}: cannot read {fmt} ({msg[-1] if msg else exc})") from exc
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InputFileError(
            f"{path}: {img.GetNumberOfComponentsPerPixel()}-component (vector/RGB) images are not supported"
        )
    if img.GetDimension() != 3:
        raise InputFileError(f"{path}: expected a 3D image, got {img.GetDimension()}D of size {img.GetSize()}")
    arr, aff = sitk_to_volume_parts(img)
    modality = None
    try:
        m = img.GetMetaData("modality") if img.HasMetaDataKey("modality") else None
        if m in ("CT", "MR"):
            modality = m
    except RuntimeError:
        pass
    return Volume(arr, aff, modality=modality, intensity="raw",
                  slice_axis=guess_slice_axis(np.linalg.norm(aff[:3, :3], axis=0)),
                  source=os.path.abspath(path), meta={"format": fmt})


def write_itk(array: np.ndarray, affine: np.ndarray, path: str, compress: bool = True) -> None:
    import SimpleITK as sitk

    img = volume_to_sitk(array, affine)
    try:
        sitk.WriteImage(img, path, useCompression=compress)
    except RuntimeError as exc:
        raise OutputError(f"{path}: cannot write ({str(exc).strip().splitlines()[-1]})") from exc
