"""Where temporaries are staged, and the commit journal that finishes a killed commit.

**Staging.** Temporaries live in this user's private folder ``<tempdir>/sam-med-<uid>``
(created mode 0700; used only when it is a real folder, not a link, owned by this user and
closed to others) when it is on the destination's file system, else beside the
destination as ``.tmp-<name>-*``. Nothing is ever staged in a shared, world-writable place.

**Journal.** Before the renames of an :class:`~sam_med.io.atomic.OutputSet`, the set writes
``commit-journal.json`` in its staging folder: the command (arguments and working folder),
and per file the temporary, the destination, the destination's state before the commit
(inode, size, mtime or absent) and its parent folder resolved. If the process is killed
between two renames, the journal is **replayed only** when

* it lies in this user's private folder, in a staging folder of a dead process whose pid
  the folder name and the journal agree on;
* the command now writing to one of its destinations is the same command (same arguments,
  same working folder) -- an unrelated command never replays anything;
* every temporary is a regular file (not a link) inside that staging folder, every path is
  absolute and normalised (no ``..``), no destination is a link, and each destination's
  folder still resolves where it did;
* no destination changed since: each one is still in its recorded state, or already holds
  the renamed temporary.

A journal that fails a check is removed with a one-line note on stderr (the newer files stay
as they are). Staging folders of dead processes without a journal are removed silently.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile


JOURNAL = "commit-journal.json"
FORMAT = "sam-med-journal/1"
_MAX_JOURNAL_BYTES = 1 << 20


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    return True


def private_root(base: str | None = None, create: bool = True) -> str | None:
    """This user's private staging folder under ``base`` (the temp folder), or None when it
    cannot be made safe (exists as a link, owned by someone else, open to others)."""
    base = base or tempfile.gettempdir()
    uid = os.geteuid() if hasattr(os, "geteuid") else 0
    root = os.path.join(base, f"sam-med-{uid}")
    try:
        if create:
            try:
                os.mkdir(root, 0o700)
            except FileExistsError:
                pass
        st = os.lstat(root)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
        return None
    if st.st_mode & 0o077:
        try:
            os.chmod(root, 0o700)
        except OSError:
            return None
    return root


def command_identity() -> dict:
    """What "the same command" means for a replay: its arguments and working folder."""
    return {"argv": [str(a) for a in sys.argv[1:]], "cwd": os.getcwd()}


def _state(path: str) -> list | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def write_journal(folder: str, files: list[tuple[str, str]]) -> None:
    """Record ``(temporary, destination)`` pairs (temporaries inside ``folder``) before the renames."""
    rec = {"format": FORMAT, "pid": os.getpid(), "uid": os.geteuid() if hasattr(os, "geteuid") else 0,
           **command_identity(),
           "files": [{"tmp": t, "dest": d, "before": _state(d), "tmp_ino": os.lstat(t).st_ino,
                      "parent": os.path.realpath(os.path.dirname(d))} for t, d in files]}
    path = os.path.join(folder, JOURNAL)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(rec, fh)
        fh.flush()
        os.fsync(fh.fileno())


def _note(msg: str) -> None:
    print(f"sam-med: note: {msg}", file=sys.stderr)


def _stage_pid(name: str) -> int | None:
    if not name.startswith("stage-"):
        return None
    try:
        return int(name[len("stage-"):].split("-", 1)[0])
    except ValueError:
        return None


def _read(folder: str) -> dict | None:
    """The journal of ``folder`` (None: there is none); raises ValueError when it is not ours/valid."""
    path = os.path.join(folder, JOURNAL)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_JOURNAL_BYTES:
        raise ValueError("not a regular journal file")
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        raise ValueError("written by another user")
    with open(path, encoding="utf-8") as fh:
        rec = json.load(fh)
    if not isinstance(rec, dict) or rec.get("format") != FORMAT or not isinstance(rec.get("files"), list):
        raise ValueError("not a sam-med journal")
    return rec


def _problem(folder: str, rec: dict) -> str | None:
    """Why ``rec`` (the journal of ``folder``) must not be replayed; None when it may."""
    if rec.get("pid") != _stage_pid(os.path.basename(folder)):
        return "its pid is not its folder's"
    for f in rec["files"]:
        if not isinstance(f, dict) or not all(isinstance(f.get(k), str) for k in ("tmp", "dest", "parent")):
            return "malformed entry"
        tmp, dest = f["tmp"], f["dest"]
        for p in (tmp, dest):
            if not os.path.isabs(p) or os.path.normpath(p) != p or ".." in p.split(os.sep):
                return f"path {p!r} is not absolute and normalised"
        if not tmp.startswith(folder + os.sep):
            return f"temporary {tmp} lies outside its staging folder"
        if os.path.realpath(os.path.dirname(dest)) != f["parent"]:
            return f"the folder of {dest} now resolves elsewhere"
        if os.path.islink(dest):
            return f"{dest} is a link"
        now = _state(dest)
        if os.path.lexists(tmp):
            if not stat.S_ISREG(os.lstat(tmp).st_mode):
                return f"temporary {tmp} is not a regular file"
            if now != f.get("before"):
                return f"{dest} changed after the killed run"
        elif now is None or now[0] != f.get("tmp_ino"):
            return f"{dest} changed after the killed run"
    return None


def _replay(rec: dict) -> list[str]:
    done = []
    for f in rec["files"]:
        if os.path.lexists(f["tmp"]):
            os.replace(f["tmp"], f["dest"])
            done.append(f["dest"])
    return done


def recover(dests, root: str | None = None) -> None:
    """Before this process writes ``dests``: finish (or drop) killed commits of the same command
    that wrote to any of them (see the module docstring). Other journals are left alone."""
    root = root or private_root(create=False)
    if root is None or not os.path.isdir(root):
        return
    wanted = {os.path.abspath(os.fspath(d)) for d in dests}
    me = command_identity()
    for name in sorted(os.listdir(root)):
        pid = _stage_pid(name)
        if pid is None or pid == os.getpid() or pid_alive(pid):
            continue
        folder = os.path.join(root, name)
        try:
            rec = _read(folder)
        except (OSError, ValueError) as exc:
            _note(f"removed an unreadable commit journal in {folder} ({exc})")
            shutil.rmtree(folder, ignore_errors=True)
            continue
        if rec is None:
            shutil.rmtree(folder, ignore_errors=True)
            continue
        dests_of = {f.get("dest") for f in rec["files"] if isinstance(f, dict)}
        if not wanted & dests_of:
            continue
        same = rec.get("argv") == me["argv"] and rec.get("cwd") == me["cwd"]
        why = _problem(folder, rec) if same else "another command wrote it"
        if why is None:
            _replay(rec)
        else:
            _note(f"removed the unfinished commit journal of an earlier run (pid {rec.get('pid')}): {why}; "
                  f"its files were left as they are")
        shutil.rmtree(folder, ignore_errors=True)


def sweep_orphans(root: str | None = None) -> None:
    """Remove staging folders of dead processes that hold no journal (nothing to finish).
    Journals are kept for the command that wrote them (:func:`recover`)."""
    root = root or private_root(create=False)
    if root is None or not os.path.isdir(root):
        return
    for name in os.listdir(root):
        pid = _stage_pid(name)
        if pid is None or pid == os.getpid() or pid_alive(pid):
            continue
        folder = os.path.join(root, name)
        if not os.path.lexists(os.path.join(folder, JOURNAL)):
            shutil.rmtree(folder, ignore_errors=True)
