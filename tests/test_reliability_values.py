"""Issue #18, cases 6-10 (values, geometry, tracebacks, late validation): each failed on
17534ee. All are refused before the model loads."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from sam_med import io
from sam_med.errors import InputFileError, SamMedError
from sam_med.session import Session

from _reliability import (BOX, assert_one_line_error, dicom_copy, dicom_files, edit_dicom, listing,
                                      run_cli, small_nifti, small_npz)


# ------------------------------------------------------------------ 6. non-finite voxels
@pytest.mark.parametrize("fraction", [1.0, 0.1])
def test_6_nan_voxels_refused_with_the_count(tmp_path, capsys, fraction):
    data = np.ones((12, 12, 6), np.float32)
    data.flat[: int(data.size * fraction)] = np.nan
    img = small_nifti(tmp_path / "nan.nii.gz", data)
    rc, _, err = run_cli(capsys, "segment", img, "--box", *BOX, "--out", tmp_path / "o.nii.gz")
    assert_one_line_error(rc, err, f"{int(data.size * fraction):,} of {data.size:,} voxels are NaN")
    assert listing(tmp_path) == ["nan.nii.gz"]


def test_6_nonfinite_replace_is_explicit(tmp_path):
    data = np.ones((12, 12, 6), np.float32)
    data[0, 0, 0], data[1, 1, 1] = np.nan, np.inf
    vol = io.load(small_nifti(tmp_path / "n.nii.gz", data), nonfinite="replace")
    assert np.isfinite(vol.array).all() and vol.meta["nonfinite_replaced"]


# ------------------------------------------------------------------ 7. impossible geometry
@pytest.mark.parametrize("spacing", [[-1.0, 1.0, 2.0], [1.0, 0.0, 2.0], [1.0, np.inf, 2.0]])
def test_7_npz_spacing_must_be_positive(tmp_path, capsys, spacing):
    p = small_npz(tmp_path / "c.npz", spacing=np.array(spacing))
    rc, _, err = run_cli(capsys, "info", p)
    assert_one_line_error(rc, err, "spacing")


def test_7_negative_dicom_pixel_spacing(data_dir, tmp_path, capsys):
    d = dicom_copy(data_dir, tmp_path)
    for f in dicom_files(d):
        edit_dicom(f, PixelSpacing="-0.7\\-0.7")
    rc, _, err = run_cli(capsys, "info", d)
    assert_one_line_error(rc, err, "PixelSpacing")


def test_7_nifti_pixdim_zero(tmp_path, capsys):
    p = small_nifti(tmp_path / "p.nii", pixdim=[1.0, 0.0, 2.0])
    rc, _, err = run_cli(capsys, "info", p)
    assert_one_line_error(rc, err, "pixdim")


# ------------------------------------------------------------------ 8. one line, exit 2, never a traceback
@pytest.mark.parametrize("tag,value", [("InstanceNumber", "abc"), ("SeriesNumber", "x1"),
                                       ("RescaleSlope", "steep"), ("RescaleIntercept", "-"),
                                       ("NumberOfFrames", "many")])
def test_8_malformed_dicom_numeric_tags(data_dir, tmp_path, capsys, tag, value):
    import pydicom

    d = dicom_copy(data_dir, tmp_path)
    f = dicom_files(d)[0]
    ds = pydicom.dcmread(str(f))
    if tag not in ds:
        ds.add_new(tag, {"NumberOfFrames": "IS", "SeriesNumber": "IS"}.get(tag, "DS"), "1")
        ds.save_as(str(f))
    edit_dicom(f, **{tag: value})
    for cmd in (["info", d], ["segment", d, "--box", *BOX, "--out", tmp_path / "o" / "s.nii.gz"]):
        rc, _, err = run_cli(capsys, *cmd)
        assert_one_line_error(rc, err)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("over", [{"spacing": np.array(["a", "b", "c"])}, {"direction": np.ones(3)},
                                  {"origin": np.array([1.0, 2.0])}, {"spacing": np.array("1 1 2")}])
def test_8_npz_bad_geometry_keys(tmp_path, capsys, over):
    p = small_npz(tmp_path / "c.npz", **over)
    rc, _, err = run_cli(capsys, "info", p)
    assert_one_line_error(rc, err)


def _npz_claiming(path, shape) -> None:
    """An npz whose 'imgs' member header claims ``shape`` (the data are a few bytes)."""
    import zipfile

    hdr = {"descr": "|u1", "fortran_order": False, "shape": tuple(shape)}
    h = repr(hdr).encode() + b" "
    pad = 64 - (10 + len(h) + 1) % 64
    npy = b"\x93NUMPY\x01\x00" + (len(h) + pad + 1).to_bytes(2, "little") + h + b" " * pad + b"\n" + b"\0" * 16
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("imgs.npy", npy)
        zf.writestr("spacing.npy", _npy(np.ones(3)))


def _npy(a) -> bytes:
    from io import BytesIO

    b = BytesIO()
    np.save(b, a)
    return b.getvalue()


def test_8_npz_header_claiming_1e15_elements(tmp_path, capsys):
    p = tmp_path / "huge.npz"
    _npz_claiming(p, (10 ** 5, 10 ** 5, 10 ** 5))
    rc, _, err = run_cli(capsys, "info", p)
    assert_one_line_error(rc, err, "claims")


def test_8_evaluate_goes_on_past_a_huge_npz(tmp_path, capsys):
    ds = tmp_path / "ds"
    ds.mkdir()
    _npz_claiming(ds / "bad.npz", (10 ** 5, 10 ** 5, 10 ** 5))
    gts = np.zeros((6, 12, 12), np.uint8)
    gts[2:4, 3:8, 3:8] = 1
    small_npz(ds / "good.npz", gts=gts)
    rc, out, err = run_cli(capsys, "evaluate", ds, "--protocol", "box", "--model", "threshold",
                           "--out", tmp_path / "rep", "--no-progress")
    assert rc == 0, err
    assert (tmp_path / "rep" / "summary.json").is_file()
    assert "claims" in (tmp_path / "rep" / "records.csv").read_text()


PROMPT_CASES = {
    "not utf-8": b'{"objects": [{"box": [1, 1, 1, 5, 5, 3], "name": "\xff\xfe"}]}',
    "id null": json.dumps({"objects": [{"id": None, "box": [1, 1, 1, 5, 5, 3]}]}).encode(),
    "id abc": json.dumps({"objects": [{"id": "abc", "box": [1, 1, 1, 5, 5, 3]}]}).encode(),
    "id 0": json.dumps({"objects": [{"id": 0, "box": [1, 1, 1, 5, 5, 3]}]}).encode(),
    "id -1": json.dumps({"objects": [{"id": -1, "box": [1, 1, 1, 5, 5, 3]}]}).encode(),
    "id 70000": json.dumps({"objects": [{"id": 70000, "box": [1, 1, 1, 5, 5, 3]}]}).encode(),
    "object not a dict": json.dumps({"objects": [[1, 2, 3]]}).encode(),
    "box 5": json.dumps({"objects": [{"box": 5}]}).encode(),
    "points 5": json.dumps({"objects": [{"points": 5}]}).encode(),
    "deep nesting": b'{"objects": [' + b"[" * 100000 + b"]" * 100000 + b"]}",
    "NaN literal": b'{"objects": [{"box": [NaN, 1, 1, 5, 5, 3]}]}',
}


@pytest.mark.parametrize("name", list(PROMPT_CASES))
def test_8_bad_prompts_files(tmp_path, capsys, name):
    img = small_nifti(tmp_path / "t.nii.gz")
    pf = tmp_path / "p.json"
    pf.write_bytes(PROMPT_CASES[name])
    rc, _, err = run_cli(capsys, "segment", img, "--prompts", pf, "--out", tmp_path / "o" / "m.nii.gz")
    assert_one_line_error(rc, err)
    assert listing(tmp_path) == ["p.json", "t.nii.gz"]


def test_8_out_under_a_file(tmp_path, capsys):
    img = small_nifti(tmp_path / "t.nii.gz")
    rc, _, err = run_cli(capsys, "segment", img, "--box", *BOX, "--out", tmp_path / "t.nii.gz" / "x.nii.gz")
    assert_one_line_error(rc, err, "is a file, not a folder")


def _saved_session(tmp_path):
    img = small_nifti(tmp_path / "t.nii.gz")
    vol = io.load(img)
    s = Session(vol)
    s.add_object("a", id=3)
    m = np.zeros(vol.shape, bool)
    m[2:5, 2:5, 1:3] = True
    s.set_mask(3, m)
    return vol, s.save(tmp_path / "s.npz")


def _tamper(path, meta_fn=None, arrays_fn=None):
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(bytes(arrays["session_json"]).decode())
    if meta_fn:
        meta = meta_fn(meta)
    if arrays_fn:
        arrays = arrays_fn(arrays)
    arrays["session_json"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **arrays)


def _obj(**kv):
    return lambda m: {**m, "objects": [{**m["objects"][0], **kv}]}


TAMPER = {
    "meta a list": (lambda m: [1, 2], None),
    "shape str": (lambda m: {**m, "shape": "12,12,6"}, None),
    "affine 3x3": (lambda m: {**m, "affine": np.eye(3).tolist()}, None),
    "objects a dict": (lambda m: {**m, "objects": {"a": 1}}, None),
    "object a list": (lambda m: {**m, "objects": [[1]]}, None),
    "id str": (_obj(id="x"), None),
    "id 0": (_obj(id=0), None),
    "id -1": (_obj(id=-1), None),
    "id 70000": (_obj(id=70000), None),
    "name int": (_obj(name=5), None),
    "color str": (_obj(color="red"), None),
    "box 5": (_obj(box=5), None),
    "points str": (_obj(points="x"), None),
    "mask short": (None, lambda a: {**a, "mask_3": a["mask_3"][:3]}),
    "mask float": (None, lambda a: {**a, "mask_3": a["mask_3"].astype(np.float64)}),
    "mask orphan": (None, lambda a: {**a, "mask_9": a["mask_3"]}),
    "no json": (None, lambda a: {"x": np.zeros(3)}),
}


@pytest.mark.parametrize("name", list(TAMPER))
def test_8_session_load_tampered(tmp_path, name):
    vol, path = _saved_session(tmp_path)
    meta_fn, arrays_fn = TAMPER[name]
    if name == "no json":
        np.savez(path, x=np.zeros(3))
    else:
        _tamper(path, meta_fn, arrays_fn)
    with pytest.raises(SamMedError, match="session"):
        Session.load(path, vol)


def test_8_session_of_another_scan_on_the_same_grid(tmp_path):
    vol, path = _saved_session(tmp_path)
    other = vol.with_array(vol.array + 1)
    with pytest.raises(SamMedError, match="another scan"):
        Session.load(path, other)
    assert Session.load(path, vol).get(3).mask.sum() == 18


# ------------------------------------------------------------------ 9. nothing written on error
def test_9_failing_session_out_writes_nothing(tmp_path, capsys):
    img = small_nifti(tmp_path / "t.nii.gz")
    (tmp_path / "afile").write_text("x")
    rc, _, err = run_cli(capsys, "segment", img, "--box", *BOX, "--out", tmp_path / "o" / "m.nii.gz",
                         "--session-out", tmp_path / "afile" / "s.npz")
    assert_one_line_error(rc, err, "not a folder")
    assert listing(tmp_path) == ["afile", "t.nii.gz"]


def test_9_sidecar_colliding_with_the_input(tmp_path, capsys):
    img = small_nifti(tmp_path / "t.nii.gz").rename(tmp_path / "m.nii.gz.json")  # read by content
    rc, _, err = run_cli(capsys, "segment", img, "--box", *BOX, "--out", tmp_path / "m.nii.gz")
    assert_one_line_error(rc, err, "input file")
    assert listing(tmp_path) == ["m.nii.gz.json"]


# ------------------------------------------------------------------ 10. validation before any work
def test_10_70000_objects_refused_up_front(tmp_path, capsys):
    img = small_nifti(tmp_path / "t.nii.gz")
    pf = tmp_path / "p.json"
    pf.write_text(json.dumps({"objects": [{"box": [1, 1, 1, 5, 5, 3]}] * 70000}))
    rc, _, err = run_cli(capsys, "segment", img, "--prompts", pf, "--out", tmp_path / "m.nii.gz")
    assert_one_line_error(rc, err, "at most 65535")


@pytest.mark.parametrize("out,fmt", [("m.nii.gz", "nrrd"), ("m.nrrd", "nifti"), ("m.dcm", "npz")])
def test_10_format_contradicting_the_name(tmp_path, capsys, out, fmt):
    img = small_nifti(tmp_path / "t.nii.gz")
    rc, _, err = run_cli(capsys, "segment", img, "--box", *BOX, "--out", tmp_path / out, "--format", fmt)
    assert_one_line_error(rc, err, "contradicts")


def test_10_nrrd_named_nii_gz_is_read_by_content(tmp_path):
    vol = io.load(small_nifti(tmp_path / "t.nii.gz"))
    io.save_volume(vol, tmp_path / "real.nrrd")
    (tmp_path / "real.nrrd").rename(tmp_path / "fake.nii.gz")
    got = io.load(tmp_path / "fake.nii.gz")
    np.testing.assert_allclose(got.array, vol.array)


def test_10_info_json_is_valid_json(tmp_path, capsys):
    from sam_med.cli.info import _finite

    rc, out, _ = run_cli(capsys, "info", small_nifti(tmp_path / "t.nii.gz"), "--json")
    assert rc == 0 and json.loads(out)["shape"] == [12, 12, 6]
    assert _finite({"a": [float("nan"), np.float32("inf"), 1.5]}) == {"a": [None, None, 1.5]}


def test_10_library_warnings_summarised_in_one_line(tmp_path, capsys):
    p = small_nifti(tmp_path / "t.nii")
    raw = bytearray(p.read_bytes())
    hdr = nib.Nifti1Header.from_fileobj(__import__("io").BytesIO(bytes(raw)))
    hdr["pixdim"][0] = 0  # qfac 0: nibabel warns (and assumes 1)
    raw[:348] = hdr.binaryblock
    p.write_bytes(bytes(raw))
    rc, _, err = run_cli(capsys, "info", p)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 0 and len(lines) <= 1 and all(ln.startswith("sam-med: warning: ") for ln in lines), err
