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
* :func:`guard_run` is the one call a command makes for all of it: every output file and
  output folder of the run against every input it reads *or may read* (the scan's files and
  folders, the prompts, the model config, every place the checkpoint may be found, the
  embedding-cache entries), through symlinks, and nothing inside an input DICOM folder.
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


def _real(path: str) -> str:
    """``path`` resolved through symlinks (its folder too when it does not exist yet)."""
    p = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if os.path.lexists(p):
        return os.path.realpath(p)
    return os.path.join(os.path.realpath(os.path.dirname(p)), os.path.basename(p))


def _inside(path: str, folder: str) -> bool:
    folder = folder.rstrip(os.sep) + os.sep
    return path == folder.rstrip(os.sep) or path.startswith(folder)


def input_folders(volume) -> list[str]:
    """Folders a scan was read from that must never receive a file: a DICOM series' folders."""
    dirs: list[str] = []
    if volume is None:
        return dirs
    if volume.dicom is not None:
        dirs.extend(os.path.dirname(os.path.abspath(f)) for f in volume.dicom.file_paths)
    root = volume.meta.get("source_dir") or (volume.source if volume.source and os.path.isdir(volume.source) else None)
    if root:
        dirs.append(root)
    return sorted({_real(d) for d in dirs})


def guard_run(files: dict, folders: dict | None = None, *, volume=None, extra: Iterable = (),
              cache_dir=None, protect: Iterable = ()) -> dict[str, str]:
    """The output guard of one command, called before the model loads.

    ``files``: ``{option: path}`` of output files; ``folders``: ``{option: path}`` of output
    folders (``--cache-dir``, ``--accept-to``, a report folder). Inputs: ``volume`` (its
    files and DICOM folders), ``extra`` files/folders (prompts, dataset files, the model's
    config and checkpoint locations: ``sam_med.cli.common.guard_outputs`` adds them), the
    entries under ``cache_dir``; ``protect``: more folders no output
    may enter. Raises :class:`OutputError` (one line); returns the absolute output files.
    """
    extra = [e for e in extra if e is not None]
    inputs = input_files(volume, extra)
    dirs = input_folders(volume) + [_real(p) for p in protect if p is not None]
    cache = [] if not cache_dir else _walk(os.fspath(cache_dir)) if os.path.isdir(os.fspath(cache_dir)) else []
    cache_set = set(cache)
    done = check_outputs(files, inputs + cache)
    real_inputs = {_real(p): p for p in inputs + cache}
    for what, p in done.items():
        rp = _real(p)
        if rp in real_inputs:
            raise OutputError(f"{what} {p}: refusing to overwrite the input file {real_inputs[rp]}")
        for d in dirs:
            if _inside(rp, d):
                raise OutputError(f"{what} {p}: lies inside the input folder {d}; write it elsewhere")
        if cache_dir and _inside(rp, _real(cache_dir)):
            raise OutputError(f"{what} {p}: lies inside the embedding cache {cache_dir}; write it elsewhere")
    for what, folder in (folders or {}).items():
        if folder is None:
            continue
        rf = _real(folder)
        for d in dirs:
            if _inside(rf, d):
                raise OutputError(f"{what} {folder}: lies inside the input folder {d}; choose another folder")
        for rp, p in real_inputs.items():
            if p in cache_set and what == "--cache-dir":
                continue
            if _inside(rp, rf):
                raise OutputError(f"{what} {folder}: holds the input file {p}; choose a folder of its own")
        if os.path.lexists(rf) and not os.path.isdir(rf):
            raise OutputError(f"{what} {folder}: is a file, not a folder")
        check_destination(os.path.join(rf, "x"))
    return done
