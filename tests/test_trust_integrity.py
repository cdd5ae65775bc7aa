"""Issue #28 problem 6: integrity checks that hold against a swapped checkpoint, forged
cache entries, a session without its signature and edited accepted entries."""

from __future__ import annotations

import hashlib
import io
import json
import shutil

import numpy as np
import pytest
import torch

from sam_med.errors import SamMedError
from sam_med.models import checkpoint as ck
from sam_med.predictors.embedding_cache import EmbeddingCache, tensor_sha256
from _reliability import small_nifti


# --------------------------------------------------------------------------- checkpoint
def test_checkpoint_swapped_after_hashing_is_not_loaded(tmp_path, monkeypatch):
    good = {"w": torch.ones(3)}
    evil = {"w": torch.zeros(3)}
    p = tmp_path / "m.pt"
    torch.save(good, p)
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    real = hashlib.sha256

    class SwapAfterHash:
        def __init__(self, data=b""):
            self.h = real(data)
            torch.save(evil, p)  # the attacker wins the race right after the hash

        def update(self, d):
            self.h.update(d)

        def hexdigest(self):
            return self.h.hexdigest()

    monkeypatch.setattr(ck.hashlib, "sha256", SwapAfterHash)
    sd, got = ck.read_state_dict(p, digest)
    assert got == digest and torch.equal(sd["w"], good["w"])  # the bytes hashed are the bytes loaded


def test_checkpoint_fifo_is_refused(tmp_path):
    import os

    f = tmp_path / "m.pt"
    os.mkfifo(f)
    with pytest.raises(SamMedError):
        ck.read_state_dict(f)


# --------------------------------------------------------------------------- embedding cache
KEY = (2, 0, None)


def _fill(cache_dir, ns, value=1.0):
    c = EmbeddingCache(cache_dir=cache_dir)
    c.get_many(ns, [KEY], lambda k: torch.zeros(3, 8, 8), lambda b: torch.full((b.shape[0], 4, 2, 2), value))
    return next((cache_dir / ns).glob("*.pt"))


def _reopen(cache_dir, ns):
    c = EmbeddingCache(cache_dir=cache_dir)
    with pytest.warns(RuntimeWarning, match="re-encoded"):
        out = c.get_many(ns, [KEY], lambda k: torch.zeros(3, 8, 8), lambda b: torch.full((b.shape[0], 4, 2, 2), 1.0))
    return c, out


def _rewrite(path, **changes):
    blob = torch.load(path, weights_only=True)
    blob.update(changes)
    emb = blob["embedding"]
    blob.update(shape=list(emb.shape), dtype=str(emb.dtype), sha256=tensor_sha256(emb))  # self-consistent
    torch.save(blob, path)


def test_cache_entry_self_consistent_but_tampered(tmp_path):
    entry = _fill(tmp_path, "scanA")
    _rewrite(entry, embedding=torch.full((4, 2, 2), 7.0))
    c, out = _reopen(tmp_path, "scanA")
    assert c.encoded == 1 and float(out[0].max()) == 1.0


def test_cache_entry_of_the_wrong_spatial_shape(tmp_path):
    entry = _fill(tmp_path, "scanA")
    _rewrite(entry, embedding=torch.ones(4, 3, 3))
    c, out = _reopen(tmp_path, "scanA")
    assert c.encoded == 1 and tuple(out[0].shape) == (4, 2, 2)


def test_cache_entry_copied_from_another_scans_folder(tmp_path):
    a = _fill(tmp_path, "scanA", 1.0)
    b = _fill(tmp_path, "scanB", 5.0)
    shutil.copy(b, a)  # same view key, another scan's embedding
    c, out = _reopen(tmp_path, "scanA")
    assert c.encoded == 1 and float(out[0].max()) == 1.0


def test_cache_sound_entry_is_reused(tmp_path):
    _fill(tmp_path, "scanA")
    c = EmbeddingCache(cache_dir=tmp_path)
    c.get_many("scanA", [KEY], lambda k: torch.zeros(3, 8, 8), lambda b: 1 / 0)
    assert c.disk_hits == 1 and c.encoded == 0


# --------------------------------------------------------------------------- sessions
def test_session_without_volume_signature_is_refused(tmp_path):
    from sam_med import io as smio
    from sam_med.io.npz import read_npz_arrays
    from sam_med.session import Session

    a = smio.load(small_nifti(tmp_path / "a.nii.gz"))
    other = np.random.default_rng(5).normal(0, 100, (12, 12, 6)).astype(np.float32)
    b = smio.load(small_nifti(tmp_path / "b.nii.gz", other))
    s = Session(a)
    s.add_object("x", id=1)
    m = np.zeros(a.shape, bool)
    m[2:6, 2:6, 1:3] = True
    s.set_mask(1, m)
    path = tmp_path / "s.npz"
    s.save(path)
    arrays = read_npz_arrays(path)
    meta = json.loads(bytes(arrays["session_json"]))
    del meta["volume_signature"]
    arrays["session_json"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    path.write_bytes(buf.getvalue())
    with pytest.raises(SamMedError, match="volume signature"):
        Session.load(path, b)


# --------------------------------------------------------------------------- accepted entries
@pytest.fixture
def accepted(tmp_path):
    from sam_med import io as smio
    from sam_med.dataengine.accepted import write_entry
    from sam_med.prompts import make_box

    vol = smio.load(small_nifti(tmp_path / "scan.nii.gz"))
    lab = np.zeros(vol.shape, np.uint8)
    lab[2:6, 2:6, 1:3] = 1
    entry = write_entry(tmp_path / "acc", vol, lab,
                        [{"id": 1, "name": "x", "prompts": {"box": make_box([2, 2, 1, 5, 5, 2]).to_json()}}])
    return entry, vol


def test_accepted_mask_edited_is_refused(accepted, tmp_path):
    from sam_med import io as smio
    from sam_med.dataengine.accepted import AcceptedEntry

    entry, vol = accepted
    lab = np.zeros(vol.shape, np.uint8)
    lab[0:8, 0:8, 0:4] = 1
    smio.save_label(lab, entry.mask_path, like=vol)
    with pytest.raises(SamMedError, match="differs from the one accepted"):
        AcceptedEntry.read(entry.dir).load_mask()


def test_accepted_entry_pointed_at_another_scan_is_refused(accepted, tmp_path):
    from sam_med.dataengine.accepted import AcceptedEntry, scan_checksum

    entry, _ = accepted
    other = small_nifti(tmp_path / "other.nii.gz", np.ones((12, 12, 6), np.float32))
    rec = json.loads((entry.dir / "entry.json").read_text())
    digest, n = scan_checksum(str(other))
    rec["scan"].update(path=str(other), sha256=digest, bytes=n)  # the other scan's real checksum
    (entry.dir / "entry.json").write_text(json.dumps(rec))
    e = AcceptedEntry.read(entry.dir)
    e.verify()  # the scan itself is intact...
    with pytest.raises(SamMedError, match="another scan"):
        e.load_mask()  # ...but the mask was accepted for another one


def test_accepted_entry_without_mask_checksum_is_refused(accepted):
    from sam_med.dataengine.accepted import AcceptedEntry

    entry, _ = accepted
    rec = json.loads((entry.dir / "entry.json").read_text())
    del rec["mask"]
    (entry.dir / "entry.json").write_text(json.dumps(rec))
    with pytest.raises(SamMedError, match="mask.sha256"):
        AcceptedEntry.read(entry.dir)
    assert AcceptedEntry.read is not None and entry.load_mask().shape == (12, 12, 6)
