"""Model configs: where they are found and the one reader for 2D and 3D models.

A model config is a ``<name>.yaml`` file in MONAI bundle style (``_target_`` components,
``@`` references). The built-in ones are **package data** (``sam_med/configs/models/*.yaml``,
found through ``importlib.resources``, so a wheel install finds them); the top-level
``configs/models`` of a checkout is a link to that folder. Search order, first hit wins:
:func:`register_model_config` entries, ``$SAM_MED_CONFIGS`` (``os.pathsep``-separated),
the packaged configs, ``~/.config/sam-med/models/``.

**Trust boundary** (docs/trust.md). Every config, packaged or not, is read as *data*
(:mod:`.config_schema`): a bounded safe YAML reader, a typed schema, components only from
sam-med's registry of names, ``@`` references resolved as data; ``$`` expressions, ``%``
macros and MONAI directives (``_debug_`` ...) are refused. ``SAM_MED_TRUST_CONFIGS=1`` is
the only way to MONAI's full ``ConfigParser`` (which runs code), for configs the user
wrote.

Required fields: ``architecture``, ``checkpoint``; ``image_size`` for 2D (``dims: 2``, the
default), for 3D (``dims: 3``) it defaults to ``architecture_args.img_size``.
"""

from __future__ import annotations

import copy
import importlib.resources
import os
import threading
from pathlib import Path
from typing import Any, Mapping

from ..errors import SamMedError

__all__ = ["PACKAGE_CONFIGS", "config_dirs", "register_model_config", "list_models",
           "find_model_config", "read_model_config", "model_dims"]

#: the packaged model configs (``sam_med/configs/models``)
PACKAGE_CONFIGS = Path(str(importlib.resources.files("sam_med") / "configs" / "models"))
_USER_CONFIGS: dict[str, Path] = {}
_PARSED: dict[tuple, dict[str, Any]] = {}
_LOCK = threading.Lock()


def config_dirs() -> list[Path]:
    """Folders searched for ``<name>.yaml``, in order."""
    dirs = [Path(p).expanduser() for p in os.environ.get("SAM_MED_CONFIGS", "").split(os.pathsep) if p]
    dirs.append(PACKAGE_CONFIGS)
    dirs.append(Path.home() / ".config" / "sam-med" / "models")
    return dirs


def register_model_config(path: str | os.PathLike, name: str | None = None) -> str:
    """Make the config file at ``path`` loadable as ``name`` (default: its ``name`` field or
    file stem). Returns the name."""
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise SamMedError(f"model config not found: {p}")
    if name is None:
        from .config_schema import read_yaml_file

        data = read_yaml_file(p) or {}
        name = str(data.get("name") or p.stem) if isinstance(data, dict) else p.stem
    _USER_CONFIGS[name] = p
    return name


def list_models() -> list[str]:
    """Names of all loadable model configs."""
    names = set(_USER_CONFIGS)
    for d in config_dirs():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)


def find_model_config(name: str | os.PathLike) -> Path:
    """The config file for a model name or a path to a ``.yaml`` file."""
    name = os.fspath(name)
    if name in _USER_CONFIGS:
        return _USER_CONFIGS[name]
    p = Path(name).expanduser()
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p.resolve()
    for d in config_dirs():
        for ext in (".yaml", ".yml"):
            if (d / f"{name}{ext}").is_file():
                return d / f"{name}{ext}"
    raise SamMedError(f"unknown model {name!r}; available: {list_models()} "
                      f"(config search path: {[str(d) for d in config_dirs()]})")


def model_dims(cfg: Mapping[str, Any]) -> int:
    """2 (slice-wise) or 3 (volumetric) from ``dims`` (default 2)."""
    dims = int(cfg.get("dims", 2))
    if dims not in (2, 3):
        raise SamMedError(f"model config {cfg.get('config_path', cfg.get('name'))}: dims must be 2 or 3, got {dims}")
    return dims


def check_untrusted_config(path: Path) -> None:
    """Refuse a config file that is not plain data of the schema (kept for callers that
    only want the check; :func:`read_model_config` does it for every config)."""
    from .config_schema import parse_model_config, read_yaml_file, trusted

    if not trusted():
        parse_model_config(read_yaml_file(path), str(path))


def _parse(source: dict | str, where: str) -> dict[str, Any]:
    """Safe parse (data, the schema, registered components); MONAI's parser only when trusted."""
    from .config_schema import parse_model_config, plain_mapping, read_yaml_file, trusted

    if not trusted():
        doc = plain_mapping(source, where) if isinstance(source, Mapping) else read_yaml_file(source, where)
        return parse_model_config(doc, where)
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    try:
        parser.read_config(source)
        resolved = parser.get_parsed_content(instantiate=True)
    except Exception as e:  # MONAI raises many kinds; one clear line
        raise SamMedError(f"model config {where} cannot be parsed: {type(e).__name__}: {e}") from e
    if not isinstance(resolved, Mapping):
        raise SamMedError(f"model config {where} is not a mapping")
    return dict(resolved)


def read_model_config(config: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """Parse and resolve a model config: a name (see :func:`list_models`), a ``.yaml`` path,
    or a dict (parsed the same way). ``_target_`` components become objects (the preprocessing
    transforms, from sam-med's registry of names); ``@`` references are resolved as data. Returns a fresh shallow copy of a
    cached parse (files are parsed once per (path, mtime)), with ``name``, ``dims``,
    ``image_size`` filled in and ``config_path`` set (``""`` for a dict)."""
    if isinstance(config, Mapping):
        if config.get("_resolved_"):
            return dict(config)
        cfg, path = _parse(copy.deepcopy(dict(config)), f"{config.get('name', '<dict>')!r}"), ""
    else:
        from .config_schema import trusted

        p = find_model_config(config)
        key = (str(p), p.stat().st_mtime_ns, p.stat().st_size, trusted())
        with _LOCK:
            hit = _PARSED.get(key)
        if hit is not None:
            return dict(hit)
        cfg, path = _parse(str(p), str(p)), str(p)
        cfg.setdefault("name", p.stem)
    for field in ("architecture", "checkpoint"):
        if field not in cfg or cfg[field] is None:
            raise SamMedError(f"model config {path or cfg.get('name')} lacks the required field {field!r}")
    from .architectures import get_architecture

    try:  # a registered name (the schema's rule); the builder runs only when the model loads
        get_architecture(cfg["architecture"])
    except SamMedError as exc:
        raise SamMedError(f"model config {path or cfg.get('name')}: {exc}") from None
    cfg["config_path"] = path
    cfg.setdefault("name", "model")
    cfg["dims"] = model_dims(cfg)
    if "image_size" not in cfg:
        img = (cfg.get("architecture_args") or {}).get("img_size")
        if cfg["dims"] == 2 or img is None:
            raise SamMedError(f"model config {path or cfg['name']} lacks the required field 'image_size'")
        cfg["image_size"] = int(img)
    cfg["_resolved_"] = True
    if path:
        with _LOCK:
            _PARSED[key] = cfg
    return dict(cfg)
