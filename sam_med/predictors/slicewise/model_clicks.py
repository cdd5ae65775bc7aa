"""``click_rule="model"``: a click answered by a click-trained decoder (issue 27), kept a correction.

On the clicked slice (which has a mask) the decoder re-decodes the slice from its box (grown to
the positive clicks), every click on that slice as point prompts, and the slice's current result
as the dense prompt (SAM's interactive recipe, what ``recipe: interactive`` trains). What the
model proposes is then bounded like a user's correction:

* **one-sided**: a positive click only adds, a negative click only removes;
* **local**: only the changed part connected to the click is applied (the model's other changes
  on the slice, e.g. a shrunken far edge, are not what the click asked for);
* **an addition is a correction, not a redraw**: an addition larger than ``MAX_CHANGE`` x the
  slice's mask is refused; a removal may take any share of it (measured: with the click decoder
  v4, removals of any size win on both validation sets and cost nothing on the CVPR25 cases,
  ``docs/engine.md``). A proposal that does not reach the click is refused. A refused click
  falls back to the guarded ball (:func:`~.ball.ball_click`, the rule before this one).

The change then continues through the neighbouring slices while the error does: on slice
``k ± j`` the click's pixel is still wrong, the slice has a mask and no clicks of its own, and
``j`` is within the ball's radius (:func:`~.ball.ball_radius_3d`: how far the error around the
click can reach). A neighbour the box step decoded (it holds the model's logits) is decoded from
its own box and result with the click's pixel as a point prompt, and its bounded change must
overlap the previous slice's (the error is one 3D region). A neighbour without the model's logits
(``slice_step`` skipped it, or an earlier click edited it) takes the previous slice's change where
it applies (what interpolation would give): a click waits for no encode beyond its own slice's,
and the result does not depend on what an on-disk cache happens to hold. The first slice where
any of this fails ends the run in that direction.

A positive click on a slice the object never reached seeds it there (as the other rules do,
:func:`~.corrections.seed_slice`). The decoder is ``click_model``'s (a model sharing the
predictor's image encoder, checked once), else the one the model's config names (``click_model:``;
LiteMedSAM's is ``lite_medsam_clicks_hn_hippo4``), else the predictor's own.
"""

from __future__ import annotations

import weakref

import numpy as np
import torch

from ...masks import mask_logits
from ...models import load_model
from ..base import OptionError
from ..planes import PlaneGeometry, clip_box, component_at, mask_bbox, union_box
from .ball import ball_click, ball_radius, ball_radius_3d, edited
from .clicks import clicks_on
from .constants import MARGIN, MAX_CHANGE, MODEL_CARRY
from .decoding import SliceDecoder
from .state import SliceOut

__all__ = ["click_decoder", "click_decoder_record", "model_click", "bounded_change"]

_DECODERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def click_decoder(pred) -> SliceDecoder | None:
    """``click_model``'s decoder (loaded once per predictor; None: the predictor's own).
    A ``click_model`` option whose image encoder differs from the predictor's is an
    :class:`OptionError`; a config's ``click_model:`` that does not fit (a config derived from
    LiteMedSAM's with another encoder) is passed over for the model's own decoder."""
    chosen = pred.options.click_model
    name = chosen or pred.loaded.config.get("click_model")
    if name is None or name == pred.model_name:
        return None
    if pred in _DECODERS:
        return _DECODERS[pred]
    dec = None
    loaded = load_model(name, device=str(pred.loaded.device))
    if loaded.encoder_signature() == pred.loaded.encoder_signature():  # a decoder-only fine-tune of it
        dec = SliceDecoder(loaded, pred.encoder.transform, pred.timings)
    elif chosen is not None:
        raise OptionError(f"click_model={name}: its image encoder differs from {pred.model_name}'s, "
                          "so it cannot decode that model's embeddings")
    _DECODERS[pred] = dec
    return dec


def click_decoder_record(pred) -> dict | None:
    """``{"name", "checkpoint_sha256"}`` of the click decoder that answered ``pred``'s clicks
    (for provenance); None when no other model's decoder has answered any (or ``pred`` is None:
    a session without a predictor)."""
    dec = _DECODERS.get(pred) if pred is not None else None
    if dec is None:
        return None
    loaded = dec.predictor.model
    return {"name": loaded.name, "checkpoint_sha256": loaded.sha256}


def _dense(pred, st, so: SliceOut, emb) -> torch.Tensor | None:
    """A slice's result as the dense prompt: its low-res logits, else its mask as logits."""
    if not so.mask.any():
        return None
    if so.logits is not None:
        return so.logits
    m = so.mask if st.crop is None else so.mask[st.crop[1]:st.crop[3] + 1, st.crop[0]:st.crop[2] + 1]
    return mask_logits(m, pred.encoder.transform(st.res), emb.shape[-2:])


def _redecode(pred, st, geo: PlaneGeometry, z: int, cur: SliceOut, clicks) -> SliceOut:
    """Slice ``z`` decoded from its box (grown to the positive clicks), ``clicks`` ``(x, y,
    positive)`` as point prompts and its current result as the dense prompt."""
    emb = pred.view_embeddings(st, geo, [z])[z]
    box = cur.box if cur.box is not None else mask_bbox(cur.mask)
    for cx, cy, pos in clicks:
        if pos:
            box = union_box(np.asarray(box), np.array([cx - MARGIN, cy - MARGIN, cx + MARGIN, cy + MARGIN]))
    box = clip_box(np.asarray(box), geo.hw)
    pts = [(cx, cy) for cx, cy, _ in clicks]
    labels = [1 if pos else 0 for _, _, pos in clicks]
    dense = _dense(pred, st, cur, emb)
    dec = click_decoder(pred)
    if dec is None:
        return pred.decode_slice(geo, z, st.view, emb, box, pts, labels, dense)
    return dec.decode(geo, st.view, emb, box, pts, labels, dense)


def bounded_change(old: np.ndarray, new: np.ndarray, x: int, y: int, positive: bool) -> np.ndarray | None:
    """The part of the model's proposal ``new`` that is a correction of ``old`` for a click at
    ``(x, y)``: the added (positive) or removed (negative) pixels connected to the click; None
    when the proposal does not honour the click, or adds more than ``MAX_CHANGE`` x ``old``
    (removals are not bounded in size)."""
    if bool(new[y, x]) != positive:
        return None
    change = component_at((new & ~old) if positive else (old & ~new), x, y)
    if change is None or (positive and change.sum() > MAX_CHANGE * max(int(old.sum()), 1)):
        return None
    return change


def model_click(pred, st, geo: PlaneGeometry, k: int, x: int, y: int, positive: bool) -> list[int]:
    """A click at plane ``(x, y)`` of slice ``k`` (which has a mask; the click already in
    ``st.prompts``); returns the slices changed (``k`` first; empty when the click agrees)."""
    click_decoder(pred)  # checked at the first click, whatever it asks
    cur = st.slices[k]
    r = ball_radius(cur.mask, x, y, positive)
    if r is None:
        return []
    change = bounded_change(cur.mask, _redecode(pred, st, geo, k, cur, clicks_on(st.prompts.points, geo, k)).mask,
                            x, y, positive)
    if change is None:
        return ball_click(pred, st, geo, k, x, y, positive)
    reach = int(ball_radius_3d(st, geo, k, x, y, positive, r) if not positive else r)  # before the edit
    st.slices[k] = edited(cur, change, positive)
    changed = [k]
    clicked = {int(round(geo.to_plane(q.ijk)[0])) for q in st.prompts.points}
    for step in (-1, 1):
        prev, decodes = change, 0
        for j in range(1, reach + 1):
            z = k + step * j
            old = st.slices.get(z)
            if z in clicked or old is None or not old.mask.any() or bool(old.mask[y, x]) == positive:
                break  # the error does not reach this slice at the click (or the user clicked there)
            if old.logits is not None and decodes < MODEL_CARRY:  # decoded by the box step
                decodes += 1
                dz = bounded_change(old.mask, _redecode(pred, st, geo, z, old, [(x, y, positive)]).mask,
                                    x, y, positive)
            else:  # not decoded by the box step, or the decode budget spent: the previous slice's change
                dz = component_at(prev & (~old.mask if positive else old.mask), x, y)
            if dz is None or not (dz & prev).any():
                break
            st.slices[z] = edited(old, dz, positive)
            changed.append(z)
            prev = dz
    return changed
