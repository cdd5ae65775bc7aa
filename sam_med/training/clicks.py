"""Per-slice click protocol: Dice after a box, then after each simulated corrective click.

The protocol of issue #7 (and of ``benchmarks/finetune_clicks.py``), on 2D samples as
:func:`~sam_med.training.sources.extract_source_slices` cuts them (the exact model-input
region, with its cached frozen-encoder embedding):

1. the tight box of the label on the slice -> decode -> Dice (click 0, box only);
2. click ``i``: at the deepest pixel of the largest connected component of the error
   (prediction XOR label, on the source slice), positive when it lies in the label; the
   prompt encoder gets the box + **all** clicks so far as SAM point prompts (optionally
   + the previous low-res logits as the dense prompt) -> decode -> Dice.

No candidates, no box edits: this measures what the decoder itself does with clicks (the
slice-wise predictor's refinement wraps more logic around it).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..masks import dice as dice_2d  # the one Dice (re-exported under its old name)
from .prompts import corrective_click_2d, mask_box

__all__ = ["click_curve", "click_curves", "dice_2d"]


@torch.no_grad()
def click_curve(item: dict, loaded, model: torch.nn.Module | None = None, n_clicks: int = 5,
                mask_input: bool = False) -> dict:
    """Dice after the box and after clicks 1..n on one sample (see the module docstring).

    ``loaded``: the base :class:`~sam_med.models.LoadedModel` (preprocessing, box/point
    mapping, postprocessing); ``model``: the network to decode with (default
    ``loaded.model``; a fine-tuned copy shares the frozen encoder, so ``item["embedding"]``
    serves both). Returns ``{"dice": [d0, ..., dn], "clicks": [(x, y, positive), ...]}``."""
    model = model if model is not None else loaded.model
    model.eval()
    img = np.asarray(item["image"], dtype=np.float32)[0]
    ref = np.asarray(item["label"])[0] > 0
    hw = ref.shape
    _x, meta = loaded.preprocess(img)
    emb = item["embedding"]
    if emb.ndim == 3:
        emb = emb[None]
    dev = next(model.parameters()).device
    emb = emb.to(dev)
    box = torch.as_tensor(loaded.box_to_model(mask_box(ref), hw), dtype=torch.float32, device=dev).reshape(1, 4)
    clicks: list[tuple[int, int, bool]] = []
    dices: list[float] = []
    low = None
    for i in range(n_clicks + 1):
        kw = {}
        if clicks:
            pts = loaded.points_to_model(np.array([c[:2] for c in clicks], dtype=float), hw)
            kw = {"points": torch.as_tensor(np.asarray(pts), dtype=torch.float32, device=dev).reshape(1, -1, 2),
                  "point_labels": torch.tensor([[int(c[2]) for c in clicks]], device=dev)}
        if mask_input and low is not None:
            kw["mask_input"] = low
        low, _iou = model.decode(emb, boxes=box, **kw)
        low = low[:, :1].float()
        pred = loaded.postprocess(low, meta)[0, 0].cpu().numpy() > 0
        dices.append(dice_2d(pred, ref))
        if i == n_clicks:
            break
        c = corrective_click_2d(pred, ref, center=True)
        if c is None:  # perfect: later clicks change nothing
            dices.extend([dices[-1]] * (n_clicks - i))
            break
        clicks.append(c)
    return {"dice": dices, "clicks": clicks}


def click_curves(items: Sequence[dict], loaded, model: torch.nn.Module | None = None, n_clicks: int = 5,
                 mask_input: bool = False) -> np.ndarray:
    """``(len(items), n_clicks + 1)`` Dice array of :func:`click_curve` over ``items``."""
    return np.array([click_curve(it, loaded, model, n_clicks, mask_input)["dice"] for it in items], dtype=float)
