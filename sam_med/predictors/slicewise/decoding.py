"""Decode one slice of an object's view through the segment-anything-style 2D predictor.

The view ``(crop, res)`` of an object is what the encoder saw: the inclusive crop of
the plane (None: the whole slice) at encoder input size ``res`` (None: the model's S).
Prompts come in **plane pixels** (``x`` = column, ``y`` = row of the whole slice); here
they are shifted into the crop, given to :class:`~sam_med.predictors.image_predictor.
SamPredictor2D` (``set_embedding`` with the view's preprocessing, then ``predict``: the
coordinate mapping to the model input and the postprocessing back to the crop live
there), and the crop's masks are pasted back into the full plane.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..image_predictor import SamPredictor2D
from ..planes import PlaneGeometry
from .state import SliceOut

__all__ = ["SliceDecoder"]


class SliceDecoder:
    """``decode(geo, view, emb, box2d, points, labels, mask_input, multimask)`` -> SliceOut(s).

    ``transform_for(res)``: the slice preprocessing of an encoder input size (the
    encoder's :meth:`~.encoding.SliceEncoder.transform`); ``timings["decode"]``
    accumulates decoder seconds."""

    def __init__(self, loaded, transform_for, timings: dict[str, float]) -> None:
        self.predictor = SamPredictor2D(loaded)
        self.transform_for = transform_for
        self.timings = timings

    def decode(self, geo: PlaneGeometry, view, emb: torch.Tensor, box2d=None, points=None, labels=None,
               mask_input=None, multimask: bool = False):
        """Decode one slice with a 2D box (plane px) (+ optional points ``(N, 2)`` xy with
        ``labels`` 1/0, and a dense prompt ``(1, 1, 256, 256)``). ``emb``: ``(256, 64, 64)``.
        Returns a :class:`SliceOut`, or a list of three with ``multimask``."""
        crop, res = view
        hw = geo.hw
        hw_crop = hw if crop is None else (crop[3] - crop[1] + 1, crop[2] - crop[0] + 1)
        off = np.zeros(2) if crop is None else np.array([crop[0], crop[1]], dtype=float)
        box = pts = lab = None
        if box2d is not None:
            box = np.asarray(box2d, dtype=float) - np.concatenate([off, off])
        if points is not None and len(points):
            pts = np.asarray(points, dtype=float).reshape(-1, 2) - off
            lab = np.asarray(labels, dtype=np.int64)
        t0 = time.perf_counter()
        self.predictor.set_embedding(emb, original_size=hw_crop, transform=self.transform_for(res))
        masks, scores, low = self.predictor.predict(box=box, points=pts, labels=lab, mask_input=mask_input,
                                                    multimask_output=multimask)
        self.timings["decode"] = self.timings.get("decode", 0.0) + time.perf_counter() - t0
        outs = []
        for i in range(masks.shape[0]):
            if crop is None:
                mask = masks[i]
            else:
                mask = np.zeros(hw, dtype=bool)
                mask[crop[1] : crop[3] + 1, crop[0] : crop[2] + 1] = masks[i]
            outs.append(SliceOut(mask=mask, logits=torch.from_numpy(low[i : i + 1][None].copy()),
                                 box=None if box2d is None else np.asarray(box2d), score=float(scores[i])))
        return outs if multimask else outs[0]
