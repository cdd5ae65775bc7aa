"""Output-path safety: every output of a run checked against every input and each other.

Called by the CLI commands *before* the model loads (and by ``Session.save``):

* :func:`input_files` lists what a run reads: the image file, every file of a
  DICOM series (and, for a DICOM folder, every file under it), the prompts file,
  the checkpoint, a dataset's images / labels / index file.
* :func:`check_outputs` refuses an output that is one of those files (same file
  through symlinks, hard links or ``..``), two outputs that are the same file
  (``--session-out`` equal to ``--out``, or to ``--out``'s sidecar), and outputs
  whose folder cannot be made (a parent that is a file, not writable). Output
  folders are not created here: an :class:`~sam_med.io.atomic.OutputSet` makes
  them when the run's outputs are committed.
* :func:`check_output_folder` does the same for a report folder (``evaluate
  --out``): it must not hold any input file.
"""

from __future__ import annotations

import os
from typing import Iterable

from ..errors import OutputError
from .atomic import check_destination


def _key(path: str) -> tuple:
    """Identity of a path: (device, inode) when it exists, else its resolved path."""
    try:
        st = os.stat(path)
        return ("inode", st.st_dev, st.st_ino)
    except OSError:
        return ("path", os.path.realpath(path))


def input_files(volume=None, extra: Iterable = ()) -> list[str]:
    """Absolute paths of every file a run reads (see the module docstring)."""
    files: list[str] = []
    if volume is not None:
        if volume.source:
            files.append(volume.source)
        if volume.dicom is not None:
            files.extend(volume.dicom.file_paths)
        sf = volume.meta.get("source_files")
        if isinstance(sf, list):
            files.extend(str(x) for x in sf)
        root = volume.meta.get("source_dir") or (volume.source if volume.source and os.path.isdir(volume.source) else None)
        if root:
            files.extend(_walk(root))
    for p in extra:
        if p is None:
            continue
        p = os.fspath(p)
        files.extend(_walk(p) if os.path.isdir(p) else [p])
    out, seen = [], set()
    for f in files:
        a = os.path.abspath(f)
        if a not in seen:
            seen.add(a)
            out.append(a)
    return out


def _walk(root: str, limit: int = 200_000) -> list[str]:
    found = []
    for dirpath, _dirs, names in os.walk(root):
        found.extend(os.path.join(dirpath, n) for n in names)
        if len(found) > limit:
            break
    return found


def check_outputs(outputs: dict[str, str | os.PathLike | None], inputs: Iterable[str]) -> dict[str, str]:
    """Validate ``{what: path}`` (None entries skipped) against ``inputs``; returns absolute paths.

    Raises :class:`OutputError` naming the option and the colliding file.
    """
    inputs = list(inputs)
    by_key = {}
    for p in inputs:
        by_key.setdefault(_key(p), p)
    done: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for what, path in outputs.items():
        if path is None:
            continue
        p = check_destination(path)
        k = _key(p)
        if k in by_key:
            raise OutputError(f"{what} {p}: refusing to overwrite the input file {by_key[k]}")
        if k in seen:
            raise OutputError(f"{what} {p}: is the same file as {seen[k]}")
        seen[k] = f"{what} {p}"
        done[what] = p
    return done


def check_output_folder(folder, inputs: Iterable[str], what: str = "--out") -> str:
    """A report folder must not be a file and must not hold (at any depth) an input file."""
    folder = os.path.abspath(os.path.expanduser(os.fspath(folder)))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise OutputError(f"{what} {folder}: is a file, not a folder")
    check_destination(os.path.join(folder, "x"))  # parents: a folder, writable
    real = os.path.realpath(folder)
    for p in inputs:
        rp = os.path.realpath(p)
        if rp == real or rp.startswith(real.rstrip(os.sep) + os.sep):
            raise OutputError(f"{what} {folder}: holds the input file {p}; choose a folder of its own")
    return folder
