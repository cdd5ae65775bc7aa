"""Model configs as data: a bounded YAML reader, a typed schema and a registry of components.

This is how every model config is read unless ``SAM_MED_TRUST_CONFIGS=1`` is set (then
MONAI's ``ConfigParser`` runs, see :mod:`.configs`). Nothing in a config file can name
Python code:

* **YAML**: ``yaml.SafeLoader`` (no Python tags), at most :data:`MAX_CONFIG_BYTES` bytes,
  :data:`MAX_ALIASES` alias uses and :data:`MAX_NODES` values once aliases are expanded
  (an alias bomb stops at the count, in milliseconds), nesting at most :data:`MAX_DEPTH`.
* **Schema**: the top-level fields of :data:`FIELDS` only, each with its type. Unknown
  fields are refused, so a stray ``pwn:`` section is an error, not ignored data.
* **Components** (``intensity.*``, ``preprocessing``, ``postprocessing``,
  ``preprocessing.geometry[*]``): ``{_target_: NAME, arg: value, ...}`` where NAME is in the
  registry of :func:`components` (sam-med's transforms and a fixed list of MONAI transforms,
  by name) and every argument is plain data. Never an import path: ``os.system`` or
  ``sam_med.io.atomic.os.system`` is simply an unknown name.
* **References**: a value ``"@key#sub#0"`` is replaced by that value of the same file (data
  only, resolved here; depth-limited, cycles refused). ``$`` expressions, ``%file#key``
  macros and MONAI directives (``_debug_``, ``_requires_``, ``_mode_``, ``_disabled_``,
  ``_desc_``) are refused with one line naming where they are.
"""

from __future__ import annotations

import datetime as _dt
import os
from typing import Any, Callable, Mapping

from ..errors import SamMedError

MAX_CONFIG_BYTES = 1 << 20
MAX_ALIASES = 256
MAX_NODES = 200_000
MAX_DEPTH = 40
_TRUST_HINT = "SAM_MED_TRUST_CONFIGS=1 lets a config you wrote yourself run code"

#: plain scalar types of a config value
_SCALARS = (str, int, float, bool, type(None))


class ConfigError(SamMedError):
    """A model config that is not plain data of the expected shape."""


def _err(where: str, msg: str) -> ConfigError:
    return ConfigError(f"model config {where}: {msg}")


# --------------------------------------------------------------------------- bounded YAML
def _loader_class():
    import yaml

    class BoundedLoader(yaml.SafeLoader):
        """SafeLoader counting alias uses (an alias bomb is refused at :data:`MAX_ALIASES`)."""

        aliases = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                self.aliases += 1
                if self.aliases > MAX_ALIASES:
                    raise yaml.YAMLError(f"more than {MAX_ALIASES} YAML aliases")
            return super().compose_node(parent, index)

    return BoundedLoader


def load_yaml_text(text: str, where: str) -> Any:
    """Plain data from YAML ``text`` (bounded; see the module docstring); aliases expanded
    into independent copies within :data:`MAX_NODES`."""
    import yaml

    if len(text) > MAX_CONFIG_BYTES:
        raise _err(where, f"larger than {MAX_CONFIG_BYTES:,} bytes")
    try:
        loader = _loader_class()(text)
        try:
            raw = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise _err(where, f"not valid YAML ({' '.join(str(exc).split())[:200]})") from None
    except RecursionError:
        raise _err(where, "nested too deeply") from None
    budget = [MAX_NODES]
    return _copy_plain(raw, where, "config", budget, 0)


def read_yaml_file(path, where: str | None = None) -> Any:
    """:func:`load_yaml_text` of a regular file of at most :data:`MAX_CONFIG_BYTES` bytes."""
    from ..io.guards import read_bytes_limited

    where = where or str(path)
    try:
        data = read_bytes_limited(path, MAX_CONFIG_BYTES, "model config")
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _err(where, "not UTF-8 text") from None
    except SamMedError as exc:
        raise _err(where, str(exc)) from None
    return load_yaml_text(text, where)


def _copy_plain(node: Any, where: str, at: str, budget: list, depth: int) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise _err(where, f"more than {MAX_NODES:,} values once YAML aliases are expanded (an alias bomb?)")
    if depth > MAX_DEPTH:
        raise _err(where, f"{at}: nested deeper than {MAX_DEPTH}")
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if not isinstance(k, (str, int, float, bool, type(None))):
                raise _err(where, f"{at}: key {k!r} is not text or a number")
            out[k] = _copy_plain(v, where, f"{at}.{k}", budget, depth + 1)
        return out
    if isinstance(node, (list, tuple)):  # tuples only come from Python dicts
        return [_copy_plain(v, where, f"{at}[{i}]", budget, depth + 1) for i, v in enumerate(node)]
    if isinstance(node, _SCALARS):
        return node
    if isinstance(node, (_dt.date, _dt.datetime)):  # a YAML timestamp: kept as text
        return node.isoformat()
    raise _err(where, f"{at}: a {type(node).__name__} value is not plain data (numbers, text, lists, mappings)")


# --------------------------------------------------------------------------- components
_COMPONENTS: dict[str, Callable[..., Any]] = {}
_SAM_MED_TRANSFORMS = ("SlicePreprocessor", "LowResToSource", "PercentileNormalize", "CheckUint8Range",
                       "ct_window_transform", "ResizeLongestSideArea", "MinMaxNormalize", "MeanStdNormalize",
                       "PadBottomRight", "RepeatChannels")
#: MONAI transforms a config may name (array and dictionary forms); nothing else of MONAI
_MONAI_TRANSFORMS = ("Orientation", "Spacing", "ScaleIntensityRange", "ScaleIntensityRangePercentiles",
                     "ScaleIntensity", "NormalizeIntensity", "ThresholdIntensity", "ClipIntensityPercentiles",
                     "Resize", "SpatialPad", "SpatialCrop", "CenterSpatialCrop", "EnsureChannelFirst",
                     "CastToType", "Compose")
#: sam-med's video-model frame transforms (``sam_med.models.sam2.preprocess``), by class name
_SAM2_TRANSFORMS = ("GreyToRGBResize", "FrameNormalize")


def register_component(name: str, factory: Callable[..., Any]) -> None:
    """Let model configs name ``factory`` as ``_target_: name`` (from Python code only)."""
    _COMPONENTS[str(name)] = factory


def components() -> dict[str, Callable[..., Any]]:
    """The names a config's ``_target_`` may use: ``sam_med.transforms.X`` (or ``X``) for
    sam-med's transforms, ``X`` / ``monai.transforms.X`` for the listed MONAI transforms,
    and anything added with :func:`register_component`."""
    if not any(n.startswith("sam_med.transforms.") for n in _COMPONENTS):
        import monai.transforms as mt

        from .. import transforms as st

        for n in _SAM_MED_TRANSFORMS:
            _COMPONENTS.setdefault(f"sam_med.transforms.{n}", getattr(st, n))
            _COMPONENTS.setdefault(n, getattr(st, n))
        for n in _MONAI_TRANSFORMS:
            for form in (n, n + "d"):
                if hasattr(mt, form):
                    _COMPONENTS.setdefault(form, getattr(mt, form))
                    _COMPONENTS.setdefault(f"monai.transforms.{form}", getattr(mt, form))
        from .sam2 import preprocess as s2

        for n in _SAM2_TRANSFORMS:
            _COMPONENTS.setdefault(f"sam_med.models.sam2.preprocess.{n}", getattr(s2, n))
            _COMPONENTS.setdefault(n, getattr(s2, n))
    return _COMPONENTS


_DIRECTIVES = ("_debug_", "_requires_", "_mode_", "_disabled_", "_desc_")


def _check_plain(node: Any, where: str, at: str) -> None:
    """No component, directive, expression or macro inside plain data."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "_target_":
                raise _err(where, f"{at}._target_: components are allowed only in intensity, preprocessing and "
                                  f"postprocessing ({_TRUST_HINT})")
            if k in _DIRECTIVES:
                raise _err(where, f"{at}.{k}: MONAI directives are not allowed ({_TRUST_HINT})")
            _check_plain(v, where, f"{at}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_plain(v, where, f"{at}[{i}]")
    elif isinstance(node, str) and node.lstrip()[:1] in ("$", "%"):
        kind = "a Python expression" if node.lstrip()[0] == "$" else "a macro reading another file"
        raise _err(where, f"{at} is {kind} ({node[:40]!r}); not allowed ({_TRUST_HINT})")


def build_component(spec: Any, where: str, at: str) -> Any:
    """The object a ``{_target_: NAME, ...}`` mapping names (see the module docstring)."""
    if not isinstance(spec, dict) or "_target_" not in spec:
        raise _err(where, f"{at}: expected a component {{_target_: NAME, ...}}, got {type(spec).__name__}")
    name = spec["_target_"]
    reg = components()
    if not isinstance(name, str) or name not in reg:
        known = sorted(n for n in reg if "." not in n)
        raise _err(where, f"{at}._target_ {name!r} is not a component sam-med knows (known: {', '.join(known)}); "
                          f"{_TRUST_HINT}")
    args = {k: v for k, v in spec.items() if k != "_target_"}
    if reg[name] is reg.get("Compose") and isinstance(args.get("transforms"), list):  # components of components
        args["transforms"] = [build_component(t, where, f"{at}.transforms[{i}]")
                              for i, t in enumerate(args["transforms"])]
        _check_plain({k: v for k, v in args.items() if k != "transforms"}, where, at)
    else:
        _check_plain(args, where, at)
    try:
        return reg[name](**args)
    except Exception as exc:  # a wrong argument: one line
        raise _err(where, f"{at}: {name}({', '.join(args)}) failed: {type(exc).__name__}: "
                          f"{' '.join(str(exc).split())[:200]}") from None


# --------------------------------------------------------------------------- references
def resolve_references(doc: dict, where: str) -> dict:
    """Replace every ``"@a#b#0"`` string by that value of ``doc`` (data only)."""
    def lookup(ref: str, chain: tuple) -> Any:
        if ref in chain or len(chain) > 16:
            raise _err(where, f"reference @{ref} is circular or too deep")
        node: Any = doc
        for part in ref.split("#"):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise _err(where, f"reference @{ref}: no such entry in this file")
        return walk(node, chain + (ref,))

    budget = [MAX_NODES]

    def walk(node: Any, chain: tuple = ()) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise _err(where, f"more than {MAX_NODES:,} values once @ references are expanded")
        if isinstance(node, dict):
            return {k: walk(v, chain) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, chain) for v in node]
        if isinstance(node, str) and node.startswith("@"):
            return lookup(node[1:], chain)
        return node

    return walk(doc)


# --------------------------------------------------------------------------- schema
def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_STR, _INT, _NUM, _MAP, _ANY = "text", "integer", "number", "mapping", "data"
#: top-level fields and their types; ``component`` sections are built from the registry
FIELDS: dict[str, str] = {
    "name": _STR, "description": _STR, "family": _STR, "license": _STR, "source": _STR, "notes": _ANY,
    "dims": _INT, "architecture": _STR, "image_size": _INT, "architecture_args": _MAP,
    "checkpoint": _MAP, "precision": _STR, "autocast_dtype": _ANY, "mask_threshold": _NUM,
    "ct_window": _ANY, "mr_percentiles": _ANY, "intensity": "components", "preprocessing": "preprocessing",
    "postprocessing": "component", "delta": _MAP, "base_model": _MAP, "prompt_tuning": _MAP,
    "training": _ANY, "provenance": _ANY, "click_model": _STR,
}
_CHECKPOINT_FIELDS = {"file_name", "path", "package_resource", "sha256", "size_bytes", "install_hint", "env",
                      "source", "container", "license"}


def _typed(value: Any, kind: str, where: str, at: str) -> None:
    ok = {_STR: lambda v: isinstance(v, str), _INT: lambda v: isinstance(v, int) and not isinstance(v, bool),
          _NUM: _is_num, _MAP: lambda v: isinstance(v, dict), _ANY: lambda v: True}[kind]
    if value is not None and not ok(value):
        raise _err(where, f"{at} must be {kind}, got {type(value).__name__} {str(value)[:40]!r}")


def parse_model_config(doc: Any, where: str) -> dict[str, Any]:
    """The resolved config dict of a plain-data ``doc`` (see the module docstring)."""
    if not isinstance(doc, dict):
        raise _err(where, f"must be a mapping of fields, got {type(doc).__name__}")
    for k in doc:
        if k in _DIRECTIVES or k == "_target_":
            raise _err(where, f"{k}: MONAI directives are not allowed at the top level ({_TRUST_HINT})")
        if k not in FIELDS:
            raise _err(where, f"unknown field {k!r} (known: {', '.join(sorted(FIELDS))}); configs are data, "
                              f"see docs/trust.md ({_TRUST_HINT})")
    for k, v in doc.items():  # no expressions/macros anywhere, before references are followed
        if FIELDS[k] not in ("components", "preprocessing", "component"):
            _check_plain(v, where, k)
    doc = resolve_references(doc, where)
    out: dict[str, Any] = {}
    for k, v in doc.items():
        kind = FIELDS[k]
        if kind == "components":
            if not isinstance(v, dict):
                raise _err(where, f"{k} must map input kinds to components")
            out[k] = {name: build_component(spec, where, f"{k}.{name}") for name, spec in v.items()}
        elif kind == "component":
            out[k] = None if v is None else build_component(v, where, k)
        elif kind == "preprocessing":
            out[k] = _preprocessing(v, where)
        else:
            _typed(v, kind, where, k)
            _check_plain(v, where, k)
            out[k] = v
    ck = out.get("checkpoint")
    if isinstance(ck, dict):
        extra = set(ck) - _CHECKPOINT_FIELDS
        if extra:
            raise _err(where, f"checkpoint: unknown field(s) {sorted(extra)} (known: {sorted(_CHECKPOINT_FIELDS)})")
        for f, v in ck.items():
            if f == "size_bytes":
                _typed(v, _INT, where, "checkpoint.size_bytes")
            elif not isinstance(v, (str, type(None))):
                raise _err(where, f"checkpoint.{f} must be text")
    return out


def _preprocessing(v: Any, where: str) -> Any:
    """2D: one component. 3D: a mapping whose ``geometry`` is a list of components, the rest data."""
    if v is None:
        return None
    if isinstance(v, dict) and "_target_" in v:
        return build_component(v, where, "preprocessing")
    if not isinstance(v, dict):
        raise _err(where, "preprocessing must be a component or a mapping")
    out = {}
    for k, x in v.items():
        if k == "geometry":
            if not isinstance(x, list):
                raise _err(where, "preprocessing.geometry must be a list of components")
            out[k] = [build_component(s, where, f"preprocessing.geometry[{i}]") for i, s in enumerate(x)]
        else:
            out[k] = _components_or_plain(x, where, f"preprocessing.{k}")
    return out


def _components_or_plain(x: Any, where: str, at: str) -> Any:
    """A component, a mapping of them (a video model's intensity step per input kind), or data."""
    if isinstance(x, dict) and "_target_" in x:
        return build_component(x, where, at)
    if isinstance(x, dict):
        return {k: _components_or_plain(v, where, f"{at}.{k}") for k, v in x.items()}
    _check_plain(x, where, at)
    return x


def trusted() -> bool:
    """``SAM_MED_TRUST_CONFIGS=1``: configs may run code (MONAI's parser, import paths)."""
    return os.environ.get("SAM_MED_TRUST_CONFIGS") == "1"


def plain_mapping(config: Mapping[str, Any], where: str) -> dict:
    """A dict config given from Python, copied as plain data (bounded like a file)."""
    return _copy_plain(dict(config), where, "config", [MAX_NODES], 0)
