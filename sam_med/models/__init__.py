"""SAM-family models in our own code: encoders, prompt encoder, mask decoder, registry.

Public API::

    list_models() -> list[str]
    load_model(name="lite_medsam", *, checkpoint=None, device="cpu", precision=None)
        -> LoadedModel (dims 2) | LoadedModel3D (dims 3)
    read_model_config(name_or_path_or_dict) -> dict
    register_model_config(path, name=None) -> str
    register_architecture(name)(builder)
"""

from .configs import list_models, read_model_config, register_model_config
from .loaded import LoadedModel, LoadedModel3D
from .precision import resolve_precision
from .registry import (clear_model_cache, get_architecture, list_architectures, load_model,
                       register_architecture)
from .sam import Sam

__all__ = ["LoadedModel", "LoadedModel3D", "Sam", "clear_model_cache", "get_architecture",
           "list_architectures", "list_models", "load_model", "read_model_config",
           "register_architecture", "register_model_config", "resolve_precision"]
