"""The refinement model: a second decoder, on the same embeddings, for the clicked slice.

With the ``refine_model`` option (a model name, e.g. a decoder fine-tune such as
``lite_medsam_clicks3d``), a click under ``click_rule="edit"`` is answered by that model's
prompt encoder + mask decoder: the slice's box (on a slice the mask has not reached, for a
positive click, the nearest segmented slice's box) + every click on the slice as point prompts, decoded on the embedding the predictor already has (the
refinement model must share the predictor's image encoder, which is checked once). The
result is kept when it honours the new click; otherwise the disk edit is used, as without
the option (on a slice not reached: the model's seeding). Boxes are inclusive XYXY plane pixels, clicks ``(x, y, positive)``.
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

__all__ = ["refine_decoder", "refine_slice"]

_DECODERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _same_encoder(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


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


def refine_slice(pred, st, geo, k: int, cur: SliceOut | None) -> SliceOut | None:
    """Slice ``k`` (its current result ``cur``; None or empty: not reached, then the nearest
    segmented slice's box, positive clicks only) re-decoded by the refinement model from the
    box and all clicks on it; None when there is no box, the newest click is outside the view
    or the decode does not honour it."""
    clicks = clicks_on(st.prompts.points, geo, k)
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
    out = refine_decoder(pred).decode(geo, st.view, emb, box, [c[:2] for c in clicks],
                                      [1 if c[2] else 0 for c in clicks])
    if bool(out.mask[y, x]) != pos or not out.mask.any():
        return None
    return SliceOut(out.mask, None, mask_bbox(out.mask), cur.score if cur is not None else 0.0)
