"""Structure checks of user JSON done up front, before any object runs.

* :func:`read_prompts_file` — a ``--prompts`` file: a regular file of at most
  :data:`~sam_med.io.guards.MAX_JSON_BYTES`, UTF-8, JSON without absurd nesting,
  ``{"coords"?: "voxel"|"world", "objects": [{"id"?: 1..65535, "name"?: str,
  "box"?: [6 numbers] | null, "points"?: [[x, y, z(, label)], ...]}, ...]}``
  with unique ids. Coordinates are range-checked later against the volume
  (``ObjectPrompts.from_json``), still before the model loads.
* :func:`check_session_meta` — the JSON record and mask arrays of a saved
  session (``Session.load``): every field typed and in range, masks of the
  right packed length.
"""

from __future__ import annotations

import json
import math
from numbers import Real

import numpy as np

from ..errors import PromptError, SamMedError
from .guards import MAX_JSON_BYTES, read_bytes_limited

MAX_ID = 65535


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(float(v))


def check_object_id(v, where: str) -> int:
    if not _is_int(v) or not 1 <= v <= MAX_ID:
        raise PromptError(f"{where}: object id must be an integer in 1..{MAX_ID}, got {json.dumps(v)[:40]}")
    return v


def loads_json(data: bytes, where: str, err=PromptError):
    """JSON from UTF-8 bytes; every failure (encoding, syntax, nesting) is one ``err``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise err(f"{where}: not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"{c} is not JSON")))
    except RecursionError:
        raise err(f"{where}: JSON nested too deeply") from None
    except ValueError as exc:
        raise err(f"{where}: not valid JSON ({exc})") from None


def _check_numbers(v, n: int | tuple[int, ...], where: str) -> None:
    sizes = (n,) if isinstance(n, int) else n
    if not isinstance(v, list) or len(v) not in sizes or not all(_is_num(x) for x in v):
        want = " or ".join(str(s) for s in sizes)
        raise PromptError(f"{where}: expected a list of {want} finite numbers, got {json.dumps(v)[:60]}")


def check_prompt_object(o, n: int, where: str) -> int:
    """Structure of one object of a prompts file; returns its id (default ``n``)."""
    if not isinstance(o, dict):
        raise PromptError(f"{where}: object {n} must be a JSON object, got {type(o).__name__}")
    oid = check_object_id(o.get("id", n), f"{where}: object {n}")
    w = f"{where}: object {oid}"
    if "name" in o and not isinstance(o["name"], str):
        raise PromptError(f"{w}: 'name' must be a string")
    if "name" in o and (len(o["name"]) > 256 or any(not c.isprintable() for c in o["name"])):
        raise PromptError(f"{w}: 'name' must be at most 256 printable characters (no control or escape codes)")
    if o.get("box") is not None:
        _check_numbers(o["box"], 6, f"{w}: 'box'")
    pts = o.get("points")
    if pts is not None:
        if not isinstance(pts, list):
            raise PromptError(f"{w}: 'points' must be a list of [x, y, z] or [x, y, z, label]")
        from ..prompts import MAX_POINTS

        if len(pts) > MAX_POINTS:
            raise PromptError(f"{w}: {len(pts):,} points; at most {MAX_POINTS:,} per object")
        for i, p in enumerate(pts):
            if not isinstance(p, list) or len(p) not in (3, 4):
                raise PromptError(f"{w}: point {i + 1}: expected [x, y, z] or [x, y, z, label], "
                                  f"got {json.dumps(p)[:60]}")
            _check_numbers(p[:3], 3, f"{w}: point {i + 1}")
            if len(p) == 4 and (p[3] not in (0, 1) or isinstance(p[3], float)):
                raise PromptError(f"{w}: point {i + 1}: label must be 0 or 1, got {p[3]}")
    kb = o.get("key_slice_box")
    if kb is not None:
        if not isinstance(kb, dict) or not {"slice", "range", "rect"} <= set(kb) or set(kb) - {"axis", "slice", "range", "rect"}:
            raise PromptError(f"{w}: 'key_slice_box' must be {{\"axis\", \"slice\", \"range\", \"rect\"}}")
        if kb.get("axis", 2) not in (0, 1, 2) or isinstance(kb.get("axis", 2), bool):
            raise PromptError(f"{w}: 'key_slice_box' axis must be 0, 1 or 2")
        _check_numbers([kb["slice"]], 1, f"{w}: 'key_slice_box' slice")
        _check_numbers(kb["range"], 2, f"{w}: 'key_slice_box' range")
        _check_numbers(kb["rect"], 4, f"{w}: 'key_slice_box' rect")
    if o.get("box") is None and not pts and kb is None:
        raise PromptError(f"{w}: has neither a box, a key-slice box nor points")
    return oid


def read_prompts_file(path) -> dict:
    """The validated content of a prompts JSON file (see the module docstring)."""
    from ..errors import InputFileError

    try:
        data = read_bytes_limited(path, MAX_JSON_BYTES, "prompts file")
    except InputFileError as exc:
        raise PromptError(str(exc)) from None
    spec = loads_json(data, str(path))
    if not isinstance(spec, dict) or not isinstance(spec.get("objects"), list):
        raise PromptError(f"{path}: expected {{\"coords\": ..., \"objects\": [...]}}")
    if spec.get("coords", "voxel") not in ("voxel", "world"):
        raise PromptError(f"{path}: 'coords' must be \"voxel\" or \"world\", got {json.dumps(spec.get('coords'))[:40]}")
    if len(spec["objects"]) > MAX_ID:
        raise PromptError(f"{path}: {len(spec['objects'])} objects; at most {MAX_ID} fit a label map")
    seen: set[int] = set()
    for n, o in enumerate(spec["objects"], 1):
        oid = check_prompt_object(o, n, str(path))
        if oid in seen:
            raise PromptError(f"{path}: object id {oid} appears twice")
        seen.add(oid)
    return spec


def volume_signature(array: np.ndarray) -> str:
    """Hex digest of a volume's voxels (shape, dtype, bytes): which scan a session belongs to."""
    import hashlib

    arr = np.ascontiguousarray(array)
    h = hashlib.blake2b(repr((arr.shape, arr.dtype.str)).encode(), digest_size=16)
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def check_session_meta(meta, packed: dict, where: str) -> None:
    """Raise :class:`SamMedError` unless a session record is well formed (see module docstring)."""
    def bad(msg: str):
        raise SamMedError(f"{where}: not a valid sam-med session ({msg})")

    if not isinstance(meta, dict):
        bad("the record is not a JSON object")
    if meta.get("format") != "sam-med-session/1":
        bad(f"format {json.dumps(meta.get('format'))[:40]}")
    shape = meta.get("shape")
    if not isinstance(shape, list) or len(shape) != 3 or not all(_is_int(s) and s > 0 for s in shape):
        bad("'shape' must be 3 positive integers")
    aff = meta.get("affine")
    try:
        a = np.asarray(aff, dtype=np.float64)
    except (TypeError, ValueError):
        a = None
    if a is None or a.shape != (4, 4) or not np.all(np.isfinite(a)):
        bad("'affine' must be a finite 4x4 matrix")
    if meta.get("overlap", "last") not in ("last", "first", "locked-first"):
        bad("unknown 'overlap' rule")
    objs = meta.get("objects")
    if not isinstance(objs, list):
        bad("'objects' must be a list")
    seen = set()
    for o in objs:
        if not isinstance(o, dict):
            bad("an object is not a JSON object")
        try:
            oid = check_object_id(o.get("id"), "object")
        except PromptError as exc:
            bad(str(exc))
        if oid in seen:
            bad(f"object id {oid} appears twice")
        seen.add(oid)
        if not isinstance(o.get("name"), str) or any(not c.isprintable() for c in o["name"]):
            bad(f"object {oid}: 'name' must be a string of printable characters")
        col = o.get("color")
        if not isinstance(col, list) or len(col) not in (3, 4) or not all(_is_num(c) and 0 <= c <= 1 for c in col):
            bad(f"object {oid}: 'color' must be 3 or 4 numbers in 0..1")
        if not isinstance(o.get("locked", False), bool):
            bad(f"object {oid}: 'locked' must be true or false")
        if "box" in o or "points" in o or "key_slice_box" in o:
            try:
                check_prompt_object(o, oid, "session")
            except PromptError as exc:
                bad(str(exc))
    need = (int(np.prod(shape)) + 7) // 8  # masks are packed bits of the recorded shape
    for key, arr in packed.items():
        try:
            kid = int(key[len("mask_"):])
        except ValueError:
            bad(f"unexpected array {key!r}")
        if kid not in seen:
            bad(f"mask {key!r} belongs to no object")
        if arr.dtype != np.uint8 or arr.ndim != 1 or arr.size != need:
            bad(f"mask {key!r} has {arr.size} {arr.dtype} values, expected {need} packed uint8")
