"""One object of a :class:`~sam_med.session.Session`: id, name, colour, prompts, mask, result."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from ..predictors.base import PredictionResult
from ..prompts import ObjectPrompts

__all__ = ["SegObject", "PALETTE", "OVERLAP_RULES"]

OVERLAP_RULES = ("last", "first", "locked-first")

# A colour-blind-friendly cycle (Okabe–Ito), RGB 0..1
PALETTE = [
    (0.902, 0.624, 0.0),
    (0.337, 0.706, 0.914),
    (0.0, 0.620, 0.451),
    (0.941, 0.894, 0.259),
    (0.0, 0.447, 0.698),
    (0.835, 0.369, 0.0),
    (0.800, 0.475, 0.655),
]


@dataclass
class SegObject:
    id: int
    name: str
    color: tuple[float, float, float]
    prompts: ObjectPrompts = field(default_factory=ObjectPrompts)
    mask: np.ndarray | None = None
    result: PredictionResult | None = None
    locked: bool = False

    def snapshot(self) -> "SegObject":
        return dataclasses.replace(self, prompts=self.prompts.copy())
