"""DICOM SEG export / import on real series (../shared/data)."""

from __future__ import annotations

import glob
import os
import shutil
import warnings

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
hd = pytest.importorskip("highdicom")

from sam_med import io  # noqa: E402
from sam_med.errors import InputFileError, OutputError  # noqa: E402
from sam_med.io.dicom_seg import (  # noqa: E402
    check_dicom_seg_source, read_dicom_seg, read_dicom_seg_masks, segment_codes, source_identity, write_dicom_seg,
)
from sam_med.volume import ras_to_lps  # noqa: E402

# label value -> name in example_seg_dicom.nii.gz (TotalSegmentator)
OBJECTS = {5: "liver", 1: "spleen", 52: "aorta", 8: "adrenal_gland_right", 100: "rib_left_9",
           32: "vertebrae_T12"}
ALGO = {"name": "medsam2-test", "checkpoint_sha256": "ab" * 32}


@pytest.fixture(scope="module")
def ct(data_dir):
    pytest.importorskip("pylibjpeg")
    return io.load(data_dir / "totalseg" / "example_ct_dicom")


@pytest.fixture(scope="module")
def result(ct, data_dir):
    lab = io.load_label(data_dir / "totalseg" / "example_seg_dicom.nii.gz", like=ct).array
    return np.where(np.isin(lab, list(OBJECTS)), lab, 0).astype(np.uint8)


@pytest.fixture(scope="module")
def exported(ct, result, tmp_path_factory):
    out = tmp_path_factory.mktemp("seg") / "result.dcm"
    segs = [{"id": k, "name": n, "color": (1.0, 0.5, 0.0)} for k, n in OBJECTS.items()]
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        path = write_dicom_seg(result, ct, out, segs, algorithm=ALGO)
    return path, segs, [str(x.message) for x in w]


def _frame_pos(pf):
    return np.array([float(v) for v in pf.PlanePositionSequence[0].ImagePositionPatient])


# ---------------------------------------------------------------- export on the TotalSegmentator series
def test_export_roundtrip_highdicom(ct, result, exported):
    path, segs, _ = exported
    seg = hd.seg.segread(path)
    assert seg.SegmentationType == "BINARY"
    assert seg.get_segment_numbers() == list(range(1, len(segs) + 1))
    ident = source_identity(ct)
    # (k, rows, cols, segments) in the source instances' order == our (X, Y, Z) masks transposed
    px = seg.get_pixels_by_source_instance(ident.sop_instance_uids, assert_missing_frames_are_empty=True)
    assert px.shape == (ct.shape[2], ct.shape[1], ct.shape[0], len(segs))
    for n, s in enumerate(segs, start=1):
        ours = result == s["id"]
        assert ours.any()
        np.testing.assert_array_equal(px[..., n - 1].transpose(2, 1, 0).astype(bool), ours)
        d = seg.get_segment_description(n)
        assert d.segment_label == s["name"]
        assert d.TrackingID == f"sam-med label {s['id']}"


def test_export_frames_on_source_positions(ct, result, exported):
    """Every stored frame lies at the position of, and references, the source slice it was cut from."""
    path, segs, _ = exported
    ds = pydicom.dcmread(path)
    ident = source_identity(ct)
    aff = ras_to_lps(ct.affine)
    n_nonempty = sum(int((result[:, :, k] == s["id"]).any()) for s in segs for k in range(ct.shape[2]))
    assert int(ds.NumberOfFrames) == n_nonempty  # empty frames omitted
    px = ds.pixel_array.reshape(int(ds.NumberOfFrames), ds.Rows, ds.Columns)
    for f, pf in enumerate(ds.PerFrameFunctionalGroupsSequence):
        uid = pf.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        k = ident.sop_instance_uids.index(uid)
        np.testing.assert_allclose(_frame_pos(pf), aff[:3, 3] + k * aff[:3, 2], atol=1e-3)
        src = pydicom.dcmread(ct.dicom.file_paths[k], stop_before_pixels=True)
        np.testing.assert_allclose(_frame_pos(pf), [float(v) for v in src.ImagePositionPatient], atol=1e-3)
        n = int(pf.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        np.testing.assert_array_equal(px[f].astype(bool), (result[:, :, k] == segs[n - 1]["id"]).T)


def test_export_roundtrip_our_reader(ct, result, exported):
    path, segs, _ = exported
    masks = read_dicom_seg_masks(path, ct)
    lm, info = read_dicom_seg(path, ct)
    assert lm.dtype == np.uint16 and lm.shape == ct.shape
    for n, s in enumerate(segs, start=1):
        np.testing.assert_array_equal(masks[n], result == s["id"])
        np.testing.assert_array_equal(lm == n, result == s["id"])
        assert info[n - 1]["label"] == s["name"] and info[n - 1]["label_value"] == s["id"]
        assert info[n - 1]["voxels"] == int((result == s["id"]).sum())
    # the original label values come back through label_value
    back = np.zeros_like(result)
    for s in info:
        back[lm == s["number"]] = s["label_value"]
    np.testing.assert_array_equal(back, result)


def test_export_required_attributes(ct, exported):
    """Re-read the file as written (DICOM file format) and check the Segmentation IOD's Type 1 attributes."""
    path, segs, warns = exported
    with open(path, "rb") as fh:
        assert fh.read(132)[128:] == b"DICM"
    ds = pydicom.dcmread(path, force=False)
    assert ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    for key in ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID",
                "FrameOfReferenceUID", "Modality", "SegmentationType", "ImageType", "ContentLabel",
                "DimensionOrganizationSequence", "DimensionIndexSequence", "Rows", "Columns",
                "BitsAllocated", "NumberOfFrames", "SharedFunctionalGroupsSequence",
                "PerFrameFunctionalGroupsSequence", "ReferencedSeriesSequence", "SegmentSequence"):
        assert key in ds and ds[key].value not in (None, "", []), key
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and ds.Modality == "SEG"
    assert ds.BitsAllocated == 1 and ds.SegmentationType == "BINARY"
    assert ds.FrameOfReferenceUID == ct.dicom.frame_of_reference_uid
    ident = source_identity(ct)
    assert ds.StudyInstanceUID == ident.study_instance_uid
    assert ds.SeriesInstanceUID != ident.series_instance_uid  # a new series
    ref = ds.ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == ident.series_instance_uid
    assert {r.ReferencedSOPInstanceUID for r in ref.ReferencedInstanceSequence} == set(ident.sop_instance_uids)
    # the SOP instance UIDs come from the source files' file meta (the dataset's are blank)
    fm = {pydicom.dcmread(f, stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID
          for f in ct.dicom.file_paths}
    assert set(ident.sop_instance_uids) == fm
    assert any("SeriesInstanceUID" in w for w in warns)
    for item, s in zip(ds.SegmentSequence, segs):
        for key in ("SegmentNumber", "SegmentLabel", "SegmentAlgorithmType",
                    "SegmentedPropertyCategoryCodeSequence", "SegmentedPropertyTypeCodeSequence"):
            assert key in item and item[key].value not in (None, ""), key
        assert item.SegmentAlgorithmType == "SEMIAUTOMATIC"
        alg = item.SegmentationAlgorithmIdentificationSequence[0]
        assert alg.AlgorithmName == ALGO["name"]
        assert alg.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
        params = str(alg.AlgorithmParameters)
        assert ALGO["checkpoint_sha256"] in params and ALGO["name"] in params
        assert "RecommendedDisplayCIELabValue" in item
    liver = ds.SegmentSequence[0]
    assert liver.SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"  # SCT Liver
    adrenal = ds.SegmentSequence[3].SegmentedPropertyTypeCodeSequence[0]
    assert adrenal.CodeMeaning == "Adrenal gland"
    assert adrenal.SegmentedPropertyTypeModifierCodeSequence[0].CodeMeaning == "Right"
    for pf in ds.PerFrameFunctionalGroupsSequence:
        assert "PlanePositionSequence" in pf and "SegmentIdentificationSequence" in pf
        assert "DerivationImageSequence" in pf and "FrameContentSequence" in pf
    # highdicom accepts it as a Segmentation
    hd.seg.Segmentation.from_dataset(ds)


def test_export_is_deterministic_in_identity(ct, result, tmp_path):
    """Derived series/study UIDs for an anonymised series are the same on every export."""
    a = source_identity(ct)
    b = source_identity(ct)
    assert a.series_instance_uid == b.series_instance_uid and a.study_instance_uid == b.study_instance_uid
    assert a.series_instance_uid.startswith("2.25.")


def test_segment_codes():
    cat, typ, mod = segment_codes("kidney_left")
    assert typ.meaning == "Kidney" and mod.meaning == "Left" and cat.meaning == "Anatomical Structure"
    assert segment_codes("Liver")[1].value == "10200004"
    assert segment_codes("Right Kidney")[2].meaning == "Right"
    assert segment_codes("tumour")[0].meaning == "Morphologically Abnormal Structure"
    assert segment_codes("lesions")[1].meaning == "Lesion"
    assert segment_codes("urinary bladder")[1].meaning == "Bladder"
    assert segment_codes("something odd")[1].meaning == "Tissue"
    assert segment_codes("vertebrae_T12")[1].meaning == "Vertebra"


# ---------------------------------------------------------------- refusals
def test_non_dicom_source_refused(data_dir, tmp_path):
    vol = io.load(data_dir / "totalseg" / "example_ct_sm.nii.gz")
    lab = io.load_label(data_dir / "totalseg" / "example_seg.nii.gz", like=vol)
    out = tmp_path / "x.dcm"
    with pytest.raises(OutputError, match="not read from DICOM"):
        write_dicom_seg(lab.array, vol, out, [{"id": 5, "name": "liver"}], algorithm=ALGO)
    assert os.listdir(tmp_path) == []
    with pytest.raises(OutputError, match="not read from DICOM"):
        check_dicom_seg_source(vol)


def test_bad_requests_write_nothing(ct, result, tmp_path):
    out = tmp_path / "x.dcm"
    with pytest.raises(OutputError, match="no segment description"):
        write_dicom_seg(result, ct, out, [{"id": 5, "name": "liver"}], algorithm=ALGO)
    with pytest.raises(OutputError, match="empty"):
        write_dicom_seg(np.zeros(ct.shape, np.uint8), ct, out, [{"id": 5, "name": "liver"}], algorithm=ALGO)
    with pytest.raises(OutputError, match="input image"):
        write_dicom_seg(result, ct, ct.dicom.file_paths[0], [{"id": 5, "name": "liver"}], algorithm=ALGO)
    assert os.listdir(tmp_path) == []


def test_overwrite_false_and_atomic(ct, result, tmp_path):
    out = tmp_path / "x.dcm"
    out.write_bytes(b"keep")
    liver = np.where(result == 5, 5, 0)
    with pytest.raises(OutputError, match="already exists"):
        write_dicom_seg(liver, ct, out, [{"id": 5, "name": "liver"}], algorithm=ALGO, overwrite=False)
    assert out.read_bytes() == b"keep"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_dicom_seg(liver, ct, out, [{"id": 5, "name": "liver"}], algorithm=ALGO)
    assert sorted(os.listdir(tmp_path)) == ["x.dcm"]  # no temp file left
    np.testing.assert_array_equal(read_dicom_seg(out, ct)[0] == 1, result == 5)


def test_listed_object_without_voxels_kept(ct, result, tmp_path):
    """An object hidden by the overlap rule stays a (frameless) segment."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = write_dicom_seg(np.where(result == 5, 5, 0), ct, tmp_path / "x.dcm",
                            [{"id": 5, "name": "liver"}, {"id": 7, "name": "pancreas"}], algorithm=ALGO)
    lm, segs = read_dicom_seg(p, ct)
    assert [(s["number"], s["label"], s["voxels"]) for s in segs][1] == (2, "pancreas", 0)
    assert hd.seg.segread(p).get_segment_numbers() == [1, 2]


def test_resampled_series_refused(data_dir, tmp_path):
    vol = io.load(data_dir / "dicom" / "pydicom_ct2", resample=True)
    with pytest.raises(OutputError, match="resampled"):
        check_dicom_seg_source(vol)
    with pytest.raises(OutputError, match="resampled"):
        write_dicom_seg(np.ones(vol.shape, np.uint8), vol, tmp_path / "x.dcm",
                        [{"id": 1, "name": "x"}], algorithm=ALGO)
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- reading highdicom's test SEGs
SEG_DIR = "dicom/seg"


@pytest.fixture(scope="module")
def ct2(data_dir):
    # the series has a 202 mm gap between its first and other slices: regular only when resampled
    return io.load(data_dir / "dicom" / "pydicom_ct2", resample=True)


@pytest.fixture(scope="module")
def ct2_files(data_dir):
    files = sorted(glob.glob(str(data_dir / "dicom" / "pydicom_ct2" / "*")))
    uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files]
    return files, uids


def _reference(path, uids, fractional_threshold=0.5):
    """highdicom's pixels per source instance, (instances, rows, cols, segments) as bool."""
    seg = hd.seg.segread(path)
    px = seg.get_pixels_by_source_instance(uids, rescale_fractional=True, skip_overlap_checks=True,
                                           dtype=np.float32)
    return px >= fractional_threshold if str(seg.SegmentationType.value if hasattr(seg.SegmentationType, "value") else seg.SegmentationType) == "FRACTIONAL" else px.astype(bool)


@pytest.mark.parametrize("name", ["seg_image_ct_binary.dcm", "seg_image_ct_binary_fractional.dcm",
                                  "seg_image_ct_true_fractional.dcm", "seg_image_ct_binary_overlap.dcm"])
def test_read_highdicom_segs_on_resampled_series(name, data_dir, ct2, ct2_files):
    """The resampled grid has no instance UIDs: frames are placed by plane position alone."""
    path = data_dir / SEG_DIR / name
    files, uids = ct2_files
    ref = _reference(path, uids)
    aff = ras_to_lps(ct2.affine)
    ks = []
    for f in files:  # slice of the resampled grid holding each source instance
        ipp = np.array([float(v) for v in pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient])
        idx = np.linalg.solve(aff[:3, :3], ipp - aff[:3, 3])
        assert np.allclose(idx, np.round(idx), atol=1e-3)
        ks.append(int(round(idx[2])))
    masks = read_dicom_seg_masks(path, ct2)
    assert sorted(masks) == list(range(1, ref.shape[-1] + 1))
    for n, m in masks.items():
        expect = np.zeros(ct2.shape, bool)
        for q, k in enumerate(ks):
            expect[:, :, k] = ref[q, :, :, n - 1].T
        np.testing.assert_array_equal(m, expect)
        assert m.any()


def test_read_true_fractional_threshold(data_dir, ct2_files):
    """Stored values 0/64/128 of 255: 128 (0.502) is in, 64 (0.251) is out."""
    files, uids = ct2_files
    vol = io.load(files[1:])  # the three evenly spaced slices: a regular series with instance UIDs
    path = data_dir / SEG_DIR / "seg_image_ct_true_fractional.dcm"
    raw = hd.seg.segread(path).get_pixels_by_source_instance(uids[1:], rescale_fractional=False)[..., 0]
    assert set(np.unique(raw).tolist()) >= {64, 128}
    lm, segs = read_dicom_seg(path, vol)
    np.testing.assert_array_equal(lm.transpose(2, 1, 0) == 1, raw >= 128)
    assert segs[0]["voxels"] == int((raw >= 128).sum())


def test_read_overlap_label_rule(data_dir, ct2):
    path = data_dir / SEG_DIR / "seg_image_ct_binary_overlap.dcm"
    masks = read_dicom_seg_masks(path, ct2)
    both = masks[1] & masks[2]
    assert both.any()  # the file really overlaps
    lm, segs = read_dicom_seg(path, ct2)
    assert np.all(lm[both] == 2)  # the higher segment number wins
    assert np.all(lm[masks[1] & ~masks[2]] == 1)
    s1 = next(s for s in segs if s["number"] == 1)
    assert s1["voxels"] == int(masks[1].sum()) > s1["voxels_in_label_map"]


def test_read_seg_frames_outside_loaded_series(data_dir, ct2_files):
    files, _ = ct2_files
    vol = io.load(files[1:])  # lacks the first instance, which the overlap SEG covers
    with pytest.raises(InputFileError, match="outside the grid"):
        read_dicom_seg(data_dir / SEG_DIR / "seg_image_ct_binary_overlap.dcm", vol)


def test_read_seg_of_another_scan_refused(data_dir, ct2):
    with pytest.raises(InputFileError, match="frame of reference"):
        read_dicom_seg(data_dir / SEG_DIR / "seg_image_ct_binary_single_frame.dcm", ct2)


def test_read_seg_of_another_series_refused(data_dir, ct2, tmp_path):
    ds = pydicom.dcmread(data_dir / SEG_DIR / "seg_image_ct_binary.dcm")
    ds.ReferencedSeriesSequence[0].SeriesInstanceUID = "1.2.3.4"
    p = tmp_path / "other.dcm"
    ds.save_as(p)
    with pytest.raises(InputFileError, match="references series 1.2.3.4"):
        read_dicom_seg(p, ct2)
    assert read_dicom_seg_masks(p, ct2, allow_other_series=True)[1].any()


def test_read_single_frame_seg_on_its_image(data_dir, tmp_path):
    """The single-frame SEG belongs to seg/ct_image.dcm (an empty segment: all zeros)."""
    src = tmp_path / "ct"
    src.mkdir()
    shutil.copy(data_dir / SEG_DIR / "ct_image.dcm", src / "ct_image.dcm")
    vol = io.load(src)
    lm, segs = read_dicom_seg(data_dir / SEG_DIR / "seg_image_ct_binary_single_frame.dcm", vol)
    ref = hd.seg.segread(data_dir / SEG_DIR / "seg_image_ct_binary_single_frame.dcm")
    px = ref.get_pixels_by_source_instance([vol.dicom.sop_instance_uids[0]])[0, :, :, 0]
    np.testing.assert_array_equal(lm[:, :, 0].T == 1, px.astype(bool))
    assert len(segs) == 1


def test_read_refuses_non_seg_and_non_dicom(data_dir, ct2, tmp_path):
    with pytest.raises(InputFileError, match="not a DICOM Segmentation"):
        read_dicom_seg(data_dir / SEG_DIR / "ct_image.dcm", ct2)
    with pytest.raises(InputFileError, match="not a readable DICOM"):
        read_dicom_seg(data_dir / "totalseg" / "labels.json", ct2)
    nii = io.load(data_dir / "totalseg" / "example_ct_sm.nii.gz")
    with pytest.raises(InputFileError, match="not DICOM"):
        read_dicom_seg(data_dir / SEG_DIR / "seg_image_ct_binary.dcm", nii)


def test_read_unsupported_type_refused(data_dir, ct2, tmp_path):
    ds = pydicom.dcmread(data_dir / SEG_DIR / "seg_image_ct_binary.dcm")
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.66.7"
    p = tmp_path / "labelmap.dcm"
    ds.save_as(p)
    with pytest.raises(InputFileError, match="Label Map Segmentation Storage is not supported"):
        read_dicom_seg(p, ct2)
