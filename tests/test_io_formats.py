"""NIfTI / NRRD / MHA / npz reading, round trips, label writing and bad input, on real scans."""

from __future__ import annotations

import gzip
import os
import shutil

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from sam_med import io
from sam_med.errors import GeometryError, InputFileError, OutputError
from sam_med.volume import Volume


def _listing(folder):
    return sorted(os.listdir(folder))


# ------------------------------------------------------------------ readers
def test_nifti_matches_nibabel_and_simpleitk(data_dir):
    path = data_dir / "totalseg/example_mr_sm.nii.gz"
    vol = io.load(path)
    img = nib.load(path)
    assert vol.shape == (117, 91, 20) and vol.axcodes == ("L", "P", "S")
    np.testing.assert_array_equal(vol.array, np.asanyarray(img.dataobj))
    np.testing.assert_allclose(vol.affine, img.affine)
    # independent check through SimpleITK (LPS, (z, y, x) arrays)
    s = sitk.ReadImage(str(path))
    np.testing.assert_array_equal(vol.array, sitk.GetArrayFromImage(s).transpose(2, 1, 0))
    np.testing.assert_allclose(vol.voxel_to_world([3, 5, 7]) * [-1, -1, 1],
                               s.TransformIndexToPhysicalPoint((3, 5, 7)), atol=1e-3)
    assert vol.intensity == "raw" and vol.modality is None and vol.slice_axis == 2


def test_nrrd_matches_simpleitk_and_slice_axis(data_dir):
    vol = io.load(data_dir / "mr_brain/brain1_image.nrrd")
    s = sitk.ReadImage(str(data_dir / "mr_brain/brain1_image.nrrd"))
    np.testing.assert_allclose(vol.spacing, s.GetSpacing())
    np.testing.assert_allclose(vol.voxel_to_world([10, 20, 3]) * [-1, -1, 1],
                               s.TransformIndexToPhysicalPoint((10, 20, 3)), atol=1e-4)
    assert vol.slice_axis == 2  # 6.5 mm slices
    lab = io.load_label(data_dir / "mr_brain/brain1_label.nrrd", like=vol)
    assert lab.intensity == "label" and np.issubdtype(lab.array.dtype, np.integer) and lab.array.max() >= 1


def test_slice_axis_guess_on_anisotropic_nifti(tmp_path):
    aff = np.diag([0.8, 5.0, 0.8, 1.0])
    p = tmp_path / "sag.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), aff), p)
    assert io.load(p).slice_axis == 1
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), np.diag([1.0, 1.1, 1.2, 1.0])), p)
    assert io.load(p).slice_axis == 2


def test_npz_and_hu_nifti_same_grid(data_dir):
    case = io.read_npz(data_dir / "ct_lesion/CT_Lesion_000015_01_01_103-115.npz")
    hu = io.load(data_dir / "ct_lesion/CT_Lesion_000015_01_01_103-115_HU.nii.gz")
    assert case.image.same_grid(hu, atol=1e-3)
    assert case.image.intensity == "windowed" and case.image.modality == "CT"
    assert case.label is not None and case.label.intensity == "label" and case.label.same_grid(hu)
    assert case.boxes is None and set(case.raw) == {"imgs", "gts", "spacing", "direction", "origin"}
    # the npz imgs are the HU volume windowed at about W400/L40 (README): same voxels
    win = np.clip((hu.array.astype(float) - (40 - 200)) / 400 * 255, 0, 255)
    img = case.image.array.astype(float)
    assert np.abs(win - img).mean() < 5
    assert np.corrcoef(win.ravel(), img.ravel())[0, 1] > 0.98
    # a mix-up of axis order (the classic (z,y,x) vs (x,y,z) bug) would not match
    assert np.corrcoef(win[::-1].ravel(), img.ravel())[0, 1] < 0.9
    assert np.corrcoef(win.transpose(1, 0, 2).ravel(), img.ravel())[0, 1] < 0.9
    # and the lesion mask sits on soft-tissue HU values
    assert -100 < np.median(hu.array[case.label.array > 0]) < 200
    # load() of the npz gives the image
    assert io.load(data_dir / "ct_lesion/CT_Lesion_000015_01_01_103-115.npz").same_grid(hu)


def test_format_chosen_by_content_not_name(data_dir, tmp_path):
    odd = tmp_path / "scan.dat"
    shutil.copy(data_dir / "totalseg/example_ct_sm.nii.gz", odd)
    assert io.detect_format(odd) == "nifti"
    assert io.load(odd).shape == (122, 101, 30)
    nrrd_as_nii = tmp_path / "brain.nii.gz"
    shutil.copy(data_dir / "mr_brain/brain1_image.nrrd", nrrd_as_nii)
    assert io.detect_format(nrrd_as_nii) == "nrrd"
    dcm = tmp_path / "slice.img"
    shutil.copy(sorted((data_dir / "dicom/siemens_mr_sagittal").glob("*.dcm"))[0], dcm)
    assert io.detect_format(dcm) == "dicom"
    assert io.load(dcm).shape == (256, 256, 1)


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".nrrd", ".mha", ".npz"])
def test_image_round_trip_exact(data_dir, tmp_path, ext):
    src = io.load(data_dir / "totalseg/example_mr_sm.nii.gz")
    # an oblique affine too: exercise full direction matrices
    theta = np.deg2rad(17)
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    oblique = src.affine.copy()
    oblique[:3, :3] = rot @ src.affine[:3, :3]
    for i, vol in enumerate((src, Volume(src.array, oblique, modality="MR"))):
        out = tmp_path / f"rt{i}{ext}"
        io.save_volume(vol, out)
        back = io.load(out)
        assert back.array.dtype == vol.array.dtype
        np.testing.assert_array_equal(back.array, vol.array)
        # NIfTI stores the affine as float32: exact to float32 precision
        np.testing.assert_allclose(back.affine, vol.affine, atol=1e-4, rtol=1e-6)
        assert back.same_grid(vol)
    assert not [n for n in _listing(tmp_path) if n.startswith(".tmp")]


def test_npz_round_trip_keeps_keys_and_windowed(data_dir, tmp_path):
    case = io.read_npz(data_dir / "ct_lesion/CT_Lesion_000010_01_01_078-090.npz")
    out = tmp_path / "copy.npz"
    io.save_volume(case.image, out)
    back = io.read_npz(out)
    assert back.image.intensity == "windowed" and back.image.modality == "CT"
    np.testing.assert_array_equal(back.image.array, case.image.array)
    np.testing.assert_allclose(back.image.affine, case.image.affine, atol=1e-9)
    with np.load(out) as z, np.load(data_dir / "ct_lesion/CT_Lesion_000010_01_01_078-090.npz") as orig:
        np.testing.assert_array_equal(z["imgs"], orig["imgs"])
        np.testing.assert_allclose(z["spacing"], orig["spacing"])
        np.testing.assert_allclose(z["direction"], orig["direction"], atol=1e-12)
        np.testing.assert_allclose(z["origin"], orig["origin"], atol=1e-9)


def test_save_npz_segs_challenge_order(data_dir, tmp_path):
    npz = data_dir / "ct_lesion/CT_Lesion_000015_01_01_103-115.npz"
    case = io.read_npz(npz)
    out = io.save_npz_segs(case.label.array, tmp_path / "seg.npz", case.image)
    with np.load(out) as z, np.load(npz) as orig:
        assert z["segs"].shape == orig["imgs"].shape  # (D, H, W)
        np.testing.assert_array_equal(z["segs"], orig["gts"])


# ------------------------------------------------------------------ labels
@pytest.mark.parametrize("ext", [".nii.gz", ".nrrd"])
def test_label_written_for_dicom_ct_reloads_on_same_grid(data_dir, tmp_path, ext):
    ct = io.load(data_dir / "totalseg/example_ct_dicom")
    seg = io.load_label(data_dir / "totalseg/example_seg_dicom.nii.gz", like=ct)
    out = io.save_label(seg.array, tmp_path / f"liver{ext}", like=ct)
    back = io.load_label(out, like=ct)
    assert back.same_grid(ct) and "reoriented_from" not in back.meta
    assert back.array.dtype == np.uint8
    np.testing.assert_array_equal(back.array, seg.array)
    # independent reader agrees on the world position of a liver voxel
    s = sitk.ReadImage(out)
    ijk = np.argwhere(seg.array == 5)[0]
    np.testing.assert_allclose(ct.voxel_to_world(ijk) * [-1, -1, 1],
                               s.TransformIndexToPhysicalPoint([int(v) for v in ijk]), atol=1e-3)


def test_label_dtypes_and_validation(data_dir, tmp_path):
    like = io.load(data_dir / "totalseg/example_ct_sm.nii.gz")
    big = np.zeros(like.shape, np.int32)
    big[0, 0, 0] = 300
    assert io.load_label(io.save_label(big, tmp_path / "a.nii.gz", like)).array.dtype == np.uint16
    with pytest.raises(OutputError, match=">= 0"):
        io.save_label(-big, tmp_path / "b.nii.gz", like)
    with pytest.raises(OutputError, match="whole numbers"):
        io.save_label(np.full(like.shape, 0.5), tmp_path / "c.nii.gz", like)
    with pytest.raises(GeometryError, match="does not match"):
        io.save_label(np.zeros((3, 3, 3), np.uint8), tmp_path / "d.nii.gz", like)
    with pytest.raises(OutputError, match="unsupported"):
        io.save_label(big, tmp_path / "e.png", like)
    assert io.save_label(big.astype(bool), tmp_path / "f.mha", like)
    with pytest.raises(OutputError, match="already exists"):
        io.save_label(big, tmp_path / "a.nii.gz", like, overwrite=False)
    assert _listing(tmp_path) == ["a.nii.gz", "f.mha"]


def test_load_label_on_wrong_grid_explains(data_dir):
    ct = io.load(data_dir / "totalseg/example_ct_sm.nii.gz")
    with pytest.raises(GeometryError, match=r"shape \(117, 91, 20\) vs \(122, 101, 30\)"):
        io.load_label(data_dir / "totalseg/example_seg_mr.nii.gz", like=ct)
    seg = io.load_label(data_dir / "totalseg/example_seg.nii.gz", like=ct)
    assert seg.intensity == "label" and np.median(ct.array[seg.array == 5]) > 0


def test_writers_never_overwrite_input(data_dir, tmp_path):
    src = tmp_path / "ct.nii.gz"
    shutil.copy(data_dir / "totalseg/example_ct_sm.nii.gz", src)
    before = src.read_bytes()
    ct = io.load(src)
    with pytest.raises(OutputError, match="refusing to overwrite the input"):
        io.save_label(np.zeros(ct.shape, np.uint8), src, like=ct)
    with pytest.raises(OutputError, match="refusing to overwrite the input"):
        io.save_volume(ct, src)
    assert src.read_bytes() == before
    dcm_dir = tmp_path / "dcm"
    shutil.copytree(data_dir / "dicom/pydicom_ct2", dcm_dir)
    vol = io.load(dcm_dir, resample=True)
    target = dcm_dir / "17106"
    with pytest.raises(OutputError, match="refusing"):
        io.save_label(np.zeros(vol.shape, np.uint8), str(target), like=vol)


def test_failed_write_leaves_nothing(data_dir, tmp_path, monkeypatch):
    ct = io.load(data_dir / "totalseg/example_ct_sm.nii.gz")

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(nib, "save", boom)
    with pytest.raises(RuntimeError):
        io.save_label(np.zeros(ct.shape, np.uint8), tmp_path / "x.nii.gz", like=ct)
    assert _listing(tmp_path) == []
    with pytest.raises(OutputError, match="does not exist"):
        io.save_label(np.zeros(ct.shape, np.uint8), tmp_path / "no" / "x.nii.gz", like=ct)


# ------------------------------------------------------------------ bad input
def test_bad_inputs_documented_errors(data_dir, tmp_path):
    txt = tmp_path / "fake.nii.gz"
    txt.write_text("this is not an image\n")
    with pytest.raises(InputFileError, match=r"fake.nii.gz: not a recognised image format.*\.nii\.gz"):
        io.load(txt)
    gz = tmp_path / "text.nii.gz"
    with gzip.open(gz, "wb") as fh:
        fh.write(b"hello" * 100)
    with pytest.raises(InputFileError, match="not a NIfTI header"):
        io.load(gz)
    trunc = tmp_path / "trunc.nii.gz"
    trunc.write_bytes((data_dir / "totalseg/example_ct_sm.nii.gz").read_bytes()[:5000])
    with pytest.raises(InputFileError, match="trunc.nii.gz"):
        io.load(trunc)
    four = tmp_path / "four.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3, 5), np.int16), np.eye(4)), four)
    with pytest.raises(InputFileError, match=r"4D NIfTI with 5 volumes.*time_index=0\.\.4"):
        io.load(four)
    assert io.load(four, time_index=2).shape == (4, 4, 3)
    empty = tmp_path / "empty.nrrd"
    empty.write_bytes(b"")
    with pytest.raises(InputFileError, match="empty"):
        io.load(empty)
    with pytest.raises(InputFileError, match="no such file"):
        io.load(tmp_path / "missing.nii.gz")
    bad_npz = tmp_path / "nokeys.npz"
    np.savez(bad_npz, foo=np.zeros(3))
    with pytest.raises(InputFileError, match="no 'imgs' key"):
        io.read_npz(bad_npz)
    assert sorted(os.listdir(tmp_path)) == ["empty.nrrd", "fake.nii.gz", "four.nii.gz", "nokeys.npz",
                                            "text.nii.gz", "trunc.nii.gz"]


def test_sample_path():
    p = io.sample_path("example_ct_sm.nii.gz")
    assert os.path.isfile(p) and io.load(p).shape == (122, 101, 30)
    assert os.path.isfile(io.sample_path("labels.json"))
    with pytest.raises(InputFileError, match="available"):
        io.sample_path("nope.nii.gz")
