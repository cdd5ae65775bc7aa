"""Model registry: architecture builders and :func:`load_model`, the one loader for 2D and 3D.

* **Architectures** map a name to a builder function returning an ``nn.Module``::

      @register_architecture("my_arch")
      def build_my_arch(**architecture_args) -> nn.Module: ...

  A config may also name a builder directly as ``"package.module:function"``. A builder
  may be registered with ``safe_globals``: harmless classes its checkpoints need unpickled
  (SAM-Med3D's training container holds an ``argparse.Namespace``).
* **Model configs** (found and parsed by :mod:`.configs`) name the architecture, its
  arguments, the checkpoint and the preprocessing; ``dims`` (2 or 3) says which kind of
  :mod:`loaded model <.loaded>` :func:`load_model` returns.
"""

from __future__ import annotations

import importlib
import os
import threading
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..errors import CheckpointError, SamMedError
from .configs import (PACKAGE_CONFIGS, config_dirs, find_model_config, list_models,
                      read_model_config, register_model_config)
from .loaded import LoadedModel, LoadedModel3D
from .precision import default_precision, precision_name, resolve_precision

__all__ = ["register_architecture", "get_architecture", "list_architectures", "config_dirs",
           "register_model_config", "list_models", "find_model_config", "read_model_config",
           "load_model", "LoadedModel", "LoadedModel3D", "clear_model_cache"]

_ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {}
_SAFE_GLOBALS: dict[str, Callable[[], list]] = {}
#: modules that register built-in architectures when imported (missing ones are skipped)
_ARCH_MODULES = ("sam_med.models.build", "sam_med.models.sam3d", "sam_med.models.sam2")
_CACHE: dict[tuple, LoadedModel | LoadedModel3D] = {}
_LOCK = threading.Lock()
#: the built-in model configs (kept under its old name; see :mod:`.configs`)
REPO_CONFIGS = PACKAGE_CONFIGS


def register_architecture(name: str, builder: Callable[..., nn.Module] | None = None, *,
                          safe_globals: Callable[[], list] | None = None):
    """Register ``builder`` under ``name`` (usable as a decorator); ``safe_globals()`` lists
    classes ``torch.load(weights_only=True)`` may unpickle from its checkpoints."""
    def deco(fn):
        _ARCHITECTURES[name] = fn
        if safe_globals is not None:
            _SAFE_GLOBALS[name] = safe_globals
        return fn
    return deco(builder) if builder is not None else deco


def _import_builtin_architectures() -> None:
    for mod in _ARCH_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name is None or not mod.startswith(e.name):
                raise


def list_architectures() -> list[str]:
    _import_builtin_architectures()
    return sorted(_ARCHITECTURES)


def get_architecture(name: str) -> Callable[..., nn.Module]:
    """Builder for an architecture name or a ``"module:function"`` path."""
    _import_builtin_architectures()
    if name in _ARCHITECTURES:
        return _ARCHITECTURES[name]
    if ":" in name:
        mod, _, fn = name.partition(":")
        try:
            return getattr(importlib.import_module(mod), fn)
        except (ImportError, AttributeError) as e:
            raise SamMedError(f"cannot import architecture builder {name!r}: {e}") from e
    raise SamMedError(f"unknown architecture {name!r}; known: {sorted(_ARCHITECTURES)}")


def clear_model_cache() -> None:
    with _LOCK:
        _CACHE.clear()


def _requested_precision(cfg: dict[str, Any], precision, autocast_dtype) -> str:
    """Explicit ``precision`` > explicit ``autocast_dtype`` > ``$SAM_MED_PRECISION`` > the
    config's ``precision`` (or legacy ``autocast_dtype``) > ``auto``."""
    if precision is not None:
        return precision_name(precision)
    if autocast_dtype != "config":
        return precision_name(autocast_dtype)
    env = os.environ.get("SAM_MED_PRECISION", "").strip()
    if env:
        return precision_name(env)
    if "precision" in cfg:
        return precision_name(cfg["precision"])
    if "autocast_dtype" in cfg:
        return precision_name(cfg["autocast_dtype"])
    return precision_name(default_precision())


def load_model(name: str | os.PathLike | dict = "lite_medsam", *,
               checkpoint: str | os.PathLike | None = None, device: str | torch.device = "cpu",
               precision: str | None = None, autocast_dtype: Any = "config",
               cache: bool = True) -> LoadedModel | LoadedModel3D:
    """Build a model from its config, load its weights strictly and safely, cache it per process.

    ``name``: a model config name (see :func:`list_models`), a path to a config file, or a
    config dict. ``checkpoint``: a file (or a folder holding the config's ``file_name``) to
    use instead of the configured location (``--checkpoint``); it is still checked against
    the config's sha256 (a fine-tuned checkpoint needs its own config with its own
    ``sha256``, or ``sha256: null``; see :func:`register_model_config`).
    ``precision``: ``auto`` | ``fp32`` | ``bf16`` | ``fp16`` (see :mod:`.precision`; default:
    ``$SAM_MED_PRECISION``, else the config's ``precision``, else ``auto``);
    ``autocast_dtype`` (None / ``torch.bfloat16``) is the older spelling of the same.
    ``cache=False`` builds a fresh model (not shared with other callers).
    Returns a :class:`LoadedModel` (``dims: 2``) or :class:`LoadedModel3D` (``dims: 3``).
    Raises :class:`~sam_med.errors.CheckpointError` for a missing, wrong or unsafe file.
    """
    from .checkpoint import load_into, read_state_dict, resolve_checkpoint

    cfg = read_model_config(name)
    dev = torch.device(device)
    prec, dtype = resolve_precision(_requested_precision(cfg, precision, autocast_dtype), dev)
    ck_key = str(Path(checkpoint).expanduser().resolve()) if checkpoint else None
    key = (cfg["config_path"] or repr(sorted(map(str, cfg.items()))), ck_key, str(dev), prec)
    with _LOCK:
        if cache and key in _CACHE:
            return _CACHE[key]
    ckpt_cfg = dict(cfg["checkpoint"])
    arch = str(cfg["architecture"])
    builder = get_architecture(arch)
    path = resolve_checkpoint(ckpt_cfg, checkpoint, cfg["name"])
    allow = _SAFE_GLOBALS[arch]() if arch in _SAFE_GLOBALS else ()
    sd, digest = read_state_dict(path, ckpt_cfg.get("sha256"), safe_globals=allow)
    model = builder(**dict(cfg.get("architecture_args") or {}))
    _attach_prompt_tokens(model, cfg, sd, str(path))
    encoder_of = None
    if cfg.get("delta"):  # fine-tuned weights stored as base model + delta (sam_med.training)
        base_name, base_digest = _load_base_plus_delta(model, cfg, sd, str(path))
        if cfg["delta"].get("kind") in ("partial", "prompt") and not any(k.startswith("image_encoder.") for k in sd):
            encoder_of = (digest, base_name, base_digest)  # the base's encoder, untouched
    else:
        load_into(model, sd, str(path))
    model.eval().to(dev)
    for p in model.parameters():
        p.requires_grad_(False)
    common = dict(name=cfg["name"], model=model, config=cfg, sha256=digest,
                  image_size=int(cfg["image_size"]), autocast_dtype=dtype, device=dev,
                  checkpoint_path=str(path), precision=prec, encoder_of=encoder_of)
    lm = _loaded_2d(cfg, common) if cfg["dims"] == 2 else _loaded_3d(cfg, model, common)
    if cache:
        with _LOCK:
            _CACHE[key] = lm
    return lm


def _loaded_2d(cfg: dict[str, Any], common: dict[str, Any]) -> LoadedModel:
    from ..transforms import LowResToSource, SlicePreprocessor, default_intensity_transforms

    pre = cfg.get("preprocessing") or SlicePreprocessor(int(cfg["image_size"]))
    post = cfg.get("postprocessing") or LowResToSource()
    intensity = dict(cfg.get("intensity") or default_intensity_transforms())
    missing = {"hu", "raw_mr", "windowed"} - set(intensity)
    if missing:
        raise SamMedError(f"model config {cfg['config_path'] or cfg['name']}: intensity lacks {sorted(missing)}")
    return LoadedModel(**common, preprocess=pre, postprocessor=post, intensity=intensity)


def _loaded_3d(cfg: dict[str, Any], model: nn.Module, common: dict[str, Any]) -> LoadedModel3D:
    pre = dict(cfg.get("preprocessing") or {})
    spacing = tuple(float(s) for s in getattr(getattr(model, "config", None), "spacing", None) or (1.5,) * 3)
    return LoadedModel3D(**common, spacing=spacing, geometry=list(pre.pop("geometry", None) or []),
                         preprocessing=pre)


# --------------------------------------------------------------------------- fine-tuned deltas
def _attach_prompt_tokens(model: nn.Module, cfg: dict[str, Any], sd: dict[str, torch.Tensor], source: str) -> None:
    """A config's ``prompt_tuning`` section (mode ``prompt``, :mod:`sam_med.training.prompt_tuning`)
    puts the learnable prompt tokens on ``model`` before the strict load; a checkpoint without
    them is refused here, and one with them for a config without the section (strict load)."""
    if not cfg.get("prompt_tuning"):
        if any(k.startswith("prompt_tuning.") for k in sd):
            raise CheckpointError(f"{source} holds prompt tokens (prompt_tuning.*) but model config "
                                  f"{cfg['config_path'] or cfg['name']} has no prompt_tuning section")
        return
    from ..training.prompt_tuning import attach_prompt_tokens

    try:
        attach_prompt_tokens(model, cfg["prompt_tuning"], initialise=False)
    except SamMedError as e:
        raise CheckpointError(f"model config {cfg['config_path'] or cfg['name']}: {e}") from None
    want = set(model.prompt_tuning.state_dict())
    have = {k[len("prompt_tuning."):] for k in sd if k.startswith("prompt_tuning.")}
    if want - have:
        raise CheckpointError(f"model config {cfg['config_path'] or cfg['name']} names {model.prompt_tuning.num_tokens} "
                              f"prompt tokens (prompt_tuning) but checkpoint {source} lacks "
                              f"{sorted('prompt_tuning.' + k for k in want - have)}: not the checkpoint of this config")


def _load_base_plus_delta(model: nn.Module, cfg: dict[str, Any], delta: dict[str, torch.Tensor],
                          source: str) -> tuple[str, str]:
    """Load ``cfg['base_model']``'s weights into ``model``, then apply ``delta`` (written by
    :mod:`sam_med.training.export`). ``cfg['delta']['kind']``: ``partial`` (the tensors in
    ``delta`` replace the base's; every key must exist with the same shape) or ``lora``
    (``<module>.lora_A``/``.lora_B`` pairs are merged: ``W += lora_scaling * B @ A``; other
    keys replace as in ``partial``) or ``prompt`` (the ``prompt_tuning.*`` tokens the config's
    ``prompt_tuning`` section put on ``model``). The base weights must match the sha256 recorded at
    training time. Returns (the base's name, the sha256 of its weights)."""
    from .checkpoint import load_into, read_state_dict, resolve_checkpoint

    spec, base = cfg["delta"], cfg.get("base_model") or {}
    if spec.get("kind") not in ("partial", "lora", "prompt") or not base.get("name"):
        raise CheckpointError(f"{cfg['config_path']}: delta needs kind partial|lora|prompt and base_model.name")
    bcfg = read_model_config(str(base["name"]))
    if str(bcfg["architecture"]) != str(cfg["architecture"]):
        raise CheckpointError(f"{cfg['config_path']}: base model {base['name']!r} has architecture "
                              f"{bcfg['architecture']!r}, not {cfg['architecture']!r}")
    bck = dict(bcfg["checkpoint"])
    bsd, base_digest = read_state_dict(resolve_checkpoint(bck, None, bcfg["name"]),
                                       base.get("sha256") or bck.get("sha256"))
    lora = {k: v for k, v in delta.items() if k.endswith((".lora_A", ".lora_B"))}
    if lora and spec["kind"] != "lora":
        raise CheckpointError(f"{source}: LoRA tensors in a {spec['kind']!r} delta")
    for p in sorted({k.rsplit(".", 1)[0] for k in lora}):
        a, b, w = lora.get(f"{p}.lora_A"), lora.get(f"{p}.lora_B"), bsd.get(f"{p}.weight")
        if a is None or b is None or w is None or (b.shape[0], a.shape[1]) != tuple(w.shape):
            raise CheckpointError(f"{source}: LoRA adapter {p!r} does not fit the base model")
        bsd[f"{p}.weight"] = w + (b.float() @ a.float() * float(spec.get("lora_scaling", 1.0))).to(w.dtype)
    own = model.state_dict()  # prompt tokens: in the model (from the config), not in the base
    for k, v in delta.items():
        if k in lora:
            continue
        if k.startswith("prompt_tuning.") and k in own and k not in bsd:
            bsd[k] = v  # shape checked by the strict load
            continue
        if k not in bsd or tuple(bsd[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{source}: delta tensor {k!r} is not in the base model (or has another shape)")
        bsd[k] = v
    load_into(model, bsd, source)
    return str(bcfg["name"]), base_digest
