"""The package's one atomic writer, and output sets committed together.

Every file sam-med writes goes through :func:`atomic_path` (a writer fills a
temporary path, renamed onto the destination on success) or
:func:`atomic_write_bytes`. Temporaries are *staged* in this user's private
folder (``<tempdir>/sam-med-<uid>/stage-<pid>-*``, mode 0700, owner checked; see
:mod:`.journal`) when it is on the destination's file system, else beside the
destination as ``.tmp-<name>-*``; a killed process leaves nothing next to the output.

An :class:`OutputSet` groups the outputs of one run: inside ``with OutputSet()
as outs:`` every atomic write is staged and nothing reaches its destination
until ``outs.commit()``, which creates missing output folders and renames the
files in the order they were written (write the sidecar last). Leaving the block
without commit (error, SIGTERM, SIGINT, SIGHUP) deletes every temporary. The
staged files are fsynced first, so the renames take microseconds; they run with
those signals blocked, and only SIGKILL inside that window can split a set. Its
commit journal is then finished by the next run of *the same command* writing
those destinations, never by another one (:mod:`.journal`).
"""

from __future__ import annotations

import contextvars
import os
import shutil
import signal
import tempfile
import threading
from contextlib import contextmanager

from ..errors import OutputError
from .journal import pid_alive, private_root, recover, sweep_orphans, write_journal

_ACTIVE: contextvars.ContextVar["OutputSet | None"] = contextvars.ContextVar("sam_med_output_set", default=None)
_CATCH = (signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """SIGTERM/SIGHUP turned into an exception so that temporaries are cleaned up."""


def default_file_mode() -> int:
    """0o666 minus the process umask: the mode a plain ``open(path, "w")`` would give."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _ext(name: str) -> str:
    low = name.lower()
    for ext in (".nii.gz", ".tar.gz", ".hdr.gz"):
        if low.endswith(ext):
            return name[-len(ext):]
    return os.path.splitext(name)[1]


def sweep_stale(root: str | None = None) -> None:
    """Remove staging folders of dead sam-med processes that hold no commit journal (run at
    every ``sam-med`` start; ``root``: the temp folder). Journals are never replayed here:
    only the command that wrote them does that (:func:`.journal.recover`)."""
    sweep_orphans(private_root(root, create=False))


def _existing_ancestor(folder: str) -> str:
    while not os.path.exists(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return folder


def _check_name_lengths(path: str, anc: str) -> None:
    """Refuse names the file system cannot hold before any folder is made (else a long
    ``--out`` would leave the folders made before the name that fails)."""
    try:
        name_max, path_max = os.pathconf(anc, "PC_NAME_MAX"), os.pathconf(anc, "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):
        name_max, path_max = 255, 4096
    rest = os.path.relpath(path, anc).split(os.sep)
    long = [p for p in rest if len(os.fsencode(p)) > name_max]
    if long:
        raise OutputError(f"{path[:80]}...: the name {long[0][:40]}... is longer than {name_max} bytes")
    if len(os.fsencode(path)) >= path_max:
        raise OutputError(f"{path[:80]}...: the path is longer than {path_max} bytes")


def check_destination(path: str) -> str:
    """Absolute ``path`` after checking it can be written: not a folder, and its nearest
    existing ancestor folder is a folder (``FILE/x.nii.gz`` is refused) and writable."""
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if os.path.isdir(path):
        raise OutputError(f"{path}: is a folder")
    if os.path.lexists(path) and not os.path.isfile(path):
        raise OutputError(f"{path}: exists and is not a regular file")
    anc = _existing_ancestor(os.path.dirname(path))
    if not os.path.isdir(anc):
        raise OutputError(f"{path}: {anc} is a file, not a folder")
    _check_name_lengths(path, anc)
    if not os.access(anc, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: the folder {anc} is not writable")
    return path


class _Stage:
    """A private scratch folder holding temporaries (same file system as the destination when possible)."""

    def __init__(self) -> None:
        self.root: str | None = None

    def new_path(self, dest: str) -> str:
        folder = os.path.dirname(dest)
        anc = _existing_ancestor(folder)
        base = private_root()
        recover([dest], base)  # a killed commit of this same command onto dest: finished or dropped
        try:
            same_fs = base is not None and os.stat(base).st_dev == os.stat(anc).st_dev
        except OSError:
            same_fs = False
        name = os.path.basename(dest)
        ext = _ext(name)
        if not same_fs:
            if not os.path.isdir(folder):
                raise OutputError(f"{dest}: the output folder {folder} does not exist")
            fd, tmp = tempfile.mkstemp(prefix=".tmp-" + name[: len(name) - len(ext)] + "-", suffix=ext, dir=folder)
            os.close(fd)
            return tmp
        if self.root is None:
            sweep_orphans(base)  # what killed runs left without a journal
            self.root = tempfile.mkdtemp(prefix=f"stage-{os.getpid()}-", dir=base)
        sub = tempfile.mkdtemp(dir=self.root)
        return os.path.join(sub, name)  # same base name: writers that derive names from it keep working

    def cleanup(self) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


def fsync_path(path) -> None:
    """Flush one file (or folder) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _install(src: str, dest: str) -> None:
    """Move a finished temporary onto ``dest`` (creating missing folders)."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    os.chmod(src, default_file_mode())
    try:
        os.replace(src, dest)
    except OSError as exc:
        if exc.errno != 18:  # EXDEV: copy beside the destination, then rename
            raise
        fd, near = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(dest) + "-", dir=os.path.dirname(dest))
        os.close(fd)
        try:
            shutil.copyfile(src, near)
            os.chmod(near, default_file_mode())
            os.replace(near, dest)
        finally:
            if os.path.exists(near):
                os.unlink(near)
        os.unlink(src)


@contextmanager
def signals_as_exceptions():
    """While active (main thread only), SIGTERM/SIGHUP raise :class:`Interrupted` so that
    ``finally`` blocks delete temporaries; SIGINT already raises KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Interrupted(f"signal {signum}")

    old = {}
    for s in _CATCH:
        try:
            old[s] = signal.signal(s, handler)
        except (ValueError, OSError):
            pass
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextmanager
def _signals_blocked():
    sigs = {signal.SIGINT, *_CATCH}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    except (AttributeError, OSError, ValueError):
        old = None
    try:
        yield
    finally:
        if old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


class OutputSet:
    """Outputs of one run, written to temporaries and renamed together by :meth:`commit`."""

    def __init__(self) -> None:
        self._stage = _Stage()
        self._files: list[tuple[str, str]] = []  # (temporary, destination) in write order
        self._token = None
        self._sig = None
        self.committed: list[str] = []

    def __enter__(self) -> "OutputSet":
        self._token = _ACTIVE.set(self)
        self._sig = signals_as_exceptions()
        self._sig.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.discard()
        finally:
            _ACTIVE.reset(self._token)
            self._sig.__exit__(None, None, None)

    def new_temp(self, dest: str) -> str:
        """A fresh temporary path for ``dest`` in this set's staging area (removed by commit/discard)."""
        return self._stage.new_path(dest)

    def add(self, tmp: str, dest: str) -> None:
        """Stage the finished temporary ``tmp`` as the content of ``dest`` (a rewrite replaces it)."""
        for i, (_, d) in enumerate(self._files):
            if d == dest:  # rewritten in the same run: the later content wins
                if os.path.exists(self._files[i][0]):
                    os.unlink(self._files[i][0])
                del self._files[i]
                break
        self._files.append((tmp, dest))

    def staged(self, dest: str) -> str | None:
        """Temporary holding ``dest``'s pending content (None when nothing is staged for it)."""
        dest = os.path.abspath(os.fspath(dest))
        for tmp, d in self._files:
            if d == dest:
                return tmp
        return None

    def commit(self) -> list[str]:
        """Rename every staged file onto its destination, in write order; returns the destinations."""
        for tmp, dest in self._files:  # data on disk first: the renames below then take microseconds
            fsync_path(tmp)              # (ext4 otherwise flushes during rename-over-existing)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            os.chmod(tmp, default_file_mode())
        with _signals_blocked():
            self._write_journal()  # a SIGKILL during the renames is finished by the next start
            for tmp, dest in self._files:
                _install(tmp, dest)
                self.committed.append(dest)
            self._files = []
        self._stage.cleanup()
        return list(self.committed)

    def _write_journal(self) -> None:
        root = self._stage.root
        if root is None or not all(t.startswith(root + os.sep) for t, _ in self._files):
            return  # temporaries beside their destinations (another file system): no journal
        write_journal(root, self._files)

    def discard(self) -> None:
        for tmp, _ in self._files:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self._files = []
        self._stage.cleanup()


def in_output_set() -> bool:
    """True inside ``with OutputSet():`` (outputs are staged; their folders are made at commit)."""
    return _ACTIVE.get() is not None


def readable_path(path) -> str:
    """Where ``path``'s current content is: its staged temporary inside an uncommitted
    :class:`OutputSet`, else ``path`` itself (used to hash an output before commit)."""
    outs = _ACTIVE.get()
    p = os.path.abspath(os.fspath(path))
    if outs is not None:
        tmp = outs.staged(p)
        if tmp is not None:
            return tmp
    return p


@contextmanager
def atomic_path(path, *, overwrite: bool = True, make_folders: bool = False):
    """Yield a temporary path (same base name / extension as ``path``); on success it is
    renamed onto ``path`` — or, inside an :class:`OutputSet`, kept until the set commits.
    On any error (or SIGTERM/SIGHUP/SIGINT) the temporary is deleted. Outside a set, a
    missing output folder is an error unless ``make_folders`` (a set makes them at commit)."""
    dest = check_destination(path)
    outs = _ACTIVE.get()
    if outs is None and not make_folders and not os.path.isdir(os.path.dirname(dest)):
        raise OutputError(f"{dest}: the output folder {os.path.dirname(dest)} does not exist")
    if os.path.exists(dest) and not overwrite:
        raise OutputError(f"{dest}: already exists (pass overwrite=True to replace it)")
    stage = _Stage() if outs is None else None
    tmp = stage.new_path(dest) if stage is not None else outs.new_temp(dest)
    try:
        with signals_as_exceptions():
            yield tmp
            if not os.path.isfile(tmp):
                raise OutputError(f"{dest}: the writer produced no file")
            if outs is not None:
                outs.add(tmp, dest)
            else:
                with _signals_blocked():
                    _install(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        if outs is None:
            stage.cleanup()


def atomic_write_bytes(path, data: bytes, *, make_folders: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path, make_folders=make_folders) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def atomic_torch_save(obj, path) -> None:
    """``torch.save(obj, path)`` through :func:`atomic_path`."""
    import torch

    with atomic_path(path, make_folders=True) as tmp:
        torch.save(obj, tmp)


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


__all__ = ["OutputSet", "atomic_path", "atomic_write_bytes", "atomic_write_text", "atomic_torch_save",
           "check_destination", "default_file_mode", "in_output_set", "readable_path", "signals_as_exceptions", "sweep_stale",
           "Interrupted", "pid_alive"]
