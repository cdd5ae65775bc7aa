"""Slice-wise 3D segmentation with a 2D SAM-style model (LiteMedSAM by default).

Recipe (see ``benchmarks/bench_slicewise.py`` for the measurements behind each choice):

1. The volume is mapped to the model's 0..255 intensity range once (CT window,
   MR percentiles, research npz left as is) by the model config's pipeline
   (:mod:`.volume_binding`).
2. Slices are taken perpendicular to the acquisition axis (``Volume.slice_axis``)
   unless ``axis`` is given; see :mod:`sam_med.predictors.planes` for the 2D layout.
   Embeddings come from an :class:`EmbeddingCache` (shared across objects, prompts
   and clicks; optional on-disk store) through a worker pool (:mod:`.encoding`).
3. **View selection (zoom)** (:mod:`.views`): the key slice is decoded in two views: the
   *context view* (a square of ``context`` x the box side around the box at the whole
   slice's scale, encoded as a reduced r x r input, r < S; the whole slice when that
   square would not fit) and the *zoom view* (a square of ``zoom_factor`` x the box
   side, resized to S). The zoom is used for every slice of the object only when the
   model's own predicted IoU there beats the context view's by ``zoom_margin``. Small or
   low-contrast lesions gain pixels; the others keep the slice's own scale. The encoder
   cost grows with the input area, so a context view of a 60 px lesion in a 512² slice
   costs ~1/5 of the whole slice; large organs get the whole slice, whose embeddings all
   objects share. Costs one extra encode at the key slice.
4. A 3D box starts on its middle slice with the box's in-plane extent, then
   propagates both ways (:mod:`.propagation`): each next slice is prompted with the
   previous slice's mask box (+ ``margin`` px) clipped to the 3D box (optionally with the
   previous slice's low-res logits as a dense prompt, ``mask_prompt``: off by default, it
   costs abdominal organs 0.08 Dice); it stops at the box's extent or when the object
   vanishes (empty mask or predicted IoU below ``iou_stop``). Points only: the box is
   searched on the clicked slice first (:mod:`.seeding`).
5. Clicks (refinement, :mod:`.clicks`) act on their slice through the box, which is what
   this box-trained model understands: a positive click grows the slice's box to include
   it, a negative click moves the nearest box side past it; the slice is re-decoded from
   cached embeddings and the change is re-propagated outwards only while the
   neighbouring slices change; each re-propagated slice gets its own previous logits as
   a dense prompt (``refine_own_logits``). A click on a slice the object had not reached
   seeds it there from the nearest segmented slice.

Decoding goes through the segment-anything-style 2D predictor
(:class:`~sam_med.predictors.image_predictor.SamPredictor2D`, :mod:`.decoding`). The
predictor (:mod:`.predictor`) composes the parts and offers the SAM 2 video-predictor
style API (``init_state`` / ``add_prompts`` / ``propagate``) under ``predict``.
"""

from .options import SliceWiseOptions
from .predictor import SliceWisePredictor
from .state import ObjectState, Propagation, SliceOut

__all__ = ["SliceWisePredictor", "SliceWiseOptions", "ObjectState", "SliceOut", "Propagation"]
