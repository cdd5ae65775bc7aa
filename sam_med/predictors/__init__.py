"""Predictors: the contract (:mod:`.base`), the segment-anything-style 2D predictor
(:mod:`.image_predictor`), the slice-wise (:mod:`.slicewise`) and volumetric
(:mod:`.volumetric`) 3D predictors and the factory that picks one (:mod:`.factory`).

Importing this package is light (no torch): the contract is what the Session needs.
"""

from .base import OptionError, PredictionResult, ProgressFn, VolumePredictor

__all__ = ["SamPredictor2D", "OptionError", "PredictionResult", "ProgressFn", "VolumePredictor"]


def __getattr__(name: str):
    if name == "SamPredictor2D":
        from .image_predictor import SamPredictor2D

        return SamPredictor2D
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
