"""Issue #28 problem 2: a commit journal is replayed only when it is ours, well-formed and
replayed by the command that wrote it; never by an unrelated start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import pytest

from sam_med.io import journal
from sam_med.io.atomic import OutputSet, atomic_path, atomic_write_text
from _reliability import run_cli, small_nifti


@pytest.fixture
def tmpdir_root(tmp_path, monkeypatch):
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _forge(folder, pairs, **over):
    """A journal as a killed sam-med would have left it in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rec = {"format": journal.FORMAT, "pid": int(folder.name.split("-")[1]) if folder.name.startswith("stage-") else 0,
           "uid": os.geteuid(), **journal.command_identity(),
           "files": [{"tmp": str(t), "dest": str(d), "before": journal._state(str(d)),
                      "tmp_ino": os.lstat(t).st_ino if os.path.lexists(t) else 0,
                      "parent": os.path.realpath(os.path.dirname(str(d)))} for t, d in pairs]}
    rec.update(over)
    (folder / journal.JOURNAL).write_text(json.dumps(rec))
    return rec


def test_issue_reproduction_foreign_journal_in_temp_folder_is_ignored(tmp_path, tmpdir_root, capsys):
    victim = tmp_path / "bashrc"
    victim.write_text("mine\n")
    evil = tmpdir_root / "sam-med-stage-999999-x"
    evil.mkdir()
    (evil / "p").write_text("evil\n")
    (evil / "commit-journal.json").write_text(json.dumps([[str(evil / "p"), str(victim)]]))
    scan = small_nifti(tmp_path / "scan.nii.gz")
    rc, _, _ = run_cli(capsys, "info", scan)
    assert rc == 0 and victim.read_text() == "mine\n"
    # and a writer starting afterwards does not touch it either
    atomic_write_text(tmp_path / "other.txt", "x")
    assert victim.read_text() == "mine\n"


def test_private_root_is_0700_and_owner_checked(tmpdir_root, tmp_path):
    root = journal.private_root()
    assert root and (os.stat(root).st_mode & 0o777) == 0o700 and os.stat(root).st_uid == os.geteuid()
    os.rmdir(root)
    os.symlink(tmp_path, root)  # someone else's link in the shared temp folder
    assert journal.private_root() is None
    out = tmp_path / "d" / "o.txt"
    out.parent.mkdir()
    with atomic_path(out) as t:  # staged beside the destination instead
        assert os.path.dirname(t) == str(out.parent)
        open(t, "w").write("x")
    assert out.read_text() == "x"


@pytest.mark.parametrize("attack", ["dotdot", "outside", "symlink", "wrong_pid"])
def test_malformed_or_foreign_journal_is_removed_not_replayed(attack, tmp_path, tmpdir_root, capsys):
    root = journal.private_root()
    pid = _dead_pid()
    folder = type(tmp_path)(root) / f"stage-{pid}-a"
    folder.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("mine\n")
    src = folder / "s" / "victim.txt"
    src.parent.mkdir()
    if attack == "symlink":
        os.symlink("/etc/passwd", src)
    elif attack == "outside":
        src = tmp_path / "elsewhere.txt"
        src.write_text("evil\n")
    else:
        src.write_text("evil\n")
    tmp_in_journal = str(src)
    if attack == "dotdot":
        tmp_in_journal = str(folder / "s" / ".." / "s" / "victim.txt")
    rec = _forge(folder, [(src, victim)], **({"pid": pid + 1} if attack == "wrong_pid" else {}))
    rec["files"][0]["tmp"] = tmp_in_journal
    (folder / journal.JOURNAL).write_text(json.dumps(rec))
    atomic_write_text(victim.with_suffix(".other"), "x")  # a write elsewhere: journal untouched
    assert folder.exists()
    journal.recover([str(victim)], root)  # the same command now writes the victim
    err = capsys.readouterr().err
    assert victim.read_text() == "mine\n" and not folder.exists()
    assert err.count("sam-med: note: removed the unfinished commit journal") == 1, err


def _killed_commit(tmp_path, root):
    """Two staged outputs, journal written, the first renamed, then 'SIGKILL'."""
    a, b = tmp_path / "out" / "seg.nii.gz", tmp_path / "out" / "seg.json"
    a.parent.mkdir()
    a.write_text("old a")
    b.write_text("old b")
    pid = _dead_pid()
    folder = type(tmp_path)(root) / f"stage-{pid}-k"
    (folder / "1").mkdir(parents=True)
    (folder / "2").mkdir()
    ta, tb = folder / "1" / a.name, folder / "2" / b.name
    ta.write_text("new a")
    tb.write_text("new b")
    _forge(folder, [(ta, a), (tb, b)])
    os.replace(ta, a)
    return a, b, folder


def test_same_command_finishes_its_killed_commit(tmp_path, tmpdir_root):
    root = journal.private_root()
    a, b, folder = _killed_commit(tmp_path, root)
    journal.recover([str(b)], root)
    assert a.read_text() == "new a" and b.read_text() == "new b" and not folder.exists()


def test_unrelated_command_never_replays(tmp_path, tmpdir_root, capsys, monkeypatch):
    root = journal.private_root()
    a, b, folder = _killed_commit(tmp_path, root)
    rc, _, _ = run_cli(capsys, "info", small_nifti(tmp_path / "scan.nii.gz"))
    assert rc == 0 and b.read_text() == "old b" and folder.exists()
    monkeypatch.setattr(sys, "argv", ["sam-med", "segment", "something", "else"])
    journal.recover([str(b)], root)  # another command writing b: the journal is dropped
    assert b.read_text() == "old b" and not folder.exists()
    assert "another command" in capsys.readouterr().err


def test_stale_journal_over_a_newer_file_is_removed_with_a_note(tmp_path, tmpdir_root, capsys):
    root = journal.private_root()
    a, b, folder = _killed_commit(tmp_path, root)
    b.write_text("the user's newer file")
    journal.recover([str(b)], root)
    assert b.read_text() == "the user's newer file" and not folder.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "changed after the killed run" in err[0]


def test_output_set_journal_records_the_command(tmp_path, tmpdir_root, monkeypatch):
    seen = {}
    real = journal.write_journal

    def spy(folder, files):
        real(folder, files)
        seen.update(json.loads(open(os.path.join(folder, journal.JOURNAL)).read()))

    monkeypatch.setattr("sam_med.io.atomic.write_journal", spy)
    with OutputSet() as outs:
        atomic_write_text(tmp_path / "a.txt", "a")
        atomic_write_text(tmp_path / "b.txt", "b")
        outs.commit()
    assert seen["pid"] == os.getpid() and seen["argv"] == [str(a) for a in sys.argv[1:]]
    assert [os.path.basename(f["dest"]) for f in seen["files"]] == ["a.txt", "b.txt"]
    assert all(f["tmp"].startswith(journal.private_root() + os.sep) for f in seen["files"])
