"""Predictors: 2D (segment-anything style) here; slice-wise and volumetric ones alongside."""

from .image_predictor import SamPredictor2D

__all__ = ["SamPredictor2D"]
