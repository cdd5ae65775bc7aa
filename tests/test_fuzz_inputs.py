"""Fuzzing bad inputs (hypothesis): prompts JSON, npz headers, NIfTI headers, DICOM tags.

Every generated bad input must give exit 2, exactly one ``sam-med: error:`` line on
stderr, no traceback, and no file written. All run in-process through
``sam_med.cli.main`` and are refused before a model loads (prompts and npz cases through ``segment``; corrupted
NIfTI / DICOM headers through ``info``, since some corruptions leave a sound image,
which must then read without a traceback). Example counts are kept
small (``FUZZ_EXAMPLES``, default 40 per strategy, 10 for DICOM) so the suite stays fast; raise
``SAM_MED_FUZZ_EXAMPLES`` for a longer run.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _reliability import BOX, assert_one_line_error, listing, small_nifti, small_npz

from sam_med.cli import main

FUZZ_EXAMPLES = int(os.environ.get("SAM_MED_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _run(capfd, argv) -> tuple[int, str]:
    capfd.readouterr()
    rc = main([str(a) for a in argv])
    return rc, capfd.readouterr().err


class Scratch:
    """A fresh folder per example (hypothesis reuses function-scoped fixtures)."""

    def __enter__(self) -> Path:
        self.path = Path(tempfile.mkdtemp(prefix="fuzz-"))
        return self.path

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


# ------------------------------------------------------------------ prompts JSON
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10 ** 6, 10 ** 6), st.text(max_size=5),
                    st.floats(allow_nan=False, allow_infinity=False))
junk = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=4), c, max_size=3),
                    max_leaves=10)
bad_ids = st.one_of(st.none(), st.text(max_size=4), st.integers(max_value=0), st.integers(min_value=65536),
                    st.floats(), st.booleans(), st.lists(st.integers(), max_size=2))
bad_box = st.one_of(scalars, st.lists(scalars, max_size=8).filter(
    lambda b: not (len(b) == 6 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in b))))
bad_points = st.one_of(scalars.filter(lambda v: v is not None and v != [] and v != ""), st.lists(
    st.lists(scalars, max_size=6).filter(lambda p: len(p) not in (3, 4)), min_size=1, max_size=3))


@st.composite
def bad_prompt_specs(draw):
    kind = draw(st.sampled_from(["top", "object", "id", "box", "points", "coords", "bytes"]))
    good = {"box": [2, 2, 1, 9, 9, 4]}
    if kind == "top":
        return json.dumps(draw(junk.filter(lambda j: not isinstance(j, dict) or not isinstance(j.get("objects"), list)
                                           or not j["objects"]))).encode()
    if kind == "object":
        o = draw(junk.filter(lambda j: not isinstance(j, dict)))
        return json.dumps({"objects": [good, o]}).encode()
    if kind == "id":
        return json.dumps({"objects": [{**good, "id": draw(bad_ids)}]}).encode()
    if kind == "box":
        return json.dumps({"objects": [{"box": draw(bad_box)}]}).encode()
    if kind == "points":
        return json.dumps({"objects": [{"points": draw(bad_points)}]}).encode()
    if kind == "coords":
        return json.dumps({"coords": draw(scalars.filter(lambda c: c not in ("voxel", "world"))),
                           "objects": [good]}).encode()
    raw = draw(st.binary(min_size=1, max_size=64))
    return b'{"objects": [{"box": [2, 2, 1, 9, 9, 4], "name": "' + raw + b'"}]' + draw(st.sampled_from([b"}", b""]))


@FUZZ
@given(spec=bad_prompt_specs())
def test_fuzz_prompts_json(capfd, spec):
    with Scratch() as d:
        img = small_nifti(d / "t.nii.gz")
        pf = d / "p.json"
        pf.write_bytes(spec)
        try:
            json.loads(spec.decode("utf-8"))
            valid_json = True
        except (UnicodeDecodeError, ValueError):
            valid_json = False
        if valid_json and _is_good(json.loads(spec)):
            return  # the generator produced a valid file (e.g. a name of valid UTF-8): not a bad input
        rc, err = _run(capfd, ["segment", img, "--prompts", pf, "--out", d / "o" / "m.nii.gz"])
        assert_one_line_error(rc, err)
        assert listing(d) == ["p.json", "t.nii.gz"]


def _is_good(spec) -> bool:
    from sam_med.errors import PromptError
    from sam_med.io.validate import read_prompts_file

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(spec, fh)
    try:
        read_prompts_file(fh.name)
        return True
    except PromptError:
        return False
    finally:
        os.unlink(fh.name)


# ------------------------------------------------------------------ npz headers
bad_geometry = st.one_of(
    st.builds(lambda v: {"spacing": np.array(v)}, st.lists(st.floats(max_value=0) | st.just(float("nan")),
                                                            min_size=3, max_size=3)),
    st.builds(lambda n: {"spacing": np.ones(n)}, st.integers(0, 8).filter(lambda n: n != 3)),
    st.builds(lambda n: {"direction": np.ones(n)}, st.integers(0, 12).filter(lambda n: n != 9)),
    st.builds(lambda n: {"origin": np.ones(n)}, st.integers(0, 6).filter(lambda n: n != 3)),
    st.builds(lambda s: {"spacing": np.array(s)}, st.text(min_size=1, max_size=6)),
    st.builds(lambda s: {"imgs": np.zeros(s, np.uint8)}, st.lists(st.integers(1, 4), min_size=0, max_size=5)
              .filter(lambda s: len(s) != 3)),
    st.just({"imgs": None}), st.just({"spacing": None}),
)


@FUZZ
@given(over=bad_geometry)
def test_fuzz_npz_keys(capfd, over):
    with Scratch() as d:
        p = small_npz(d / "c.npz", **over)
        rc, err = _run(capfd, ["segment", p, "--box", *BOX, "--out", d / "o" / "m.nii.gz"])
        assert_one_line_error(rc, err)
        assert listing(d) == ["c.npz"]


@FUZZ
@given(shape=st.lists(st.integers(0, 10 ** 7), min_size=1, max_size=4), descr=st.sampled_from(["|u1", "<i2", "<f8"]),
       stored=st.booleans())
def test_fuzz_npz_claimed_shapes(capfd, shape, descr, stored):
    import zipfile

    nbytes = int(np.prod(shape, dtype=object)) * np.dtype(descr).itemsize
    if len(shape) == 3 and nbytes <= 64:
        return  # small enough to be honest
    with Scratch() as d:
        h = repr({"descr": descr, "fortran_order": False, "shape": tuple(shape)}).encode()
        pad = 64 - (10 + len(h) + 1) % 64
        npy = b"\x93NUMPY\x01\x00" + (len(h) + pad + 1).to_bytes(2, "little") + h + b" " * pad + b"\n" + b"\0" * 64
        with zipfile.ZipFile(d / "c.npz", "w", zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("imgs.npy", npy)
        rc, err = _run(capfd, ["info", d / "c.npz"])
        assert_one_line_error(rc, err)


# ------------------------------------------------------------------ NIfTI headers
NIFTI_FIELDS = {  # (offset, numpy dtype) of NIfTI-1 header fields worth corrupting
    "dim": (40, "<i2", 8), "datatype": (70, "<i2", 1), "bitpix": (72, "<i2", 1), "pixdim": (76, "<f4", 8),
    "vox_offset": (108, "<f4", 1), "scl_slope": (112, "<f4", 1), "sform_code": (254, "<i2", 1),
    "srow": (280, "<f4", 12),
}


@FUZZ
@given(field=st.sampled_from(sorted(NIFTI_FIELDS)), seed=st.integers(0, 2 ** 32 - 1))
def test_fuzz_nifti_header(capfd, field, seed):
    import nibabel as nib

    rng = np.random.default_rng(seed)
    with Scratch() as d:
        p = small_nifti(d / "t.nii")
        raw = bytearray(p.read_bytes())
        off, dt, n = NIFTI_FIELDS[field]
        vals = np.frombuffer(bytes(raw[off:off + 4 * n if dt.endswith("4") else off + 2 * n]), dt).copy()
        i = int(rng.integers(len(vals)))
        vals[i] = rng.choice([0, -1, -(2 ** 15) + 1, 2 ** 14, np.nan if dt.endswith("f4") else 7,
                              np.inf if dt.endswith("f4") else 32000, 1e30 if dt.endswith("f4") else 1000])
        raw[off:off + vals.nbytes] = vals.tobytes()
        p.write_bytes(bytes(raw))
        _assert_refused_or_read(capfd, ["info", p], d, ["t.nii"])
        del nib


def _assert_refused_or_read(capfd, argv, folder, files) -> None:
    """A corrupted header is either refused (exit 2, one line) or still a sound image (exit 0,
    at most one warning line); never a traceback, never a written file."""
    rc, err = _run(capfd, argv)
    if rc == 2:
        assert_one_line_error(rc, err)
    else:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert rc == 0 and len(lines) <= 1 and all(ln.startswith("sam-med: warning: ") for ln in lines), (rc, err)
    assert [n for n in listing(folder) if "/" not in n] == files


# ------------------------------------------------------------------ DICOM tags
DICOM_TAGS = ["InstanceNumber", "SeriesNumber", "RescaleSlope", "RescaleIntercept", "PixelSpacing",
              "ImagePositionPatient", "ImageOrientationPatient", "SliceThickness"]
dicom_junk = st.one_of(st.text(alphabet="abcxyz-+.eE\\ ", min_size=1, max_size=8),
                       st.sampled_from(["nan", "inf", "-1\\-1", "0\\0", "1\\2\\3\\4", "", "1e999"]))


@settings(FUZZ, max_examples=max(10, FUZZ_EXAMPLES // 4))  # each example rewrites a 20-file series
@given(tag=st.sampled_from(DICOM_TAGS), value=dicom_junk)
def test_fuzz_dicom_tags(capfd, data_dir, tag, value):
    import pydicom

    from _reliability import edit_dicom

    with Scratch() as d:
        src = d / "dicom"
        shutil.copytree(data_dir / "totalseg" / "example_ct_dicom", src)
        files = sorted(src.iterdir())
        ds = pydicom.dcmread(str(files[0]), stop_before_pixels=True)
        if tag not in ds:
            return
        for f in files:
            edit_dicom(f, **{tag: value})
        _assert_refused_or_read(capfd, ["info", src], d, ["dicom"])
