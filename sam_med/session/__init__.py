"""Interactive segmentation state shared by the napari plugin, the CLI and scripts
(:class:`Session`: objects, prompts, masks, undo/redo; :mod:`.store`: saving and loading)."""

from ..predictors.base import PredictionResult, ProgressFn, VolumePredictor
from ..provenance import versions
from .core import Session
from .objects import OVERLAP_RULES, PALETTE, SegObject

__all__ = ["Session", "SegObject", "PALETTE", "OVERLAP_RULES", "PredictionResult", "ProgressFn",
           "VolumePredictor", "versions"]
