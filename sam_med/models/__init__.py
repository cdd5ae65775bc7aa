"""SAM-family models in our own code: encoders, prompt encoder, mask decoder, registry.

Public API::

    list_models() -> list[str]
    load_model(name="lite_medsam", *, checkpoint=None, device="cpu") -> LoadedModel
    register_model_config(path, name=None) -> str
    register_architecture(name)(builder)
"""

from .registry import (LoadedModel, clear_model_cache, get_architecture, list_architectures,
                       list_models, load_model, read_model_config, register_architecture,
                       register_model_config)
from .sam import Sam

__all__ = ["LoadedModel", "Sam", "clear_model_cache", "get_architecture", "list_architectures",
           "list_models", "load_model", "read_model_config", "register_architecture",
           "register_model_config"]
