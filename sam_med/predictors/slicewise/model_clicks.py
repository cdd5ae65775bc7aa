"""``click_rule="model"``: a click answered by a click-trained decoder (issue 27).

The clicked slice is re-decoded from its box (grown to the positive clicks), every click on that
slice as point prompts, and its current low-res logits as the dense prompt (SAM's interactive
recipe, what ``recipe: interactive`` trains). The change is then carried outwards: each
neighbour is decoded from its own box with the changed neighbour's logits as the dense prompt,
while it keeps changing (2D Dice to its old mask below ``REFINE_STOP_DICE``), up to a slice with
clicks of its own. A click on a slice the object never reached seeds it there (the nearest
segmented slice's box grown to the click). A decode that does not honour the click falls back to
the disk edit on the clicked slice.

The decoder is ``click_model``'s (a model sharing the predictor's image encoder, checked once)
or, without it, the predictor's own.
"""

from __future__ import annotations

import weakref

import numpy as np
import torch

from ...masks import mask_logits
from ...models import load_model
from ..base import OptionError
from ..planes import PlaneGeometry, clip_box, dice2d, mask_bbox, union_box
from .clicks import clicks_on, local_edit, nearest_box
from .constants import MARGIN, REFINE_STOP_DICE
from .decoding import SliceDecoder
from .state import SliceOut

__all__ = ["click_decoder", "model_click"]

_DECODERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def click_decoder(pred) -> SliceDecoder | None:
    """``click_model``'s decoder (loaded once per predictor; None: the predictor's own);
    :class:`OptionError` when its image encoder differs from the predictor's."""
    name = pred.options.click_model
    if name is None or name == pred.model_name:
        return None
    dec = _DECODERS.get(pred)
    if dec is None:
        loaded = load_model(name, device=str(pred.loaded.device))
        a, b = loaded.model.image_encoder.state_dict(), pred.loaded.model.image_encoder.state_dict()
        if a.keys() != b.keys() or not all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a):
            raise OptionError(f"click_model={name}: its image encoder differs from {pred.model_name}'s, "
                              "so it cannot decode that model's embeddings")
        dec = _DECODERS[pred] = SliceDecoder(loaded, pred.encoder.transform, pred.timings)
    return dec


def _dense(pred, st, so: SliceOut | None, emb) -> torch.Tensor | None:
    """A slice's result as the dense prompt: its low-res logits, else its mask as logits."""
    if so is None or not so.mask.any():
        return None
    if so.logits is not None:
        return so.logits
    m = so.mask if st.crop is None else so.mask[st.crop[1]:st.crop[3] + 1, st.crop[0]:st.crop[2] + 1]
    return mask_logits(m, pred.encoder.transform(st.res), emb.shape[-2:])


def _decode(pred, st, geo, z: int, box, clicks, dense) -> SliceOut:
    emb = pred.view_embeddings(st, geo, [z])[z]
    pts = [(x, y) for x, y, _ in clicks] or None
    labels = [1 if p else 0 for _, _, p in clicks] or None
    box = clip_box(np.asarray(box), geo.hw)
    dec = click_decoder(pred)
    if dec is None:
        return pred.decode_slice(geo, z, st.view, emb, box, pts, labels, dense)
    return dec.decode(geo, st.view, emb, box, pts, labels, dense)


def model_click(pred, st, geo: PlaneGeometry, p, k: int) -> list[int]:
    """Refinement click ``p`` (voxel point, already in ``st.prompts``) on slice ``k``; returns the
    slices changed, ``k`` first."""
    _, fx, fy = geo.to_plane(p.ijk)
    x, y = int(round(fx)), int(round(fy))
    cur = st.slices.get(k)
    has = cur is not None and cur.mask.any()
    if not has and not p.positive:
        st.slices.setdefault(k, SliceOut(np.zeros(geo.hw, bool), None, None))
        return []
    clicks = clicks_on(st.prompts.points, geo, k)
    box = (cur.box if cur.box is not None else mask_bbox(cur.mask)) if has else nearest_box(st.slices, k)
    m = MARGIN
    for cx, cy, pos in clicks:
        if pos:
            cb = np.array([cx - m, cy - m, cx + m, cy + m])
            box = cb if box is None else union_box(np.asarray(box), cb)
    emb = pred.view_embeddings(st, geo, [k])[k]
    out = _decode(pred, st, geo, k, box, clicks, _dense(pred, st, cur, emb))
    if bool(out.mask[y, x]) != p.positive:  # not honoured: the smallest edit that is
        old = cur.mask if has else np.zeros(geo.hw, bool)
        new = local_edit(old, [(x, y, p.positive)])
        st.slices[k] = SliceOut(new, None, mask_bbox(new), cur.score if has else 0.0)
        return [k]
    st.slices[k] = out
    if p.positive:
        st.srange = (min(st.srange[0], k), max(st.srange[1], k))
    changed = [k]
    clicked = {int(round(geo.to_plane(q.ijk)[0])) for q in st.prompts.points}
    for step in (+1, -1):
        prev, z = out, k + step
        while 0 <= z < geo.n_slices and z not in clicked:
            old = st.slices.get(z)
            if old is None or not old.mask.any() or prev.logits is None:
                break
            new = _decode(pred, st, geo, z, old.box if old.box is not None else mask_bbox(old.mask), [], prev.logits)
            if not new.mask.any() or dice2d(new.mask, old.mask) >= REFINE_STOP_DICE:
                break
            st.slices[z] = new
            changed.append(z)
            prev, z = new, z + step
    return changed
