"""The predictor contract: what a Session (and the CLI, evaluation, training, napari) needs.

* :class:`VolumePredictor`: ``prepare(volume, progress)`` + ``predict(volume, prompts,
  previous, progress) -> PredictionResult`` and a ``model_name``. Slice-wise 2D and
  volumetric 3D predictors implement it; so does the model-free threshold baseline.
* :class:`PredictionResult`: ``mask`` (bool, the volume's shape, voxel grid of the
  source), the predictor's private ``state`` (for incremental refinement) and ``info``.
* :data:`ProgressFn`: ``progress(done, total, what)``.
* Typed options: every predictor declares its options as a dataclass;
  :func:`build_options` builds one from a mapping (unknown keys and values of the wrong
  type raise :class:`OptionError`, which the CLI prints as one line, exit 2), and
  :func:`parse_option_pairs` reads ``["key=value", ...]`` from a command line with YAML
  typing (``mask_prompt=false`` -> False, ``window=[40,400]`` -> [40, 400]); the
  dataclass's field types then convert (``context=5`` -> 5.0, the list -> a tuple).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence, TypeVar, runtime_checkable

import numpy as np

from ..errors import SamMedError

__all__ = ["ProgressFn", "PredictionResult", "PredictionInfo", "VolumePredictor", "OptionError", "build_options",
           "option_names", "parse_option_pairs", "coerce_option"]

ProgressFn = Callable[[int, int, str], None]
"""progress(done, total, what) — called by long operations; must be cheap and thread-safe."""


@dataclass
class PredictionInfo:
    """What a predictor reports about one result (typed; :meth:`numbers` flattens it for reports).

    ``mode``: "full" (run from the prompts) or "refine" (the previous result + new clicks);
    ``axis``: the slicing axis (None for 3D models); ``slices``: indices along it with a mask;
    ``seconds`` / ``encode_seconds`` / ``decode_seconds``: wall time of this call and its parts;
    ``click_slice_seconds``: a refinement's time to the clicked slice's new mask; ``zoom_crop`` /
    ``input_size`` / ``res_cap``: the slice-wise view (crop of the plane, encoder input size,
    the encode budget's cap); ``confidence``: the model's mean predicted IoU over the object's
    slices (None: the model gives none); ``extra``: other numbers a predictor reports."""

    mode: str = "full"
    axis: int | None = None
    slices: list[int] = field(default_factory=list)
    seconds: float = 0.0
    encode_seconds: float = 0.0
    decode_seconds: float = 0.0
    click_slice_seconds: float | None = None
    zoom_crop: tuple[int, int, int, int] | None = None
    input_size: int | None = None
    res_cap: int | None = None
    confidence: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def numbers(self) -> dict[str, float]:
        """The numeric entries (for evaluation records): timings, sizes, confidence, extras."""
        out: dict[str, float] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
                out[f.name] = float(v)
        out["n_slices"] = float(len(self.slices))
        out.update({k: float(v) for k, v in self.extra.items()
                    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)})
        return out


@dataclass
class PredictionResult:
    """A predictor's answer for one object: ``mask`` (bool, volume shape) + private state."""

    mask: np.ndarray
    state: Any = None
    info: PredictionInfo = field(default_factory=PredictionInfo)


@runtime_checkable
class VolumePredictor(Protocol):
    """What a Session needs from a predictor (slice-wise 2D or volumetric 3D)."""

    #: registry name of the model (recorded in saved sessions and sidecars)
    model_name: str

    def prepare(self, volume, progress: ProgressFn | None = None) -> None:
        """Optional warm-up (e.g. encode all slices). May be a no-op."""

    def predict(self, volume, prompts, previous: PredictionResult | None = None,
                progress: ProgressFn | None = None) -> PredictionResult:
        """Segment one object from its full prompt set. ``previous`` is the last
        result for the same object (for incremental refinement), or None."""


class OptionError(SamMedError):
    """A predictor option is unknown, malformed or of the wrong type."""


T = TypeVar("T")


def option_names(cls) -> list[str]:
    """The option names an options dataclass declares (init fields, in order)."""
    return [f.name for f in dataclasses.fields(cls) if f.init]


def build_options(cls: type[T], values: Mapping[str, Any] | None = None, *, owner: str = "predictor") -> T:
    """``cls(**values)`` with each value converted to its field's type.

    ``values`` may come from a command line (strings, or YAML-typed values from
    :func:`parse_option_pairs`) or from Python. Unknown keys, values that do not fit the
    field's type and values outside a field's ``metadata["choices"]`` raise
    :class:`OptionError` naming ``owner`` and the options it takes."""
    values = dict(values or {})
    names = option_names(cls)
    unknown = sorted(k for k in values if k not in names)
    if unknown:
        raise OptionError(f"{owner} does not take option(s) {', '.join(unknown)}; "
                          f"it takes: {', '.join(names) or 'none'}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        try:
            v = coerce_option(value, hints[key])
        except (TypeError, ValueError) as exc:
            raise OptionError(f"{owner}: option {key}={value!r}: {exc}") from None
        choices = fields[key].metadata.get("choices")
        if choices is not None and v not in choices:
            raise OptionError(f"{owner}: option {key} must be one of {', '.join(map(str, choices))}, got {v!r}")
        kwargs[key] = v
    return cls(**kwargs)


def _is_union(tp) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def coerce_option(value: Any, tp: Any) -> Any:
    """Convert ``value`` to the type annotation ``tp`` (bool, int, float, str, X | None,
    tuple[X, ...] / tuple[X, Y], Any). Strings are read as a command line would mean them.
    Raises ValueError/TypeError when it does not fit."""
    if tp is Any:
        return value
    if _is_union(tp):
        args = typing.get_args(tp)
        if type(None) in args and (value is None or (isinstance(value, str) and value.lower() in ("none", "null", "~"))):
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce_option(value, a)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors) or f"expected {tp}")
    if value is None:
        raise ValueError(f"expected {getattr(tp, '__name__', tp)}, got none")
    origin = typing.get_origin(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, str):
            value = [s for s in value.replace("[", " ").replace("]", " ").replace(",", " ").split()]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"expected a list like [a, b], got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce_option(v, args[0]) for v in value)
        if len(value) != len(args):
            raise ValueError(f"expected {len(args)} values, got {len(value)}")
        return tuple(coerce_option(v, a) for v, a in zip(value, args))
    if tp is bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if isinstance(value, (int, np.integer)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.strip().lower()]
        raise ValueError(f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, (bool, np.bool_)):
            raise ValueError(f"expected an integer, got {value!r}")
        if isinstance(value, (int, np.integer)):
            return int(value)
        f = float(value)
        if not f.is_integer():
            raise ValueError(f"expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        if isinstance(value, (bool, np.bool_)):
            raise ValueError(f"expected a number, got {value!r}")
        f = float(value.strip().replace(".inf", "inf") if isinstance(value, str) else value)
        if math.isnan(f):
            raise ValueError("expected a number, got NaN")
        return f
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (bool, list, tuple, dict)):
            raise ValueError(f"expected a word, got {value!r}")
        return str(value)
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise TypeError(f"expected {tp.__name__}, got {type(value).__name__}")
    return value


_BOOL_WORDS = {"true": True, "false": False, "yes": True, "no": False, "on": True, "off": False,
               "1": True, "0": False}


def parse_option_pairs(items: Sequence[str] | None, *, what: str = "--option") -> dict[str, Any]:
    """``["mask_prompt=false", "window=[40,400]", "zoom-factor=2"]`` -> ``{"mask_prompt":
    False, "window": [40, 400], "zoom_factor": 2}``: values read as YAML (a string when they
    are not valid YAML), ``-`` in keys read as ``_``. Dotted keys stay as they are
    (``optim.lr=1e-4`` -> ``{"optim.lr": ...}``). An item without ``=`` or with an empty
    key raises :class:`OptionError`; a key given twice keeps the last value."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = str(item).partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise OptionError(f"{what} expects KEY=VALUE, got {item!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        out.pop(key, None)  # a repeated key takes its last value and its last position
        out[key] = value
    return out
