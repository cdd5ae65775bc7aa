"""Issue #28 problems 4 and 5: small files that claimed gigabytes, and inputs that hung.

Every memory case runs in a fresh Python process whose peak resident memory (``VmHWM`` of
``/proc/self/status``: the high-water mark of this process's own memory; ``ru_maxrss`` would
carry the parent's across ``exec``; ``resource`` elsewhere) must stay below 1 GB; on the base
commit the same files took 1.6-11.6 GB. The files are built here in seconds: a deflate stream of zeros is
made from one flushed 1 MiB block repeated, so a 2 GiB payload costs ~2 MB on disk.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
LIMIT_KB = 1_000_000_000 // 1024  # 1 GB
BOMB_MB = 2047  # < 4 GiB: a plain (not zip64) member


def peak_kb(code: str, timeout: float = 120) -> tuple[int, str]:
    """Run ``code`` in a fresh interpreter; (its peak RSS in kB, its other stdout lines)."""
    wrapper = ("import resource, sys\ntry:\n" + "".join(f"    {ln}\n" for ln in code.strip().splitlines())
               + "except Exception as exc:\n    print('ERR', type(exc).__name__, str(exc)[:300])\n"
               "hwm = [ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('VmHWM')] "
               "if sys.platform.startswith('linux') else []\n"
               "print('PEAK', hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    p = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    lines = p.stdout.strip().splitlines()
    assert p.returncode == 0 and lines and lines[-1].startswith("PEAK"), p.stdout + p.stderr
    return int(lines[-1].split()[1]), "\n".join(lines[:-1])


def deflate_zero_tail(prefix: bytes, mb: int) -> tuple[bytes, int, int]:
    """Raw deflate of ``prefix`` + ``mb`` MiB of zeros, the uncompressed length and its CRC-32."""
    zeros = bytes(1 << 20)
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = co.compress(prefix) + co.compress(zeros) + co.flush(zlib.Z_FULL_FLUSH)
    block = co.compress(zeros) + co.flush(zlib.Z_FULL_FLUSH)
    again = co.compress(zeros) + co.flush(zlib.Z_FULL_FLUSH)
    assert block == again  # the history is all zeros: every further block is these bytes
    crc = zlib.crc32(prefix)
    for _ in range(mb):
        crc = zlib.crc32(zeros, crc)
    return head + block * (mb - 2) + again + co.flush(), len(prefix) + mb * (1 << 20), crc


def write_zip(path: Path, members: dict[str, bytes | tuple[bytes, int]]) -> None:
    """A zip of ``members``: bytes (deflated here) or (raw deflate, size, crc) triples."""
    local, central, off = b"", b"", 0
    for name, data in members.items():
        if isinstance(data, bytes):
            size, crc = len(data), zlib.crc32(data)
            co = zlib.compressobj(6, zlib.DEFLATED, -15)
            comp = co.compress(data) + co.flush()
        else:
            comp, size, crc = data
        n = name.encode()
        hdr = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(comp), size, len(n), 0) + n
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, len(comp), size,
                               len(n), 0, 0, 0, 0, 0, off) + n
        local += hdr + comp
        off += len(hdr) + len(comp)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), off, 0)
    path.write_bytes(local + central + end)


def npy_bytes(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def research_members() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    return {"imgs.npy": npy_bytes(rng.integers(0, 255, (4, 40, 40), dtype=np.uint8)),
            "spacing.npy": npy_bytes(np.array([1.0, 1.0, 3.0]))}


def assert_small(code: str, expect: str | None = None) -> int:
    kb, out = peak_kb(code)
    assert kb < LIMIT_KB, f"peak {kb / 1024:.0f} MB"
    if expect is not None:
        assert expect in out, out
    print(f"peak {kb / 1024:.0f} MB: {out[:120]}")
    return kb


def test_4a_npz_with_a_non_npy_bomb_member(tmp_path):
    p = tmp_path / "scan.npz"
    write_zip(p, {**research_members(), "extra": deflate_zero_tail(b"", BOMB_MB)})
    assert p.stat().st_size < 4 << 20
    assert_small(f"from sam_med import io\nv = io.load({str(p)!r})\nprint('OK', v.shape)", "OK (40, 40, 4)")


def test_4b_session_file_with_a_bomb_member(tmp_path):
    p = tmp_path / "s.npz"
    write_zip(p, {"session_json.npy": npy_bytes(np.frombuffer(b"{}", np.uint8)),
                  "extra.npy": deflate_zero_tail(npy_bytes(np.zeros(4, np.uint8)), BOMB_MB)})
    assert_small(f"from sam_med.io.npz import read_npz_arrays\nprint('OK', sorted(read_npz_arrays({str(p)!r})))",
                 "OK ['extra', 'session_json']")


def test_4c_gzip_nifti_under_another_name(tmp_path):
    import nibabel as nib

    img = nib.Nifti1Image(np.zeros((40, 40, 4), np.int16), np.diag([1.0, 1.0, 3.0, 1.0]))
    raw = img.to_bytes()
    comp, size, crc = deflate_zero_tail(raw, BOMB_MB)
    p = tmp_path / "scan.bin"
    p.write_bytes(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + comp + struct.pack("<II", crc, size & 0xFFFFFFFF))
    assert_small(f"from sam_med import io\nprint('OK', io.load({str(p)!r}).shape)", "OK (40, 40, 4)")


def test_4d_challenge_imgs_member_longer_than_its_header(tmp_path):
    from sam_med.io.challenge import read_challenge  # noqa: F401  (the reader under test)

    p = tmp_path / "CT_case.npz"
    members = research_members()
    imgs = npy_bytes(np.full((4, 40, 40), 100, np.uint8))
    clicks = np.empty(1, object)
    clicks[0] = {"fg": [[1, 20, 20]], "bg": []}
    order = np.empty(1, object)
    order[0] = ["fg"]
    import io as _io
    import pickle

    def obj_npy(a):
        hdr = _io.BytesIO()
        np.lib.format.write_array_header_1_0(hdr, np.lib.format.header_data_from_array_1_0(a))
        return hdr.getvalue() + pickle.dumps(a, protocol=3)

    write_zip(p, {"imgs.npy": deflate_zero_tail(imgs, BOMB_MB), "spacing.npy": members["spacing.npy"],
                  "clicks.npy": obj_npy(clicks), "clicks_order.npy": obj_npy(order)})
    assert_small(f"from sam_med.io.challenge import read_challenge\nc = read_challenge({str(p)!r})\n"
                 "print('OK', c.image.shape, len(c.prompts[0].points))", "OK (40, 40, 4) 1")


@pytest.mark.parametrize("fmt", ["nrrd", "mhd"])
def test_4e_detached_data_file_is_a_device(tmp_path, fmt):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    if fmt == "nrrd":
        p = tmp_path / "x.nrrd"
        p.write_text("NRRD0004\ntype: short\ndimension: 3\nsizes: 2000 1000 1000\nendian: little\n"
                     "encoding: raw\ndata file: /dev/zero\n\n")
    else:
        p = tmp_path / "x.mhd"
        p.write_text("ObjectType = Image\nNDims = 3\nDimSize = 2000 1000 1000\nElementType = MET_SHORT\n"
                     "ElementDataFile = /dev/zero\n")
    assert_small(f"from sam_med import io\nio.load({str(p)!r})", "ERR InputFileError")


def test_4f_nrrd_gzip_claim_beyond_its_data(tmp_path):
    p = tmp_path / "x.nrrd"
    p.write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nsizes: 1000 1000 750\nendian: little\nencoding: gzip\n\n"
                  + gzip.compress(bytes(1 << 20)))
    assert_small(f"from sam_med import io\nio.load({str(p)!r})", "ERR InputFileError")


def test_4g_rle_dicom_claiming_30000_squared(tmp_path, data_dir):
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import RLELossless

    src = sorted((data_dir / "totalseg" / "example_ct_dicom").iterdir())[0]
    ds = pydicom.dcmread(src)
    ds.decompress() if ds.file_meta.TransferSyntaxUID.is_compressed else None
    seg = bytes([127]) + bytes(128)  # one literal run per segment: 2 segments (high, low bytes)
    frame = struct.pack("<16I", 2, 64, 64 + len(seg), *([0] * 13)) + seg + seg
    ds.Rows = ds.Columns = 30000
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = RLELossless
    p = tmp_path / "rle.dcm"
    ds.save_as(p, enforce_file_format=True)
    assert_small(f"from sam_med import io\nio.load({str(p)!r})", "ERR InputFileError")


# --------------------------------------------------------------------------- problem 5: hangs
def test_5a_nrrd_data_file_fifo_does_not_hang(tmp_path):
    fifo = tmp_path / "data.raw"
    os.mkfifo(fifo)
    p = tmp_path / "x.nrrd"
    p.write_text(f"NRRD0004\ntype: short\ndimension: 3\nsizes: 4 4 4\nendian: little\nencoding: raw\n"
                 f"data file: {fifo}\n\n")
    kb, out = peak_kb(f"from sam_med import io\nio.load({str(p)!r})", timeout=60)
    assert "FIFO" in out, out


def test_5b_shared_reference_clicks_pickle_is_refused_fast(tmp_path):
    import pickle

    node: object = [1, 2, 3]
    for _ in range(12):  # 10^12 visits if walked naively, a few hundred bytes pickled
        node = [node] * 10
    clicks = np.empty(1, object)
    clicks[0] = {"fg": node, "bg": []}
    raw = pickle.dumps(clicks, protocol=3)
    assert len(raw) < 3000
    from sam_med.errors import InputFileError
    from sam_med.io.challenge import safe_unpickle

    with pytest.raises(InputFileError, match="values"):
        safe_unpickle(raw, "clicks")


def test_5c_prompts_file_with_a_million_points(tmp_path, capsys):
    from _reliability import assert_one_line_error, run_cli, small_nifti

    scan = small_nifti(tmp_path / "T.nii.gz")
    pts = tmp_path / "p.json"
    pts.write_text(json.dumps({"objects": [{"id": 1, "points": [[1, 1, 1, 1]] * 1_000_000}]}))
    rc, _, err = run_cli(capsys, "segment", scan, "--prompts", pts, "--out", tmp_path / "o.nii.gz")
    assert_one_line_error(rc, err, "at most 1,000")


def test_4h_deflated_dicom_bomb(tmp_path, data_dir):
    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    from sam_med.io.dicom.series import _meta_end

    src = sorted((data_dir / "dicom" / "siemens_mr_sagittal").iterdir())[0]
    ds = pydicom.dcmread(src)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    good = tmp_path / "deflated.dcm"
    ds.save_as(good, enforce_file_format=True)
    assert_small(f"from sam_med import io\nprint('OK', io.load({str(good)!r}).shape)", "OK (256, 256, 1)")
    comp, _, _ = deflate_zero_tail(b"", BOMB_MB)
    bomb = tmp_path / "bomb.dcm"
    bomb.write_bytes(good.read_bytes()[:_meta_end(str(good))] + comp)
    assert_small(f"from sam_med import io\nio.load({str(bomb)!r})", "ERR InputFileError")
