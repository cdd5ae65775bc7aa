"""Reading npz files within their claims (the research npz, the CVPR 2025 challenge npz and
session files all use it): only ``.npy`` members, each checked against its header's size claim
and the memory budget before it is read; and the case those files hold (:class:`NpzCase`)."""

from __future__ import annotations

import os
import re
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np

from ..errors import InputFileError
from .guards import MAX_DEFLATE_RATIO, check_claimed_size, memory_budget, require_regular
from ..volume import Volume

__all__ = ["NpzCase", "modality_from_name", "read_npz_arrays", "check_npz_members"]


@dataclass
class NpzCase:
    """A research npz case: image (and label) as Volumes on the same grid."""

    image: Volume
    label: Volume | None
    boxes: np.ndarray | None
    raw: tuple[str, ...]  # the keys present in the file


def modality_from_name(path: str) -> str | None:
    m = re.match(r"^(CT|MR)[_-]", os.path.basename(path))
    return m.group(1) if m else None


#: a pickled member (challenge prompts) larger than this is refused (bytes)
MAX_PICKLE_BYTES = 8 << 20


def _npy_header(fh, version):
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fh)
    raise ValueError(f"unsupported .npy format version {version}")


def _member_claim(path, info: zipfile.ZipInfo) -> None:
    """A zip member's own size claim against its stored bytes (deflate ratio) and the budget;
    :class:`zipfile.ZipExtFile` never yields more than this claim."""
    if info.compress_type == zipfile.ZIP_STORED:
        ok = info.file_size <= info.compress_size
    else:
        ok = info.file_size <= info.compress_size * MAX_DEFLATE_RATIO + 4096
    if not ok or info.file_size > memory_budget():
        raise InputFileError(f"{path}: npz member {info.filename!r} claims {info.file_size:,} bytes from "
                             f"{info.compress_size:,} stored; corrupt or a zip bomb")


def read_npz_arrays(path, *, keys=None, object_loader=None) -> dict[str, object]:
    """The ``.npy`` members of an npz, each read within its claims (see :mod:`.guards`):

    * members whose name does not end in ``.npy`` are never read (``np.load`` would read
      them whole as bytes);
    * a member's size claim must fit its stored bytes and the memory budget; its ``.npy``
      header's array claim must fit the member and the budget, and all of them together
      the budget; exactly the claimed bytes are read (extra trailing data is ignored);
    * object (pickled) members go to ``object_loader(bytes, where)`` (at most
      :data:`MAX_PICKLE_BYTES`) and are refused when it is None.

    ``keys``: read only these members (others are skipped unread)."""
    path = require_regular(os.fspath(path))
    out: dict[str, object] = {}
    total = 0
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy") or info.is_dir():
                    continue
                key = info.filename[:-4]
                if keys is not None and key not in keys:
                    continue
                _member_claim(path, info)
                with zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    shape, fortran, dtype = _npy_header(fh, version)
                    where = f"{path}: '{key}'"
                    if dtype.hasobject:
                        if object_loader is None:
                            raise InputFileError(f"{where} holds Python objects; refused")
                        raw = fh.read(MAX_PICKLE_BYTES + 1)
                        if len(raw) > MAX_PICKLE_BYTES:
                            raise InputFileError(f"{where}: pickled data over {MAX_PICKLE_BYTES:,} bytes; refused")
                        out[key] = object_loader(raw, where)
                        continue
                    total += check_claimed_size(path, shape, dtype, available=info.file_size, compressed=False,
                                                what=f"member {info.filename!r}")
                    if total > memory_budget():
                        raise InputFileError(f"{path}: the npz arrays total {total:,} bytes, over the memory budget")
                    count = 1
                    for d in shape:
                        count *= int(d)
                    arr = np.empty(count, dtype=dtype)
                    view = memoryview(arr).cast("B") if count else memoryview(b"")
                    got = 0
                    while got < len(view):
                        n = fh.readinto(view[got: got + (16 << 20)])
                        if not n:
                            raise InputFileError(f"{where}: truncated ({got:,} of {len(view):,} bytes)")
                        got += n
                    out[key] = arr.reshape(shape, order="F" if fortran else "C")
    except InputFileError:
        raise
    except (OSError, ValueError, SyntaxError, TypeError, zipfile.BadZipFile, EOFError, NotImplementedError,
            zlib.error) as exc:
        raise InputFileError(f"{path}: cannot read npz ({exc.__class__.__name__}: {exc})") from exc
    return out


def check_npz_members(path) -> None:
    """Refuse, before any allocation, an npz whose members claim more than they can hold
    or than the memory budget (the checks of :func:`read_npz_arrays`, without reading)."""
    try:
        with zipfile.ZipFile(require_regular(os.fspath(path))) as zf:
            for info in zf.infolist():
                _member_claim(path, info)
    except (OSError, zipfile.BadZipFile) as exc:
        raise InputFileError(f"{path}: cannot read npz ({exc.__class__.__name__}: {exc})") from exc


