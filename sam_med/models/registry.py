"""Model registry: architecture builders, model configs, and :func:`load_model`.

* **Architectures** map a name to a builder function returning an ``nn.Module``::

      @register_architecture("my_arch")
      def build_my_arch(**architecture_args) -> nn.Module: ...

  A config may also name a builder directly as ``"package.module:function"``.
* **Model configs** are ``<name>.yaml`` files in MONAI bundle style (``_target_``
  entries, ``@`` references, parsed by ``monai.bundle.ConfigParser``), searched in
  ``$SAM_MED_CONFIGS`` (``os.pathsep``-separated), the repository's
  ``configs/models/``, then ``~/.config/sam-med/models/``; the first hit wins.
  :func:`register_model_config` adds one more (e.g. a fine-tuned checkpoint).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, SamMedError

__all__ = ["register_architecture", "get_architecture", "list_architectures", "config_dirs",
           "register_model_config", "list_models", "find_model_config", "read_model_config",
           "load_model", "LoadedModel", "clear_model_cache"]

_ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {}
#: modules that register built-in architectures when imported (missing ones are skipped)
_ARCH_MODULES = ("sam_med.models.build", "sam_med.models.sam3d")
_USER_CONFIGS: dict[str, Path] = {}
_CACHE: dict[tuple, "LoadedModel"] = {}
_LOCK = threading.Lock()
REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "models"


def register_architecture(name: str, builder: Callable[..., nn.Module] | None = None):
    """Register ``builder`` under ``name`` (usable as a decorator)."""
    def deco(fn):
        _ARCHITECTURES[name] = fn
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


# --------------------------------------------------------------------------- configs
def config_dirs() -> list[Path]:
    dirs = [Path(p).expanduser() for p in os.environ.get("SAM_MED_CONFIGS", "").split(os.pathsep) if p]
    dirs.append(REPO_CONFIGS)
    dirs.append(Path.home() / ".config" / "sam-med" / "models")
    return dirs


def register_model_config(path: str | os.PathLike, name: str | None = None) -> str:
    """Make the config file at ``path`` loadable as ``name`` (default: its ``name`` field or
    file stem). Returns the name."""
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise SamMedError(f"model config not found: {p}")
    if name is None:
        import yaml
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise SamMedError(f"model config {p} is not valid YAML: {e}") from e
        name = str(data.get("name") or p.stem)
    _USER_CONFIGS[name] = p
    return name


def list_models() -> list[str]:
    """Names of all loadable model configs."""
    names = set(_USER_CONFIGS)
    for d in config_dirs():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)


def find_model_config(name: str) -> Path:
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


def read_model_config(name: str) -> dict[str, Any]:
    """Parse and resolve a model config with ``monai.bundle.ConfigParser``.

    ``_target_`` entries become objects (the preprocessing transforms); ``@`` and ``$``
    references are evaluated. Returns a plain dict (plus ``config_path``)."""
    from monai.bundle import ConfigParser

    path = find_model_config(name)
    parser = ConfigParser()
    try:
        parser.read_config(str(path))
        resolved = parser.get_parsed_content(instantiate=True)
    except Exception as e:
        raise SamMedError(f"model config {path} cannot be parsed: {type(e).__name__}: {e}") from e
    for key in ("architecture", "image_size", "checkpoint"):
        if key not in resolved:
            raise SamMedError(f"model config {path} lacks the required field {key!r}")
    resolved = dict(resolved)
    resolved.setdefault("name", path.stem)
    resolved["config_path"] = str(path)
    return resolved


# --------------------------------------------------------------------------- loaded model
def _dtype(value) -> torch.dtype | None:
    if value in (None, "", "none", "None", "float32", "fp32"):
        return None
    if isinstance(value, torch.dtype):
        return value
    table = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
             "fp16": torch.float16}
    if str(value) not in table:
        raise SamMedError(f"unsupported autocast_dtype {value!r} (use null or bfloat16)")
    return table[str(value)]


@dataclass
class LoadedModel:
    """A model ready for inference plus everything needed to feed it.

    Attributes: ``name``; ``model`` (:class:`~sam_med.models.sam.Sam` in eval mode with
    ``.image_encoder``, ``.prompt_encoder``, ``.mask_decoder``); ``config`` (resolved
    dict); ``sha256`` of the weights; ``image_size`` S (256 LiteMedSAM, 1024 SAM);
    ``preprocess`` (:class:`~sam_med.transforms.SlicePreprocessor`); ``postprocessor``
    (:class:`~sam_med.transforms.LowResToSource`); ``autocast_dtype`` (None = fp32, or
    ``torch.bfloat16``: used by :meth:`encode`/:meth:`decode`); ``device``;
    ``checkpoint_path``.
    """

    name: str
    model: nn.Module
    config: dict[str, Any]
    sha256: str
    image_size: int
    preprocess: Any
    postprocessor: Any
    autocast_dtype: torch.dtype | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    checkpoint_path: str = ""

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    # -- intensity + geometry helpers
    def intensity_to_uint8_range(self, array, intensity: str, modality: str | None = None,
                                 window: tuple[float, float] | None = None) -> np.ndarray:
        """Config-driven version of :func:`sam_med.transforms.intensity_to_uint8_range`
        (default CT window and MR percentiles from this model's config)."""
        from ..transforms import intensity_to_uint8_range
        cw = self.config.get("ct_window") or {}
        if window is None and cw:
            window = (float(cw["level"]), float(cw["width"]))
        pct = tuple(self.config.get("mr_percentiles", (0.5, 99.5)))
        return intensity_to_uint8_range(array, intensity, modality, window=window, percentiles=pct)

    @property
    def supports_reduced_input(self) -> bool:
        """True when the encoder runs on ``r x r`` inputs smaller than ``S x S`` (TinyViT:
        convolutional + windowed attention; ViT has absolute position embeddings)."""
        return bool(getattr(self.model.image_encoder, "supports_reduced_input", False))

    def preprocess_at(self, size: int):
        """The model's slice preprocessing with output size ``size`` (<= S): a reduced
        input for :meth:`encode` (see :meth:`supports_reduced_input`)."""
        if int(size) == self.image_size:
            return self.preprocess
        if not self.supports_reduced_input:
            raise ValueError(f"{self.name}: the encoder needs {self.image_size}x{self.image_size} inputs")
        return self.preprocess.at_size(int(size))

    def preprocess_slice(self, slice2d: np.ndarray):
        """``(H, W)`` slice in 0..255 -> ``(tensor (3, S, S), SliceMeta)``."""
        return self.preprocess(slice2d)

    def box_to_model(self, box, original_size) -> np.ndarray:
        """XYXY source pixels ``(4,)``/``(B, 4)`` -> model-input pixels (config's box rule;
        LiteMedSAM: ``int(c * 256 / max(H, W))``)."""
        return self.preprocess.box_to_model(box, original_size)

    def points_to_model(self, points, original_size) -> np.ndarray:
        """xy source pixels ``(..., 2)`` -> model-input pixels (``x*new_w/W``, ``y*new_h/H``)."""
        return self.preprocess.points_to_model(points, original_size)

    # -- batched tensor API
    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``images (B, 3, S, S)`` float32 (from :attr:`preprocess`) -> embeddings
        ``(B, 256, 64, 64)`` float32 on :attr:`device` (no grad; autocast if set)."""
        if images.ndim == 3:
            images = images[None]
        s = self.image_size
        ok = images.ndim == 4 and tuple(images.shape[1:]) == (3, s, s)
        if not ok and images.ndim == 4 and images.shape[1] == 3 and self.supports_reduced_input:
            r = int(images.shape[-1])
            ok = images.shape[-2] == r and r <= s and r % 16 == 0
        if not ok:
            raise ValueError(f"encode expects (B, 3, {s}, {s}), got {tuple(images.shape)}")
        with self._autocast():
            out = self.model.image_encoder(images.to(self.device, torch.float32))
        return out.float()

    @torch.inference_mode()
    def decode(self, embeddings: torch.Tensor, boxes=None, points=None, point_labels=None,
               mask_input=None, multimask: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder + mask decoder on precomputed embeddings.

        embeddings ``(B, 256, 64, 64)`` (B=1 is broadcast over the prompt batch);
        boxes ``(B, 4)`` XYXY, points ``(B, N, 2)`` xy, point_labels ``(B, N)`` (1 fg,
        0 bg, -1 pad; default all 1) — coordinates in **model-input pixels** (see
        :meth:`box_to_model`); mask_input ``(B, 1, 256, 256)`` low-res logits of a
        previous prediction. Returns ``(low_res_logits (B, K, 256, 256), iou (B, K))``
        float32, K = 3 if ``multimask`` else 1.
        """
        dev = self.device

        def t(x, dtype=torch.float32):
            return None if x is None else torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x,
                                                          dtype=dtype, device=dev)
        boxes, points, mask_input = t(boxes), t(points), t(mask_input)
        point_labels = t(point_labels, torch.int64)
        if boxes is None and points is None and mask_input is None:
            raise SamMedError("decode needs at least one prompt (box, points or mask_input)")
        if boxes is not None and boxes.shape[-1] != 4:
            raise ValueError(f"boxes must be (B, 4) XYXY, got {tuple(boxes.shape)}")
        if points is not None:
            if points.ndim == 2:
                points = points[None]
            if point_labels is not None and point_labels.ndim == 1:
                point_labels = point_labels[None]
        with self._autocast():
            logits, iou = self.model.decode(embeddings.to(dev), boxes=boxes, points=points,
                                            point_labels=point_labels, mask_input=mask_input,
                                            multimask=multimask)
        return logits.float(), iou.float()

    def postprocess(self, low_res_logits: torch.Tensor, meta) -> torch.Tensor:
        """Low-res logits ``(..., 256, 256)`` -> logits on the source slice ``(..., H, W)``
        (crop the unpadded region, bilinear ``align_corners=False``). Threshold at 0."""
        return self.postprocessor(low_res_logits, meta)


def clear_model_cache() -> None:
    with _LOCK:
        _CACHE.clear()


def load_model(name: str = "lite_medsam", *, checkpoint: str | os.PathLike | None = None,
               device: str | torch.device = "cpu", autocast_dtype: Any = "config") -> LoadedModel:
    """Build a registered model, load its weights strictly and safely, cache it per process.

    ``name``: a model config name (see :func:`list_models`) or a path to a config file.
    ``checkpoint``: a file to use instead of the configured location (``--checkpoint``);
    it is still checked against the config's sha256 (a fine-tuned checkpoint needs its
    own config with its own ``sha256``, or ``sha256: null``; see
    :func:`register_model_config`). ``autocast_dtype``: ``"config"`` (default: the
    config's ``autocast_dtype``), None or ``torch.bfloat16``.
    Raises :class:`~sam_med.errors.CheckpointError` for a missing, wrong or unsafe file.
    """
    from .checkpoint import load_into, read_state_dict, resolve_checkpoint

    dev = torch.device(device)
    key = (name, str(Path(checkpoint).expanduser().resolve()) if checkpoint else None, str(dev),
           str(autocast_dtype))
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    cfg = read_model_config(name)
    ckpt_cfg = dict(cfg["checkpoint"])
    path = resolve_checkpoint(ckpt_cfg, checkpoint, cfg["name"])
    expected = ckpt_cfg.get("sha256")
    sd, digest = read_state_dict(path, expected)
    builder = get_architecture(str(cfg["architecture"]))
    model = builder(**dict(cfg.get("architecture_args") or {}))
    if cfg.get("delta"):  # fine-tuned weights stored as base model + delta (sam_med.training)
        _load_base_plus_delta(model, cfg, sd, str(path))
    else:
        load_into(model, sd, str(path))
    model.eval().to(dev)
    for p in model.parameters():
        p.requires_grad_(False)
    ac = cfg.get("autocast_dtype") if autocast_dtype == "config" else autocast_dtype
    from ..transforms import LowResToSource, SlicePreprocessor
    pre = cfg.get("preprocessing") or SlicePreprocessor(int(cfg["image_size"]))
    post = cfg.get("postprocessing") or LowResToSource()
    lm = LoadedModel(name=cfg["name"], model=model, config=cfg, sha256=digest,
                     image_size=int(cfg["image_size"]), preprocess=pre, postprocessor=post,
                     autocast_dtype=_dtype(ac), device=dev, checkpoint_path=str(path))
    with _LOCK:
        _CACHE[key] = lm
    return lm


# --------------------------------------------------------------------------- fine-tuned deltas
def _load_base_plus_delta(model: nn.Module, cfg: dict[str, Any], delta: dict[str, torch.Tensor],
                          source: str) -> None:
    """Load ``cfg['base_model']``'s weights into ``model``, then apply ``delta`` (written by
    :mod:`sam_med.training.export`). ``cfg['delta']['kind']``: ``partial`` (the tensors in
    ``delta`` replace the base's; every key must exist with the same shape) or ``lora``
    (``<module>.lora_A``/``.lora_B`` pairs are merged: ``W += lora_scaling * B @ A``; other
    keys replace as in ``partial``). The base weights must match the sha256 recorded at
    training time."""
    from .checkpoint import load_into, read_state_dict, resolve_checkpoint

    spec, base = cfg["delta"], cfg.get("base_model") or {}
    if spec.get("kind") not in ("partial", "lora") or not base.get("name"):
        raise CheckpointError(f"{cfg['config_path']}: delta needs kind partial|lora and base_model.name")
    bcfg = read_model_config(str(base["name"]))
    if str(bcfg["architecture"]) != str(cfg["architecture"]):
        raise CheckpointError(f"{cfg['config_path']}: base model {base['name']!r} has architecture "
                              f"{bcfg['architecture']!r}, not {cfg['architecture']!r}")
    bck = dict(bcfg["checkpoint"])
    bsd, _ = read_state_dict(resolve_checkpoint(bck, None, bcfg["name"]), base.get("sha256") or bck.get("sha256"))
    lora = {k: v for k, v in delta.items() if k.endswith((".lora_A", ".lora_B"))}
    if lora and spec["kind"] != "lora":
        raise CheckpointError(f"{source}: LoRA tensors in a {spec['kind']!r} delta")
    for p in sorted({k.rsplit(".", 1)[0] for k in lora}):
        a, b, w = lora.get(f"{p}.lora_A"), lora.get(f"{p}.lora_B"), bsd.get(f"{p}.weight")
        if a is None or b is None or w is None or (b.shape[0], a.shape[1]) != tuple(w.shape):
            raise CheckpointError(f"{source}: LoRA adapter {p!r} does not fit the base model")
        bsd[f"{p}.weight"] = w + (b.float() @ a.float() * float(spec.get("lora_scaling", 1.0))).to(w.dtype)
    for k, v in delta.items():
        if k in lora:
            continue
        if k not in bsd or tuple(bsd[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{source}: delta tensor {k!r} is not in the base model (or has another shape)")
        bsd[k] = v
    load_into(model, bsd, source)
