"""A model-free baseline predictor: intensity threshold inside the box, edited by clicks.

It exists so the harness can be checked end to end (and timed) without model
weights, and as the floor any learned predictor must beat. It is deterministic:

* box: voxels inside the (inclusive) box whose intensity is ``>= threshold``;
  with ``largest=True`` only the largest 26-connected component is kept.
* no box: empty mask before the clicks.
* clicks, in order: a positive click adds a ball of ``radius`` voxels around it
  (also outside the box), a negative click removes one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..predictors.base import PredictionInfo, PredictionResult, build_options
from ..prompts import apply_key_slice_box


@dataclass
class ThresholdOptions:
    """The threshold baseline's options (``--model threshold --option threshold=100``)."""

    threshold: float = 0.5
    radius: float = 1.0
    largest: bool = False


class ThresholdPredictor:
    model_name = "threshold"

    def __init__(self, threshold: float = 0.5, radius: float = 1.0, largest: bool = False):
        o = build_options(ThresholdOptions, {"threshold": threshold, "radius": radius, "largest": largest},
                          owner="the threshold baseline")
        self.threshold, self.radius, self.largest = o.threshold, o.radius, o.largest

    def prepare(self, volume, progress=None) -> None:  # nothing to encode
        return None

    def predict(self, volume, prompts, previous=None, progress=None) -> PredictionResult:
        prompts = apply_key_slice_box(prompts)  # this predictor knows tight 3D boxes only
        arr = volume.array
        mask = np.zeros(arr.shape, dtype=bool)
        if prompts.box is not None:
            lo, hi = prompts.box.int_bounds()
            sl = tuple(slice(int(a), int(b) + 1) for a, b in zip(lo, hi))
            mask[sl] = arr[sl] >= self.threshold
            if self.largest and mask.any():
                from .protocols import largest_component

                mask = largest_component(mask)
        if prompts.points:
            grid = np.ogrid[tuple(slice(0, s) for s in arr.shape)]
            for p in prompts.points:
                ball = sum((g - c) ** 2 for g, c in zip(grid, p.ijk)) <= self.radius ** 2
                if p.positive:
                    mask |= ball
                else:
                    mask &= ~ball
        return PredictionResult(mask=mask, info=PredictionInfo(extra={"n_points": len(prompts.points)}))


def build_threshold(device: str = "cpu", **options) -> ThresholdPredictor:
    """The baseline from typed options (unknown keys: ``OptionError``)."""
    o = build_options(ThresholdOptions, options, owner="the threshold baseline")
    return ThresholdPredictor(o.threshold, o.radius, o.largest)
