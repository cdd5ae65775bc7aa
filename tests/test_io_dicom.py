"""DICOM series reading on real scans, checked against dcm2niix and the TotalSegmentator label map."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from sam_med import io
from sam_med.errors import DicomSeriesError, InputFileError
from sam_med.volume import apply_affine

DCM2NIIX = shutil.which("dcm2niix") or str(Path(sys.executable).with_name("dcm2niix"))


def _dcm2niix(src: Path, out: Path) -> dict[str, nib.Nifti1Image]:
    if not Path(DCM2NIIX).exists():
        pytest.skip("dcm2niix not installed (pip install dcm2niix)")
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([DCM2NIIX, "-z", "n", "-b", "n", "-f", "%s_%p", "-o", str(out), str(src)],
                   check=True, capture_output=True, timeout=60)
    return {p.name: nib.load(p) for p in sorted(out.glob("*.nii"))}


@pytest.fixture(scope="module")
def d2n(data_dir, tmp_path_factory):
    cache: dict = {}

    def get(name):
        if name not in cache:
            cache[name] = _dcm2niix(data_dir / "dicom" / name if "/" not in name else data_dir / name,
                                    tmp_path_factory.mktemp(name.replace("/", "_")))
        return cache[name]

    return get


def _canonical(array, affine):
    img = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(array), affine))
    return np.asanyarray(img.dataobj), img.affine


def assert_same_as_dcm2niix(vol, ref: nib.Nifti1Image, ref_data=None, atol=1e-3):
    """Same voxel grid in world space (after dcm2niix's row flip / axis order) and same values."""
    a, aa = _canonical(vol.array, vol.affine)
    data = ref.get_fdata() if ref_data is None else ref_data
    b, ba = _canonical(data, ref.affine)
    assert a.shape == b.shape
    np.testing.assert_allclose(aa, ba, atol=atol)
    np.testing.assert_array_equal(a, b)


def test_totalseg_ct_dicom_matches_label_map_and_dcm2niix(data_dir, d2n):
    ct = io.load(data_dir / "totalseg/example_ct_dicom")
    assert ct.modality == "CT" and ct.intensity == "HU" and ct.shape == (512, 512, 20)
    assert ct.dicom.series_description == "CT Body 3.0" and len(ct.dicom.file_paths) == 20
    seg_img = nib.load(data_dir / "totalseg/example_seg_dicom.nii.gz")
    # same grid up to axis order/direction: the label NIfTI is LAS (rows flipped), ours LPS
    flipped = ct.affine @ np.array([[1, 0, 0, 0], [0, -1, 0, 511], [0, 0, 1, 0], [0, 0, 0, 1]])
    np.testing.assert_allclose(flipped, seg_img.affine, atol=1e-3)
    seg = io.load_label(data_dir / "totalseg/example_seg_dicom.nii.gz", like=ct)
    assert seg.same_grid(ct) and seg.meta["reoriented_from"] == "LAS"
    np.testing.assert_array_equal(seg.array, np.asarray(seg_img.dataobj)[:, ::-1, :])
    liver = ct.array[seg.array == 5]
    assert liver.size == 366708
    assert 40 < np.median(liver) < 200  # enhanced liver parenchyma HU
    assert np.mean((liver > 0) & (liver < 250)) > 0.95
    air = ct.array[0:5, 0:5, :]
    assert air.max() < -900  # corners of the field of view are air
    ref = d2n("totalseg/example_ct_dicom")
    assert_same_as_dcm2niix(ct, next(iter(ref.values())))


def test_siemens_sagittal_matches_dcm2niix(data_dir, d2n):
    vol = io.load(data_dir / "dicom/siemens_mr_sagittal")
    assert vol.modality == "MR" and vol.intensity == "raw" and vol.axcodes == ("P", "I", "R")
    assert vol.meta["skipped_non_dicom_files"] == 1  # dcm2niix_reference.json
    ref = d2n("siemens_mr_sagittal")
    assert_same_as_dcm2niix(vol, ref["3_t1_fl2d_sag.nii"])


def test_slice_order_is_geometric_not_file_order(data_dir, tmp_path):
    # files listed in reverse order -> same volume
    files = sorted((data_dir / "dicom/siemens_mr_sagittal").glob("*.dcm"))
    a = io.load([str(f) for f in files])
    b = io.load([str(f) for f in files[::-1]])
    assert a.same_grid(b) and np.array_equal(a.array, b.array)
    d = np.array([apply_affine(a.affine, [0, 0, k]) for k in range(a.shape[2])])
    assert np.all(np.diff(d[:, 0]) > 0)  # k runs along the slice normal (R for this sagittal)


def test_4d_refused_and_time_points_match_dcm2niix(data_dir):
    folder = data_dir / "dicom/ge_mr_4d"
    with pytest.raises(DicomSeriesError, match=r"15 slice positions x 10 time points.*time_index=0\.\.9"):
        io.load(folder)
    ref = nib.load(folder / "dcm2niix_reference.nii")
    refdata = np.asanyarray(ref.dataobj)
    assert refdata.shape == (64, 64, 15, 10)
    ref3 = nib.Nifti1Image(refdata[..., 0], ref.affine)
    for t in (0, 4, 9):
        vol = io.load(folder, time_index=t)
        assert vol.meta["time_index"] == t
        assert_same_as_dcm2niix(vol, ref3, ref_data=refdata[..., t])
    with pytest.raises(DicomSeriesError, match="out of range"):
        io.load(folder, time_index=10)


def test_gantry_tilt_refused_then_resampled_like_dcm2niix(data_dir, d2n):
    folder = data_dir / "dicom/ge_ct_gantry_tilt"
    with pytest.raises(DicomSeriesError) as exc:
        io.load(folder)
    msg = str(exc.value)
    assert "tilt of 18.5 deg" in msg and "resample=True" in msg and "--resample" in msg
    assert "uneven slice spacing" in msg and "4.00 mm" in msg and "7.00 mm" in msg
    vol = io.load(folder, resample=True)
    assert "resampled" in vol.meta and vol.dicom.sop_instance_uids == ()
    ref = d2n("ge_ct_gantry_tilt")["2__Tilt_Eq_1.nii"]  # dcm2niix's tilt-corrected, equalised output
    r = ref.get_fdata()
    ii, jj, kk = np.meshgrid(np.arange(0, vol.shape[0], 8), np.arange(0, vol.shape[1], 8),
                             np.arange(vol.shape[2]), indexing="ij")
    pts = np.stack([ii, jj, kk], -1).reshape(-1, 3)
    rv = apply_affine(np.linalg.inv(ref.affine), apply_affine(vol.affine, pts))
    inside = np.all((rv >= 0) & (rv <= np.array(r.shape) - 1), axis=1)
    assert inside.mean() > 0.95  # same world extent
    a = vol.array[tuple(pts[inside].T)].astype(float)
    b = map_coordinates(r, rv[inside].T, order=1)
    body = (a > -1000) & (b > -1000)
    assert body.sum() > 10000
    assert np.median(np.abs(a - b)[body]) < 10  # HU, both linear interpolations
    assert np.corrcoef(a[body], b[body])[0, 1] > 0.99


def test_uneven_gaps_refused_then_resampled(data_dir, d2n):
    folder = data_dir / "dicom/pydicom_ct2"
    with pytest.raises(DicomSeriesError, match=r"gaps 2x 1.25 mm, 1x 202.50 mm.*resample=True"):
        io.load(folder)
    vol = io.load(folder, resample=True)
    assert vol.spacing[2] == pytest.approx(1.25) and vol.shape == (16, 16, 165)
    ref = d2n("pydicom_ct2")["2_1.1_Routine_Brain.nii"]  # dcm2niix's un-equalised stack: same slices 0 and 3
    refd = ref.get_fdata()
    # first and last slices sit at acquired positions: identical values and world positions
    np.testing.assert_array_equal(vol.array[:, :, 0], refd[:, ::-1, 0])
    np.testing.assert_array_equal(vol.array[:, :, -1], refd[:, ::-1, -1])
    np.testing.assert_allclose(vol.voxel_to_world([0, 0, 0]), apply_affine(ref.affine, [0, 15, 0]), atol=1e-3)


def test_several_series_listed_and_selectable(data_dir, d2n, tmp_path):
    with pytest.raises(DicomSeriesError) as exc:
        io.load(data_dir / "dicom/seg")
    msg = str(exc.value)
    assert "6 DICOM series" in msg and "series_uid=" in msg and "--series" in msg
    infos = io.list_dicom_series(data_dir / "dicom/seg")
    assert len(infos) == 6 and sum(i.modality == "SEG" for i in infos) == 5
    ct_uid = next(i.uid for i in infos if i.modality == "CT")
    for i in infos:
        assert i.uid in msg
    vol = io.load(data_dir / "dicom/seg", series_uid=ct_uid)
    assert_same_as_dcm2niix(vol, d2n("seg")["1_.nii"])
    seg_uid = next(i.uid for i in infos if i.modality == "SEG")
    with pytest.raises(DicomSeriesError, match="DICOM SEG object"):
        io.load(data_dir / "dicom/seg", series_uid=seg_uid)


def test_two_real_series_in_one_folder(data_dir, tmp_path):
    for name in ("siemens_mr_sagittal", "pydicom_ct2"):
        for f in (data_dir / "dicom" / name).iterdir():
            if f.suffix != ".json":
                shutil.copy(f, tmp_path / f"{name}_{f.name}")
    infos = io.list_dicom_series(tmp_path)
    assert sorted((i.modality, i.n_slices) for i in infos) == [("CT", 4), ("MR", 35)]
    with pytest.raises(DicomSeriesError, match="2 DICOM series") as exc:
        io.load(tmp_path)
    assert "t1_fl2d_sag" in str(exc.value) and "Routine Brain" in str(exc.value)
    mr_uid = next(i.uid for i in infos if i.modality == "MR")
    assert io.load(tmp_path, series_uid=mr_uid).shape == (256, 256, 35)
    with pytest.raises(DicomSeriesError, match="no series with UID 1.2.3"):
        io.load(tmp_path, series_uid="1.2.3")


def test_truncated_dicom_names_the_file(data_dir, tmp_path):
    src = sorted((data_dir / "dicom/siemens_mr_sagittal").glob("*.dcm"))
    for f in src[:3]:
        shutil.copy(f, tmp_path / f.name)
    bad = tmp_path / src[1].name
    bad.write_bytes(bad.read_bytes()[:-5000])  # pixel data cut short
    with pytest.raises(InputFileError, match=src[1].name):
        io.load(tmp_path)
    worse = tmp_path / src[2].name
    worse.write_bytes(worse.read_bytes()[:300])  # header cut short
    with pytest.raises(InputFileError, match=src[2].name):
        io.load(tmp_path)


def test_empty_folder_and_missing_path(tmp_path):
    with pytest.raises(InputFileError, match="no DICOM files found.*empty"):
        io.load(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputFileError, match="1 other files skipped"):
        io.load(tmp_path)
    with pytest.raises(InputFileError, match="no such file"):
        io.load(tmp_path / "nope")
