"""The refinement model: a second decoder, on the same embeddings, for the clicked slice.

With the ``refine_model`` option (a model name, e.g. a decoder fine-tune such as
``lite_medsam_clicks3d``), a click under ``click_rule="edit"`` is answered by that model's
prompt encoder + mask decoder: the slice's box (on a slice the mask has not reached, for a
positive click, the nearest segmented slice's box) + every click on the slice as point prompts, decoded on the embedding the predictor already has (the
refinement model must share the predictor's image encoder, which is checked once). The
result is kept when it honours the new click; otherwise the disk edit is used, as without
the option (on a slice not reached: the model's seeding). With ``refine_carry`` N > 0 the
click is carried to up to N neighbouring slices each side (:func:`refine_carry`); with
``refine_mask_prompt`` the slice's current mask is also given as the dense prompt
(:func:`mask_logits`, as the model was trained with ``prompts.click_mask_input``). Boxes are inclusive XYXY plane pixels, clicks ``(x, y, positive)``.
"""

from __future__ import annotations

import weakref

import numpy as np
import torch

from ..base import OptionError
from ..planes import mask_bbox
from .clicks import clicks_on, nearest_box
from .decoding import SliceDecoder
from .state import SliceOut

__all__ = ["refine_decoder", "refine_slice", "refine_carry", "mask_logits"]

_DECODERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _same_encoder(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def mask_logits(mask: np.ndarray, pre, emb_hw, value: float = 4.0) -> torch.Tensor:
    """A bool ``(H, W)`` mask of a view's crop as a dense prompt ``(1, 1, 4h, 4w)`` for an
    ``h x w`` embedding: resized as the image (``pre``: the view's preprocessing, longest side
    to its S, padded bottom/right with background), +``value`` inside, -``value`` outside."""
    from ...transforms import longest_side_size, resize_area

    s = int(pre.image_size)
    h, w = longest_side_size(tuple(int(v) for v in mask.shape), s)
    grid = np.zeros((s, s), dtype=np.float32)
    grid[:h, :w] = resize_area(np.asarray(mask, dtype=np.float64), (h, w), False) > 0.5
    t = torch.from_numpy(grid)[None, None]
    size = (4 * int(emb_hw[0]), 4 * int(emb_hw[1]))
    if tuple(t.shape[-2:]) != size:
        t = torch.nn.functional.interpolate(t, size=size, mode="nearest")
    return (t * 2.0 - 1.0) * value


def refine_decoder(pred) -> SliceDecoder:
    """The :class:`SliceDecoder` of ``pred.options.refine_model`` (loaded once per predictor).
    Raises :class:`OptionError` when that model's image encoder differs from the predictor's."""
    dec = _DECODERS.get(pred)
    if dec is None:
        from ...models import load_model

        name = pred.options.refine_model
        loaded = load_model(name, device=str(pred.loaded.device))
        if not _same_encoder(loaded.model.image_encoder, pred.loaded.model.image_encoder):
            raise OptionError(f"refine_model={name}: its image encoder differs from {pred.model_name}'s, "
                              "so it cannot decode that model's embeddings")
        dec = SliceDecoder(loaded, pred.encoder.transform, pred.timings)
        _DECODERS[pred] = dec
    return dec


def refine_slice(pred, st, geo, k: int, cur: SliceOut | None, clicks=None) -> SliceOut | None:
    """Slice ``k`` (its current result ``cur``; None or empty: not reached, then the nearest
    segmented slice's box, positive clicks only) re-decoded by the refinement model from the
    box and all clicks on it (``clicks``: these ``(x, y, positive)`` instead); None when there
    is no box, the newest click is outside the view or the decode does not honour it."""
    clicks = clicks_on(st.prompts.points, geo, k) if clicks is None else list(clicks)
    h, w = geo.hw
    x0, y0, x1, y1 = (0, 0, w - 1, h - 1) if st.crop is None else st.crop
    x, y, pos = clicks[-1]
    has = cur is not None and cur.box is not None and cur.mask.any()
    box = cur.box if has else (nearest_box(st.slices, k) if pos else None)
    if not (x0 <= x <= x1 and y0 <= y <= y1) or box is None:
        return None
    clicks = [c for c in clicks if x0 <= c[0] <= x1 and y0 <= c[1] <= y1]
    box = np.clip(np.asarray(box, dtype=float), [x0, y0, x0, y0], [x1, y1, x1, y1])
    emb = pred.view_embeddings(st, geo, [k])[k]
    dense = None
    if pred.options.refine_mask_prompt:  # the slice's current mask as the dense prompt
        m = cur.mask if cur is not None else np.zeros(geo.hw, bool)
        dense = mask_logits(m[y0:y1 + 1, x0:x1 + 1], pred.encoder.transform(st.res), emb.shape[-2:])
    out = refine_decoder(pred).decode(geo, st.view, emb, box, [c[:2] for c in clicks],
                                      [1 if c[2] else 0 for c in clicks], mask_input=dense)
    if bool(out.mask[y, x]) != pos or not out.mask.any():
        return None
    return SliceOut(out.mask, None, mask_bbox(out.mask), cur.score if cur is not None else 0.0)


def refine_carry(pred, st, geo, k: int, x: int, y: int, positive: bool, change: np.ndarray) -> list[int]:
    """Carry a refinement click at plane ``(x, y)`` of slice ``k`` (whose mask changed by
    ``change``, ``(H, W)`` bool) to up to ``refine_carry`` slices each side: each neighbour is
    re-decoded by the refinement model from its box + its own clicks + the click at the same
    pixel, while that pixel is still wrong there (outside the mask for a positive click,
    inside for a negative one), the decode honours it, and its change overlaps the previous
    slice's change (dilated 2 px) and is at most ``carry_growth`` x it; a slice with clicks of
    its own stops the carry. Returns the slices changed, in order."""
    from scipy import ndimage

    n = int(pred.options.refine_carry)
    own = {int(round(geo.to_plane(q.ijk)[0])) for q in st.prompts.points}
    done: list[int] = []
    for step in (+1, -1):
        prev = change
        for z in range(k + step, k + step * (n + 1), step):
            cur = st.slices.get(z)
            if not 0 <= z < geo.n_slices or z in own or not prev.any():
                break
            mask = cur.mask if cur is not None else np.zeros(geo.hw, bool)
            if bool(mask[y, x]) == positive:
                break
            got = refine_slice(pred, st, geo, z, cur, clicks_on(st.prompts.points, geo, z) + [(x, y, positive)])
            if got is None:
                break
            delta = got.mask ^ mask
            if not (delta & ndimage.binary_dilation(prev, np.ones((3, 3), bool), 2)).any() or \
                    delta.sum() > pred.options.carry_growth * prev.sum() + 4:
                break
            st.slices[z] = got
            st.srange = (min(st.srange[0], z), max(st.srange[1], z))
            done.append(z)
            prev = delta
    return done
