"""CVPR 2025 interactive-challenge npz files, read safely.

Keys (see ../shared/cvpr25/README.md): ``imgs`` uint8 (D, H, W); ``spacing`` (3,) in array
order (z, y, x) mm by default (``spacing_order="xyz"`` for files that keep (x, y, z), like
our research npz); ``boxes`` one dict per class (``z_min, z_max, z_mid, z_mid_x_min,
z_mid_y_min, z_mid_x_max, z_mid_y_max``, inclusive, x = column, y = row); ``clicks`` one
``{"fg": [[z, y, x], ...], "bg": [...]}`` per class; ``clicks_order`` per class the list of
``"fg"`` / ``"bg"`` / ``None``; ``prev_pred`` (D, H, W); ``gts`` (D, H, W) optional.
Class c is position c - 1 in these lists.

``boxes``, ``clicks`` and ``clicks_order`` are pickled object arrays. They are never given
to ``np.load(allow_pickle=True)``: :func:`safe_unpickle` accepts only dict, list, tuple, str,
int, float, bool, None, numpy integer/float scalars and plain numeric arrays, and raises
:class:`~sam_med.errors.InputFileError` for anything else before it is built.

Prompts come out in our voxel order (i, j, k) = (x, y, z): a challenge click (z, y, x)
becomes the :class:`~sam_med.prompts.Point` (x, y, z); a box becomes a
:class:`~sam_med.prompts.KeySliceBox` on axis 2 (z).
"""

from __future__ import annotations

import io as _io
import os
import pickle
import zipfile
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputFileError, PromptError
from ..prompts import MAX_POINTS, KeySliceBox, ObjectPrompts, Point, make_key_slice_box
from .npz_format import NpzCase, modality_from_name, read_npz_arrays
from ..volume import Volume, affine_from_geometry, lps_to_ras

PICKLED_KEYS = ("boxes", "clicks", "clicks_order")
BOX_KEYS = ("z_min", "z_max", "z_mid", "z_mid_x_min", "z_mid_y_min", "z_mid_x_max", "z_mid_y_max")
SPACING_ORDERS = ("zyx", "xyz")

# the only globals a pickle of these keys needs (numpy 1.x and 2.x module names)
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"refused to load {module}.{name} (only plain data is allowed)")
        import importlib

        obj = getattr(importlib.import_module(module), name)
        if name == "_reconstruct":
            return _checked_reconstruct(obj)
        if name == "scalar":
            return _checked_scalar(obj)
        return obj


def _plain_dtype(dt) -> bool:
    dt = np.dtype(dt)
    return dt.fields is None and dt.subdtype is None and dt.kind in "biufO"


def _checked_reconstruct(fn):
    def reconstruct(cls, shape, typecode):
        if cls is not np.ndarray:
            raise pickle.UnpicklingError(f"refused to build an array of class {cls!r}")
        return fn(cls, shape, typecode)
    return reconstruct


def _checked_scalar(fn):
    def scalar(dtype, *args):
        if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf":
            raise pickle.UnpicklingError(f"refused a numpy scalar of dtype {dtype!r}")
        return fn(dtype, *args)
    return scalar


#: values a pickled prompt list may hold once shared references are counted each time they
#: are used (a 2 kB pickle of shared lists can otherwise stand for 10^12 values)
MAX_PICKLE_VALUES = 1_000_000


def _check_plain(obj, where: str, depth: int = 0, budget: list | None = None) -> None:
    """Raise unless ``obj`` is plain data (after unpickling: checks array dtypes and nesting)
    of at most :data:`MAX_PICKLE_VALUES` values, shared references counted at every use."""
    budget = [MAX_PICKLE_VALUES] if budget is None else budget
    budget[0] -= 1
    if budget[0] < 0:
        raise InputFileError(f"{where}: more than {MAX_PICKLE_VALUES:,} values (shared references counted at "
                             "each use); refused")
    if depth > 16:
        raise InputFileError(f"{where}: nested too deeply")
    if obj is None or isinstance(obj, (bool, int, float, str, np.integer, np.floating, np.bool_)):
        return
    if isinstance(obj, np.ndarray):
        if not _plain_dtype(obj.dtype):
            raise InputFileError(f"{where}: array of dtype {obj.dtype} is not plain data")
        if obj.dtype == object:
            for v in obj.ravel():
                _check_plain(v, where, depth + 1, budget)
        else:
            budget[0] -= obj.size
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise InputFileError(f"{where}: dict key {k!r} is not a string")
            _check_plain(v, where, depth + 1, budget)
        return
    if isinstance(obj, (list, tuple)):
        for v in obj:
            _check_plain(v, where, depth + 1, budget)
        return
    raise InputFileError(f"{where}: {type(obj).__name__} is not plain data")


def safe_unpickle(data: bytes, where: str = "pickle"):
    """Unpickle ``data`` allowing plain data only; InputFileError (nothing executed) otherwise."""
    try:
        obj = _RestrictedUnpickler(_io.BytesIO(data)).load()
    except (pickle.UnpicklingError, AttributeError, TypeError, ValueError, EOFError, ImportError,
            IndexError, KeyError, MemoryError, RecursionError) as exc:
        raise InputFileError(f"{where}: refused: {exc.__class__.__name__}: {exc}") from None
    _check_plain(obj, where)
    return obj


def _object_array(raw: bytes, where: str):
    obj = safe_unpickle(raw, where)
    if not isinstance(obj, np.ndarray):
        raise InputFileError(f"{where} is not an array")
    return obj


def read_npz_members(path: str) -> dict[str, np.ndarray | object]:
    """Every array of an npz within its claims (:func:`~sam_med.io.npz.read_npz_arrays`);
    object arrays through :func:`safe_unpickle`, others without pickle."""

    return read_npz_arrays(path, object_loader=_object_array)


def is_challenge_npz(path: str) -> bool:
    """True when the npz carries any of the challenge's prompt keys (boxes / clicks)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
    except (OSError, zipfile.BadZipFile):
        return False
    return bool(names & {"clicks", "clicks_order"}) or ("boxes" in names and _pickled(path, "boxes"))


def _pickled(path: str, key: str) -> bool:
    with zipfile.ZipFile(path) as zf, zf.open(key + ".npy") as fh:
        f = _io.BytesIO(fh.read(4096))
    try:
        version = np.lib.format.read_magic(f)
        return _read_header(f, version)[2].hasobject
    except ValueError:
        return False


def _read_header(f, version):
    """(shape, fortran_order, dtype) of an .npy stream after its magic (public numpy API)."""
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    raise ValueError(f"unsupported .npy format version {version}")


@dataclass
class ChallengeCase:
    """One challenge npz: the image as a Volume (our (x, y, z) order), prompts per class."""

    path: str
    image: Volume
    spacing_zyx: np.ndarray
    prompts: list[ObjectPrompts]  # class c = index c - 1 (empty prompts: nothing for that class)
    prev_pred: np.ndarray | None = None  # (D, H, W)
    gts: np.ndarray | None = None  # (D, H, W)
    keys: tuple[str, ...] = field(default_factory=tuple)

    @property
    def num_classes(self) -> int:
        return len(self.prompts)


def _int(v, where: str) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer, float, np.floating)):
        raise InputFileError(f"{where}: expected a number, got {v!r}")
    if float(v) != int(v):
        raise InputFileError(f"{where}: expected a whole voxel index, got {v!r}")
    return int(v)


def _as_list(v, key: str, path: str) -> list:
    if isinstance(v, np.ndarray):
        v = list(v) if v.ndim == 1 else v.tolist()
    if not isinstance(v, (list, tuple)):
        raise InputFileError(f"{path}: '{key}' must be a list with one entry per class")
    return list(v)


def parse_box(b, dhw, c: int, path: str) -> KeySliceBox:
    where = f"{path}: boxes[{c - 1}] (class {c})"
    if not isinstance(b, dict):
        raise InputFileError(f"{where}: expected a dict with {', '.join(BOX_KEYS)}")
    missing = [k for k in BOX_KEYS if k not in b]
    if missing:
        raise InputFileError(f"{where}: missing {', '.join(missing)}")
    v = {k: _int(b[k], f"{where} {k}") for k in BOX_KEYS}
    D, H, W = dhw
    limit = {k: W if "_x_" in k else H if "_y_" in k else D for k in BOX_KEYS}
    bad = [k for k in BOX_KEYS if not 0 <= v[k] < limit[k]]
    if bad:
        raise InputFileError(f"{where}: {', '.join(f'{k}={v[k]}' for k in bad)} outside the volume "
                             f"(D, H, W) = {tuple(dhw)}")
    try:
        return make_key_slice_box(2, v["z_mid"], (v["z_min"], v["z_max"]),
                                  (v["z_mid_x_min"], v["z_mid_y_min"], v["z_mid_x_max"], v["z_mid_y_max"]),
                                  (W, H, D))
    except PromptError as exc:
        raise InputFileError(f"{where}: {exc}") from None


def parse_clicks(cl, order, dhw, c: int, path: str) -> list[Point]:
    """Class c's clicks in ``clicks_order`` as Points in (x, y, z) voxel order."""
    where = f"{path}: class {c}"
    if not isinstance(cl, dict) or set(cl) - {"fg", "bg"}:
        raise InputFileError(f"{where}: clicks must be a dict with 'fg' and 'bg' lists")
    lists = {k: _as_list(cl.get(k, []), f"clicks[{c - 1}][{k!r}]", path) for k in ("fg", "bg")}
    order = _as_list(order, f"clicks_order[{c - 1}]", path)
    if any(o not in ("fg", "bg", None) for o in order):
        raise InputFileError(f"{where}: clicks_order entries must be 'fg', 'bg' or None, got {order!r}")
    for k in ("fg", "bg"):
        if order.count(k) != len(lists[k]):
            raise InputFileError(f"{where}: clicks_order has {order.count(k)} {k!r} but clicks has "
                                 f"{len(lists[k])} {k} clicks")
    used = {"fg": 0, "bg": 0}
    points = []
    if len(order) > MAX_POINTS:
        raise InputFileError(f"{where}: {len(order):,} clicks; at most {MAX_POINTS:,} per class")
    for o in order:
        if o is None:
            continue
        zyx = lists[o][used[o]]
        used[o] += 1
        zyx = [_int(x, f"{where} {o} click") for x in _as_list(zyx, f"clicks[{c - 1}][{o!r}]", path)]
        if len(zyx) != 3:
            raise InputFileError(f"{where}: a click is [z, y, x], got {zyx}")
        if any(not 0 <= x < n for x, n in zip(zyx, dhw)):
            raise InputFileError(f"{where}: click {zyx} (z, y, x) outside the volume (D, H, W) = {tuple(dhw)}")
        points.append(Point((float(zyx[2]), float(zyx[1]), float(zyx[0])), o == "fg"))
    return points


def read_challenge(path, spacing_order: str = "zyx") -> ChallengeCase:
    """Read and validate a challenge npz; InputFileError (one line) for anything malformed."""
    path = os.fspath(path)
    if spacing_order not in SPACING_ORDERS:
        raise InputFileError(f"spacing order must be one of {SPACING_ORDERS}, got {spacing_order!r}")
    data = read_npz_members(path)
    for k in ("imgs", "spacing"):
        if k not in data:
            raise InputFileError(f"{path}: challenge npz has no {k!r} key (keys: {', '.join(data) or 'none'})")
    if "boxes" not in data and "clicks" not in data:
        raise InputFileError(f"{path}: challenge npz has neither 'boxes' nor 'clicks'")
    if ("clicks" in data) != ("clicks_order" in data):
        raise InputFileError(f"{path}: 'clicks' and 'clicks_order' must come together")
    imgs = np.asarray(data["imgs"])
    if imgs.ndim != 3 or imgs.dtype.kind not in "biuf":
        raise InputFileError(f"{path}: 'imgs' must be a (D, H, W) array of real numbers, got shape {imgs.shape} "
                             f"{imgs.dtype}")
    if imgs.dtype.kind == "f" and not np.all(np.isfinite(imgs)):
        raise InputFileError(f"{path}: 'imgs' holds {int((~np.isfinite(imgs)).sum()):,} NaN or infinite values")
    spacing = np.asarray(data["spacing"], dtype=np.float64).reshape(-1)
    if spacing.size != 3 or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputFileError(f"{path}: 'spacing' must be 3 positive numbers, got {spacing.tolist()}")
    spacing_zyx = spacing if spacing_order == "zyx" else spacing[::-1]
    dhw = imgs.shape
    boxes = _as_list(data["boxes"], "boxes", path) if "boxes" in data else None
    clicks = _as_list(data["clicks"], "clicks", path) if "clicks" in data else None
    order = _as_list(data["clicks_order"], "clicks_order", path) if "clicks_order" in data else None
    n = max(len(x) for x in (boxes, clicks) if x is not None)
    for name, x in (("boxes", boxes), ("clicks", clicks), ("clicks_order", order)):
        if x is not None and len(x) != n:
            raise InputFileError(f"{path}: '{name}' has {len(x)} classes, expected {n}")
    prompts = []
    for c in range(1, n + 1):
        p = ObjectPrompts()
        if boxes is not None and boxes[c - 1] is not None:
            p.key_box = parse_box(boxes[c - 1], dhw, c, path)
        if clicks is not None:
            p.points = parse_clicks(clicks[c - 1], order[c - 1], dhw, c, path)
        prompts.append(p)
    extra = {}
    for k in ("prev_pred", "gts"):
        if k in data:
            a = np.asarray(data[k])
            if a.shape != dhw or a.dtype == object:
                raise InputFileError(f"{path}: {k!r} shape {a.shape} differs from 'imgs' {dhw}")
            extra[k] = a
    affine = lps_to_ras(affine_from_geometry(spacing_zyx[::-1].copy(), np.eye(3), np.zeros(3)))
    image = Volume(np.ascontiguousarray(imgs.transpose(2, 1, 0)), affine, modality=modality_from_name(path),
                   intensity="windowed" if imgs.dtype == np.uint8 else "raw", slice_axis=2,
                   source=os.path.abspath(path), meta={"format": "cvpr25-npz", "spacing_order": spacing_order})
    return ChallengeCase(path, image, spacing_zyx, prompts, extra.get("prev_pred"), extra.get("gts"),
                         tuple(data))


def challenge_npz_case(path, spacing_order: str = "zyx"):
    """A challenge file as the research reader's :class:`~sam_med.io.npz.NpzCase` (image, ``gts``
    label if present; the prompts stay in :func:`read_challenge`)."""

    case = read_challenge(path, spacing_order)
    label = None
    if case.gts is not None:
        label = Volume(np.ascontiguousarray(case.gts.transpose(2, 1, 0)), case.image.affine,
                       modality=case.image.modality, intensity="label", slice_axis=2, source=case.image.source,
                       meta={"format": "cvpr25-npz", "key": "gts"})
    return NpzCase(image=case.image, label=label, boxes=None, raw=case.keys)
