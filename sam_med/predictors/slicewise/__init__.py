"""Slice-wise 3D segmentation with a 2D SAM-style model (LiteMedSAM by default).

Recipe (see ``benchmarks/bench_slicewise.py`` for the measurements behind each choice):

1. The volume is mapped to the model's 0..255 intensity range once (CT window,
   MR percentiles, research npz left as is) by the model config's pipeline
   (:mod:`.volume_binding`).
2. Slices are taken perpendicular to the acquisition axis (``Volume.slice_axis``)
   unless ``axis`` is given; see :mod:`sam_med.predictors.planes` for the 2D layout.
   Embeddings come from an :class:`EmbeddingCache` (shared across objects, prompts
   and clicks; optional on-disk store) through a worker pool (:mod:`.encoding`).
3. **View** (:mod:`.views`): the key slice is decoded in the *context view* (a square of
   ``CONTEXT`` x the box side around the box at the whole slice's scale, a reduced encoder
   input; the whole slice when it would not fit, where ``whole_res_alt`` is scored too) and,
   with ``zoom="auto"``, in the *zoom view* (``ZOOM_FACTOR`` x the box side, resized to S); the
   zoom is kept only when the model's predicted IoU there is higher by ``ZOOM_MARGIN``.
4. A 3D box starts on its middle slice (a key-slice box on its slice), then propagates both
   ways (:mod:`.propagation`): each next slice is prompted with the previous slice's mask box
   (+ ``MARGIN`` px) clipped to the 3D box; with ``slice_step`` > 1 every n-th slice is decoded
   and the slices between are interpolated where both ends agree (:mod:`.skipping`). It stops
   at the box's extent or when the object vanishes. Points only: the box is searched on the
   clicked slice first (:mod:`.seeding`).
5. Clicks (:mod:`.corrections`): ``click_rule="ball"`` paints (positive) or cuts (negative)
   the disk from the click to the mask's edge, kept to the clicked tissue by an intensity
   guard, and continues it through the neighbouring slices while the click's pixel is still
   wrong there (:mod:`.ball`); a positive click on a slice the object had not reached seeds it
   there with the model. No re-propagation: a click changes only the error it lands in.

The options (:mod:`.options`) are the knobs a user sets; the fixed numbers are in
:mod:`.constants`; ``docs/engine.md`` gives the measurements behind both.

Decoding goes through the segment-anything-style 2D predictor
(:class:`~sam_med.predictors.image_predictor.SamPredictor2D`, :mod:`.decoding`). The
predictor (:mod:`.predictor`) composes the parts and offers the SAM 2 video-predictor
style API (``init_state`` / ``add_prompts`` / ``propagate``) under one driver, ``segment``,
which ``predict`` and ``Session.stream`` run.
"""

from .options import SliceWiseOptions
from .predictor import SliceWisePredictor
from .state import ObjectState, Propagation, SliceOut

__all__ = ["SliceWisePredictor", "SliceWiseOptions", "ObjectState", "SliceOut", "Propagation"]
