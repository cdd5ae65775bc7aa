"""NRRD and MetaImage headers checked before SimpleITK allocates anything.

SimpleITK allocates the full array a header claims, then reads. So the header is parsed
here first and its claim (sizes x element size) is checked:

* the data file (detached ``data file:`` / ``ElementDataFile``, or the header file itself)
  must be a regular file: a FIFO, ``/dev/zero`` or another device is refused;
* raw data must be present in full; compressed data (gzip/zlib/bzip2) must fit the
  deflate ratio and is decompressed once as a stream, counting bytes (at most 1 MB held at
  a time), so a claim the data cannot fill is refused before the allocation;
* the claim must fit the memory budget (:func:`~sam_med.io.guards.memory_budget`).
"""

from __future__ import annotations

import bz2
import os
import zlib

from ..errors import InputFileError
from .guards import MAX_DEFLATE_RATIO, memory_budget, require_regular

_MAX_HEADER = 1 << 16
_NRRD_TYPES = {1: ("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t"),
               2: ("short", "short int", "signed short", "signed short int", "int16", "int16_t", "ushort",
                   "unsigned short", "unsigned short int", "uint16", "uint16_t"),
               4: ("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t", "float"),
               8: ("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64",
                   "int64_t", "ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t",
                   "double")}
_MET_TYPES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
              "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
              "MET_DOUBLE": 8}


def _bad(path, msg: str) -> InputFileError:
    return InputFileError(f"{path}: {msg}")


def _header_lines(path: str, nrrd: bool) -> tuple[list[str], int]:
    """Header lines and the byte offset where an attached payload starts."""
    with open(path, "rb") as fh:
        head = fh.read(_MAX_HEADER)
    lines, pos = [], 0
    while pos < len(head):
        end = head.find(b"\n", pos)
        if end < 0:
            break
        line = head[pos:end].rstrip(b"\r").decode("latin-1")
        pos = end + 1
        if nrrd and not line:
            return lines, pos
        lines.append(line)
        if not nrrd and line.split("=", 1)[0].strip() == "ElementDataFile":
            return lines, pos
    if nrrd:  # a header without the blank line: no attached data
        return lines, len(head)
    raise _bad(path, "MetaImage header without ElementDataFile in its first 64 kB")


def _count(path, values: str, what: str) -> int:
    try:
        dims = [int(v) for v in values.split()]
    except ValueError:
        raise _bad(path, f"{what} {values[:40]!r} are not whole numbers") from None
    if not dims or any(d < 0 for d in dims):
        raise _bad(path, f"{what} {values[:40]!r} are invalid")
    n = 1
    for d in dims:
        n *= d
    return n


def _data_file(path: str, name: str) -> str:
    name = name.strip()
    if name.upper().startswith("LIST") or len(name.split()) > 1:
        raise _bad(path, f"data split over several files ({name[:40]!r}) is not supported")
    p = name if os.path.isabs(name) else os.path.join(os.path.dirname(os.path.abspath(path)), name)
    return require_regular(p, "image data file")


def _stream_length(path: str, offset: int, kind: str, need: int) -> int:
    """Bytes a compressed payload expands to, counted without keeping them (stops at ``need``)."""
    d = bz2.BZ2Decompressor() if kind == "bzip2" else zlib.decompressobj(47)  # 47: zlib or gzip header
    got = 0
    with open(path, "rb") as fh:
        fh.seek(offset)
        while got < need:
            chunk = fh.read(1 << 20)
            if not chunk:
                break
            try:
                if kind == "bzip2":
                    got += len(d.decompress(chunk, max_length=need - got + 1))
                    while got < need and not d.needs_input and not d.eof:
                        got += len(d.decompress(b"", max_length=1 << 20))
                else:
                    out = d.decompress(chunk, 1 << 20)
                    got += len(out)
                    while d.unconsumed_tail and got < need:
                        got += len(d.decompress(d.unconsumed_tail, 1 << 20))
            except (zlib.error, OSError, EOFError) as exc:
                raise _bad(path, f"corrupt compressed image data ({exc})") from None
            if kind != "bzip2" and d.eof:
                break
    return got


def _check_claim(path: str, data: str, offset: int, claim: int, kind: str) -> None:
    budget = memory_budget()
    if claim > budget:
        raise _bad(path, f"the header claims {claim:,} bytes, over the memory budget of {budget:,} "
                         "(set SAM_MED_MAX_BYTES to raise it)")
    stored = max(os.path.getsize(data) - offset, 0)
    if kind == "raw":
        if stored < claim:
            raise _bad(path, f"the header claims {claim:,} bytes but the data file {data} holds {stored:,}; "
                             "truncated or corrupt")
        return
    if kind == "text":
        if stored < claim // 8:
            raise _bad(path, f"the header claims {claim:,} bytes but the text data holds {stored:,} characters")
        return
    if kind != "bzip2" and claim > stored * MAX_DEFLATE_RATIO:
        raise _bad(path, f"the header claims {claim:,} bytes but {stored:,} compressed bytes expand to at most "
                         f"{stored * MAX_DEFLATE_RATIO:,}; truncated or corrupt")
    got = _stream_length(data, offset, kind, claim)
    if got < claim:
        raise _bad(path, f"the header claims {claim:,} bytes but the compressed data holds {got:,}; "
                         "truncated or corrupt")


def check_nrrd(path: str) -> None:
    lines, end = _header_lines(path, nrrd=True)
    fields = {}
    for ln in lines[1:]:
        if ln.startswith("#") or ":" not in ln or ":=" in ln:
            continue
        k, v = ln.split(":", 1)
        fields[k.strip().lower()] = v.strip()
    typ = fields.get("type", "").lower()
    size = next((n for n, names in _NRRD_TYPES.items() if typ in names), None)
    if size is None:
        raise _bad(path, f"NRRD type {typ[:30]!r} is not a supported pixel type")
    claim = _count(path, fields.get("sizes", ""), "NRRD sizes") * size
    enc = fields.get("encoding", "raw").lower()
    kind = {"raw": "raw", "gzip": "gzip", "gz": "gzip", "bzip2": "bzip2", "bz2": "bzip2", "ascii": "text",
            "text": "text", "txt": "text"}.get(enc)
    if kind is None:
        raise _bad(path, f"NRRD encoding {enc[:20]!r} is not supported")
    name = fields.get("data file", fields.get("datafile"))
    data, offset = (_data_file(path, name), 0) if name else (path, end)
    skip = fields.get("byte skip", "0").strip()
    if skip.lstrip("-").isdigit() and int(skip) > 0 and kind == "raw":
        offset += int(skip)
    _check_claim(path, data, offset, claim, kind)


def check_metaimage(path: str) -> None:
    lines, end = _header_lines(path, nrrd=False)
    fields = {}
    for ln in lines:
        if "=" in ln:
            k, v = ln.split("=", 1)
            fields[k.strip()] = v.strip()
    size = _MET_TYPES.get(fields.get("ElementType", "").upper())
    if size is None:
        raise _bad(path, f"MetaImage ElementType {fields.get('ElementType', '')[:30]!r} is not supported")
    channels = fields.get("ElementNumberOfChannels", "1")
    claim = _count(path, fields.get("DimSize", ""), "MetaImage DimSize") * size * _count(path, channels, "channels")
    name = fields.get("ElementDataFile", "")
    data, offset = (path, end) if name.upper() == "LOCAL" else (_data_file(path, name), 0)
    hs = fields.get("HeaderSize", "0")
    if name.upper() != "LOCAL" and hs.isdigit():
        offset = int(hs)
    kind = "gzip" if fields.get("CompressedData", "False").lower() == "true" else "raw"
    _check_claim(path, data, offset, claim, kind)
