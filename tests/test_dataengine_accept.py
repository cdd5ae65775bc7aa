"""The accepted-results folder (issue 19): write -> read round trip, atomic per entry,
refusal of a changed scan, and the checks on the folder and the inputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from sam_med.dataengine import accept_session

from sam_med.errors import SamMedError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def scan(tmp_path, data_dir):
    """(ct Volume read from a copy in tmp_path, reference label map on its grid)."""
    from sam_med import io

    src = tmp_path / "scans" / "example_ct_sm.nii.gz"
    src.parent.mkdir()
    shutil.copy(data_dir / "totalseg" / "example_ct_sm.nii.gz", src)
    vol = io.load(src)
    seg = io.load_label(data_dir / "totalseg" / "example_seg.nii.gz", like=vol).array
    return vol, seg


def _objects(seg, labels=(1, 5), names=("spleen", "liver")):
    lm = np.where(np.isin(seg, labels), seg, 0)
    objs = [{"id": v, "name": n, "prompts": {"points": [[10, 20, 5, 1], [11, 21, 6, 0]]}}
            for v, n in zip(labels, names)]
    return lm, objs


def test_round_trip_mask_geometry_and_record(tmp_path, scan):
    from sam_med.dataengine import AcceptedDataset, scan_checksum, write_entry

    vol, seg = scan
    lm, objs = _objects(seg)
    entry = write_entry(tmp_path / "acc", vol, lm, objs, model={"name": "m", "checkpoint_sha256": "ab"})
    ds = AcceptedDataset(tmp_path / "acc")
    [got] = ds.entries()
    assert got.id == entry.id and got.id.startswith("example_ct_sm-")
    assert got.scan_path == vol.source and (got.scan_sha256, got.scan_bytes) == scan_checksum(vol.source)
    assert got.scan_bytes == os.path.getsize(vol.source)
    image = got.load_scan()
    assert image.same_grid(vol) and np.array_equal(image.array, vol.array)
    mask = got.load_mask(like=image)
    assert mask.array.dtype == np.uint8 and np.array_equal(mask.array, lm)
    np.testing.assert_allclose(mask.affine, vol.affine, atol=1e-6)
    names = {o["label"]: (o["name"], o["voxels"]) for o in got.objects}
    assert names == {1: ("spleen", int((seg == 1).sum())), 5: ("liver", int((seg == 5).sum()))}
    assert got.objects[0]["clicks"] == [{"ijk": [10.0, 20.0, 5.0], "positive": True},
                                        {"ijk": [11.0, 21.0, 6.0], "positive": False}]
    rec = json.loads((got.dir / "entry.json").read_text())
    assert rec["format"] == "sam-med-accepted-entry/1" and rec["model"] == {"name": "m", "checkpoint_sha256": "ab"}
    assert rec["scan"]["shape"] == list(vol.shape) and "numpy" in rec["versions"]
    assert json.loads((tmp_path / "acc" / "dataset.json").read_text())["format"] == "sam-med-accepted/1"
    assert sorted(p.name for p in got.dir.iterdir()) == ["entry.json", "mask.nii.gz"]  # never a scan copy


def test_entries_sorted_never_overwritten_and_uint16(tmp_path, scan):
    from sam_med.dataengine import AcceptedDataset, write_entry

    vol, seg = scan
    a = write_entry(tmp_path / "acc", vol, (seg == 1).astype(np.uint8), [{"id": 1, "name": "spleen"}])
    b = write_entry(tmp_path / "acc", vol, (seg == 5) * 300, [{"id": 3, "name": "liver", "label": 300}])
    ds = AcceptedDataset(tmp_path / "acc")
    assert [e.id for e in ds.entries()] == sorted([a.id, b.id]) and a.id != b.id
    assert b.load_mask().array.dtype == np.uint16 and int(b.load_mask().array.max()) == 300


def test_changed_moved_scan_is_refused(tmp_path, scan):
    from sam_med.dataengine import AcceptedDataset, write_entry

    vol, seg = scan
    lm, objs = _objects(seg)
    write_entry(tmp_path / "acc", vol, lm, objs)
    [entry] = AcceptedDataset(tmp_path / "acc").entries()
    entry.verify()
    raw = bytearray(Path(vol.source).read_bytes())
    raw[-3] ^= 0xFF  # same size, one byte changed
    Path(vol.source).write_bytes(bytes(raw))
    with pytest.raises(SamMedError, match="scan changed since it was accepted: .*example_ct_sm"):
        entry.verify()
    with pytest.raises(SamMedError, match="scan changed since it was accepted"):
        entry.load_scan()
    os.unlink(vol.source)
    with pytest.raises(SamMedError, match="scan changed since it was accepted: .*gone"):
        entry.verify()


def test_verify_hashes_once_while_the_files_are_untouched(tmp_path, scan, monkeypatch):
    from sam_med.dataengine import AcceptedDataset, accepted, write_entry

    vol, seg = scan
    lm, objs = _objects(seg)
    write_entry(tmp_path / "acc", vol, lm, objs)
    [entry] = AcceptedDataset(tmp_path / "acc").entries()
    calls = []
    real = accepted.scan_checksum
    monkeypatch.setattr(accepted, "scan_checksum", lambda p: calls.append(p) or real(p))
    entry.verify()
    entry.load_scan()  # evaluate: verified on opening, again on loading
    assert len(calls) == 1
    st = os.stat(vol.source)
    os.utime(vol.source, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # touched: hash again
    entry.verify()
    assert len(calls) == 2


def test_folder_checksum_covers_names_and_bytes(tmp_path):
    from sam_med.dataengine import scan_checksum

    d = tmp_path / "series"
    (d / "sub").mkdir(parents=True)
    (d / "a.dcm").write_bytes(b"abc")
    (d / "sub" / "b.dcm").write_bytes(b"defg")
    first = scan_checksum(d)
    assert first[1] == 7 and first == scan_checksum(str(d) + "/")
    (d / "sub" / "b.dcm").rename(d / "sub" / "c.dcm")
    assert scan_checksum(d)[0] != first[0]
    with pytest.raises(SamMedError, match="gone"):
        scan_checksum(tmp_path / "missing.nii.gz")


def test_crash_inside_the_writer_leaves_no_entry(tmp_path, scan, monkeypatch):
    from sam_med.dataengine import AcceptedDataset, write_entry
    from sam_med.io import atomic

    vol, seg = scan
    lm, objs = _objects(seg)

    real = atomic.atomic_write_text

    def boom(path, text):
        if Path(path).name == "entry.json":  # after the mask was written into the entry
            raise OSError("disk full (simulated)")
        real(path, text)

    monkeypatch.setattr(atomic, "atomic_write_text", boom)
    with pytest.raises(OSError, match="simulated"):
        write_entry(tmp_path / "acc", vol, lm, objs)
    monkeypatch.undo()
    assert AcceptedDataset(tmp_path / "acc").entries() == []
    assert os.listdir(tmp_path / "acc" / "entries") == []  # the temporary folder went too
    e = write_entry(tmp_path / "acc", vol, lm, objs)
    assert [x.id for x in AcceptedDataset(tmp_path / "acc").entries()] == [e.id]


def test_sigkill_between_files_leaves_no_visible_entry(tmp_path, scan):
    """A writer killed with SIGKILL after the mask and before entry.json: the entry is not
    visible, and the next write succeeds and removes the dead writer's temporary folder."""
    from sam_med.dataengine import AcceptedDataset, write_entry

    vol, seg = scan
    lm, objs = _objects(seg)
    np.save(tmp_path / "lm.npy", lm)
    script = textwrap.dedent(f"""
        import os, signal, numpy as np
        from sam_med import io
        from sam_med.io import atomic
        from sam_med.dataengine import write_entry
        real = atomic.atomic_write_text
        def die(path, text):
            if os.path.basename(path) != "entry.json":
                return real(path, text)
            assert os.path.isfile(os.path.join(os.path.dirname(path), "mask.nii.gz"))
            os.kill(os.getpid(), signal.SIGKILL)
        atomic.atomic_write_text = die
        vol = io.load({vol.source!r})
        write_entry({str(tmp_path / "acc")!r}, vol, np.load({str(tmp_path / "lm.npy")!r}), {objs!r})
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    left = os.listdir(tmp_path / "acc" / "entries")
    assert len(left) == 1 and left[0].startswith(".tmp-")
    assert AcceptedDataset(tmp_path / "acc").entries() == []
    e = write_entry(tmp_path / "acc", vol, lm, objs)
    assert os.listdir(tmp_path / "acc" / "entries") == [e.id]


def test_bad_inputs_are_one_clear_error(tmp_path, scan):
    from sam_med.dataengine import AcceptedDataset, write_entry
    from sam_med.volume import Volume

    vol, seg = scan
    lm, objs = _objects(seg)
    with pytest.raises(SamMedError, match="no dataset.json"):
        AcceptedDataset(tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(SamMedError, match="holds other files"):
        write_entry(tmp_path / "other", vol, lm, objs)
    (tmp_path / "msd").mkdir()
    (tmp_path / "msd" / "dataset.json").write_text('{"name": "msd", "labels": {}}')
    with pytest.raises(SamMedError, match="not an accepted-results folder"):
        write_entry(tmp_path / "msd", vol, lm, objs)
    (tmp_path / "file").write_text("x")
    with pytest.raises(SamMedError, match="is a file"):
        write_entry(tmp_path / "file", vol, lm, objs)
    mem = Volume(vol.array, vol.affine)
    with pytest.raises(SamMedError, match="built in memory"):
        write_entry(tmp_path / "acc", mem, lm, objs)
    with pytest.raises(SamMedError, match="no voxel of label 2"):
        write_entry(tmp_path / "acc", vol, lm, [{"id": 2, "name": "kidney"}] + objs)
    with pytest.raises(SamMedError, match=r"values \[5\] that no accepted object names"):
        write_entry(tmp_path / "acc", vol, lm, objs[:1])
    assert not (tmp_path / "acc" / "entries").exists() or os.listdir(tmp_path / "acc" / "entries") == []
    bad = tmp_path / "acc2" / "entries" / "x"
    bad.mkdir(parents=True)
    (tmp_path / "acc2" / "dataset.json").write_text('{"format": "sam-med-accepted/1"}')
    (bad / "entry.json").write_text('{"format": "sam-med-accepted-entry/1"}')
    with pytest.raises(SamMedError, match="malformed accepted entry"):
        AcceptedDataset(tmp_path / "acc2").entries()


def test_session_accept_keeps_prompts_click_order_and_masks(tmp_path, scan):
    from sam_med.dataengine import AcceptedDataset
    from sam_med.evaluation.baselines import ThresholdPredictor
    from sam_med.session import Session

    vol, seg = scan
    s = Session(vol, ThresholdPredictor(threshold=100.0, radius=2.0))
    s.add_object("liver")
    s.set_box(1, [20, 20, 5, 60, 60, 20])
    s.add_point(1, [30, 30, 10], True)
    s.add_point(1, [50, 50, 12], False)
    s.add_point(1, [25, 40, 8], True)
    s.add_object("empty")  # no mask: not accepted by default
    s.add_object("spleen")
    s.set_mask(3, seg == 1)  # a manual edit: no prompts
    entry = accept_session(s, tmp_path / "acc")
    [got] = AcceptedDataset(tmp_path / "acc").entries()
    assert got.id == entry.id and [o["id"] for o in got.objects] == [1, 3]
    liver = got.objects[0]
    assert liver["prompts"]["box"] == [20.0, 20.0, 5.0, 60.0, 60.0, 20.0]
    assert [(c["ijk"], c["positive"]) for c in liver["clicks"]] == [
        ([30.0, 30.0, 10.0], True), ([50.0, 50.0, 12.0], False), ([25.0, 40.0, 8.0], True)]
    assert got.model["name"] == "threshold" and got.objects[1]["prompts"] == {}
    lm = got.load_mask(like=got.load_scan()).array
    assert np.array_equal(lm, s.label_map()) and set(np.unique(lm)) == {0, 1, 3}
    only = accept_session(s, tmp_path / "acc", ids=[3])
    assert np.array_equal(only.load_mask().array, (s.label_map() == 3) * 3)
    with pytest.raises(SamMedError, match="object 2 .* has no mask"):
        accept_session(s, tmp_path / "acc", ids=[2])
    assert len(AcceptedDataset(tmp_path / "acc")) == 2


def test_session_accept_refuses_in_memory_volume(tmp_path, scan):
    from sam_med.session import Session
    from sam_med.volume import Volume

    vol, seg = scan
    s = Session(Volume(vol.array, vol.affine))
    s.add_object("spleen")
    s.set_mask(1, seg == 1)
    with pytest.raises(SamMedError, match="no file on disk"):
        accept_session(s, tmp_path / "acc")
    assert not (tmp_path / "acc").exists()
    with pytest.raises(SamMedError, match="nothing to accept"):
        accept_session(Session(vol), tmp_path / "acc")


def test_dicom_folder_scan_round_trip_and_change(tmp_path, data_dir):
    """A DICOM folder is referenced as a folder (checksum over its files); the series is
    read again by its uid; touching one file of the series is a change."""
    from sam_med import io
    from sam_med.dataengine import AcceptedDataset
    from sam_med.session import Session

    src = tmp_path / "dicom"
    shutil.copytree(data_dir / "totalseg" / "example_ct_dicom", src)
    vol = io.load(src)
    s = Session(vol)
    s.add_object("blob")
    m = np.zeros(vol.shape, bool)
    m[5:15, 5:15, 2:6] = True
    s.set_mask(1, m)
    accept_session(s, tmp_path / "acc")
    [e] = AcceptedDataset(tmp_path / "acc").entries()
    assert e.scan_path == str(src) and e.modality == "CT" and e.series_uid == vol.dicom.series_instance_uid
    image = e.load_scan()
    assert image.same_grid(vol) and np.array_equal(e.load_mask(like=image).array, m.astype(np.uint8))
    f = sorted(src.iterdir())[3]
    raw = bytearray(f.read_bytes())
    raw[-1] ^= 1
    f.write_bytes(bytes(raw))
    with pytest.raises(SamMedError, match="scan changed since it was accepted"):
        e.load_scan()
