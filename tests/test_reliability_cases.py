"""Issue #18, cases 1-5: each failed on 17534ee. Bad inputs are refused before the model
loads, so no test here needs the model (a test that reached it would fail loudly)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from sam_med import io
from sam_med.errors import InputFileError
from sam_med.models.checkpoint import sha256_file
from sam_med.predictors.embedding_cache import EmbeddingCache

from _reliability import (BOX, assert_one_line_error, dicom_copy, dicom_files, file_state, listing,
                                      run_cli, small_nifti)

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ 1. input files never overwritten
def test_1_session_out_onto_a_dicom_file_of_the_series(data_dir, tmp_path, capsys):
    d = dicom_copy(data_dir, tmp_path)
    victim = dicom_files(d)[7]
    before = file_state(d)
    rc, _, err = run_cli(capsys, "segment", d, "--box", *BOX, "--out", tmp_path / "out" / "seg.nii.gz",
                         "--session-out", victim)
    assert_one_line_error(rc, err, "refusing to overwrite the input file")
    assert file_state(d) == before and not (tmp_path / "out").exists()


def test_1_session_out_equal_to_out_or_its_sidecar(tmp_path, capsys):
    img = small_nifti(tmp_path / "t.nii.gz")
    for other in ("m.nii.gz", "m.nii.gz.json"):
        rc, _, err = run_cli(capsys, "segment", img, "--box", *BOX, "--out", tmp_path / "m.nii.gz",
                             "--session-out", tmp_path / other)
        assert_one_line_error(rc, err, "same file")
    assert listing(tmp_path) == ["t.nii.gz"]


def test_1_evaluate_out_is_the_dataset_folder(tmp_path, capsys):
    ds = tmp_path / "ds"
    ds.mkdir()
    small_nifti(ds / "img.nii.gz")
    small_nifti(ds / "lab.nii.gz", np.zeros((12, 12, 6), np.uint8))
    (ds / "records.csv").write_text("image,label\nimg.nii.gz,lab.nii.gz\n")
    before = file_state(ds)
    rc, _, err = run_cli(capsys, "evaluate", ds / "records.csv", "--protocol", "box", "--model", "threshold",
                         "--out", ds, "--no-progress")
    assert_one_line_error(rc, err, "holds the input file")
    assert file_state(ds) == before


def test_1_session_save_refuses_any_series_file(data_dir, tmp_path):
    from sam_med.errors import OutputError
    from sam_med.session import Session

    d = dicom_copy(data_dir, tmp_path)
    vol = io.load(d)
    before = file_state(d)
    with pytest.raises(OutputError, match="input file"):
        Session(vol).save(dicom_files(d)[3])
    assert file_state(d) == before


# ------------------------------------------------------------------ 2. checkpoint hash keeps no stale cache
def test_2_checkpoint_modified_in_place_with_size_and_mtime_kept(tmp_path):
    ck = tmp_path / "w.pt"
    torch.save({"w": torch.ones(64)}, ck)
    st = os.stat(ck)
    good = sha256_file(ck)
    raw = bytearray(ck.read_bytes())
    raw[-40] ^= 0xFF  # one flipped byte: what bit rot does
    ck.write_bytes(bytes(raw))
    os.utime(ck, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(ck).st_size == st.st_size and os.stat(ck).st_mtime_ns == st.st_mtime_ns
    assert sha256_file(ck) != good


# ------------------------------------------------------------------ 3. corrupt embedding-cache entries
def _encode(batch: torch.Tensor) -> torch.Tensor:
    return batch.mean(dim=1, keepdim=True) * 2.0 + 1.0  # a deterministic "encoder"


def _fill(cache_dir) -> tuple[list, dict]:
    keys = [(2, k, None) for k in range(4)]
    inputs = {k: torch.full((3, 8, 8), float(k[1])) for k in keys}
    c = EmbeddingCache(cache_dir=cache_dir)
    c.get_many("ns", keys, inputs.__getitem__, _encode)
    return keys, inputs


CORRUPTIONS = {
    "random bytes": lambda p: p.write_bytes(os.urandom(p.stat().st_size)),
    "bit flip": lambda p: p.write_bytes(_flip_in_tensor(p.read_bytes())),
    "nan": lambda p: _rewrite(p, lambda b: {**b, "embedding": torch.full_like(b["embedding"], float("nan"))}),
    "missing key": lambda p: _rewrite(p, lambda b: {k: v for k, v in b.items() if k != "embedding"}),
    "wrong shape": lambda p: _rewrite(p, lambda b: {**b, "embedding": torch.zeros(1, 4, 4), "shape": [1, 4, 4]}),
}


def _flip_in_tensor(raw: bytes) -> bytes:
    """Flip a byte inside the stored tensor data (torch's zip reader checks no CRC)."""
    import zipfile
    from io import BytesIO

    zf = zipfile.ZipFile(BytesIO(raw))
    info = next(i for i in zf.infolist() if "/data/" in i.filename)
    h = info.header_offset
    off = h + 30 + int.from_bytes(raw[h + 26:h + 28], "little") + int.from_bytes(raw[h + 28:h + 30], "little")
    b = bytearray(raw)
    b[off + 5] ^= 0x40
    return bytes(b)


def _rewrite(p: Path, f) -> None:
    torch.save(f(torch.load(p, weights_only=True)), p)


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_3_corrupt_cache_entry_is_recomputed_with_a_warning(tmp_path, kind):
    keys, inputs = _fill(tmp_path)
    entry = sorted((tmp_path / "ns").glob("*.pt"))[1]
    CORRUPTIONS[kind](entry)
    c = EmbeddingCache(cache_dir=tmp_path)
    with pytest.warns(RuntimeWarning, match="corrupt"):
        got = c.get_many("ns", keys, inputs.__getitem__, _encode)
    assert c.encoded == 1 and c.disk_hits == 3
    for k, g in zip(keys, got):
        torch.testing.assert_close(g, _encode(inputs[k][None])[0])


def test_3_sound_entries_are_reused_without_warning(tmp_path):
    keys, inputs = _fill(tmp_path)
    c = EmbeddingCache(cache_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c.get_many("ns", keys, inputs.__getitem__, _encode)
    assert c.encoded == 0 and c.disk_hits == 4


# ------------------------------------------------------------------ 4. no hangs
def _cli(*argv, timeout=90) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "sam_med", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_4_fifo_and_dev_zero_in_a_dicom_folder(data_dir, tmp_path):
    d = dicom_copy(data_dir, tmp_path)
    os.mkfifo(d / "pipe")
    os.symlink("/dev/zero", d / "zero")
    t0 = time.monotonic()
    r = _cli("info", d)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 90
    assert io.load(d).shape[2] == 20


@pytest.mark.parametrize("what", ["fifo", "/dev/zero"])
def test_4_special_file_as_the_input(tmp_path, capsys, what):
    p = tmp_path / "x.nii.gz"
    if what == "fifo":
        os.mkfifo(p)
    else:
        os.symlink("/dev/zero", p)
    rc, _, err = run_cli(capsys, "info", p)
    assert_one_line_error(rc, err, "not a regular file")


def test_4_napari_reader_on_a_fifo(tmp_path):
    """A FIFO named like a scan: the reader does not claim it (napari never gets to open it,
    so nothing hangs on it)."""
    pytest.importorskip("sam_med_napari._reader")
    from sam_med_napari._reader import napari_get_reader

    p = tmp_path / "scan.nii.gz"
    os.mkfifo(p)
    assert napari_get_reader(str(p)) is None


# ------------------------------------------------------------------ 5. memory
def test_5_prompts_from_dev_zero(tmp_path, capsys):
    img = small_nifti(tmp_path / "t.nii.gz")
    rc, _, err = run_cli(capsys, "segment", img, "--prompts", "/dev/zero", "--out", tmp_path / "o.nii.gz")
    assert_one_line_error(rc, err, "regular file")
    big = tmp_path / "big.json"
    with open(big, "wb") as fh:
        fh.truncate(17 << 20)
    rc, _, err = run_cli(capsys, "segment", img, "--prompts", big, "--out", tmp_path / "o.nii.gz")
    assert_one_line_error(rc, err, "larger than")
    assert sorted(listing(tmp_path)) == ["big.json", "t.nii.gz"]


@pytest.mark.parametrize("gz", [False, True])
def test_5_tiny_nifti_claiming_a_huge_array(tmp_path, gz):
    import gzip

    import nibabel as nib

    hdr = nib.Nifti1Header()
    hdr.set_data_shape((1024, 1024, 1024))
    hdr.set_data_dtype(np.int16)
    raw = hdr.binaryblock + b"\0" * 4 + b"\0" * 61
    p = tmp_path / ("h.nii.gz" if gz else "h.nii")
    p.write_bytes(gzip.compress(raw) if gz else raw)
    tracemalloc.start()
    try:
        with pytest.raises(InputFileError, match="claims"):
            io.load(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 << 20
