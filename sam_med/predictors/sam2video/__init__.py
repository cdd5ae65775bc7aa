"""SAM 2 video-style prediction on volumes (slices as frames): MedSAM2 and SAM 2.1 weights.

* :class:`Sam2VideoEngine` (:mod:`.engine`): ``init_state`` / ``add_prompts`` /
  ``propagate`` / ``volume_mask`` on uint8 frames, with a bounded memory bank (:mod:`.state`)
  and cached encoder features;
* :class:`Sam2VideoPredictor` (:mod:`.predictor`): the :class:`~sam_med.predictors.base.VolumePredictor`
  the Session, CLI and evaluation use (``build_predictor("medsam2", checkpoint=...)``).
"""

from .engine import Sam2VideoEngine, fill_small_holes
from .predictor import Sam2VideoOptions, Sam2VideoPredictor
from .state import FeatureCache, FrameOut, ObjectTrack, VideoState

__all__ = ["Sam2VideoEngine", "Sam2VideoPredictor", "Sam2VideoOptions", "VideoState", "ObjectTrack", "FrameOut",
           "FeatureCache", "fill_small_holes", "is_sam2_video"]


def is_sam2_video(cfg: dict) -> bool:
    """True for model configs that run with this predictor (family ``sam2``)."""
    return str(cfg.get("family", "")) == "sam2" or str(cfg.get("architecture", "")) == "sam2_hiera"
