"""Training samples from the slice-wise predictor's own 3D errors under the CVPR 2025 click rule.

A data source with ``clicks: errors3d`` (see :mod:`.sources`) gives, for every object of
its cases:

1. the CVPR 2025 key-slice box of the object (the official rule of
   :func:`~sam_med.evaluation.cvpr25.cases.official_boxes`: a 2D box on the middle
   labelled slice along the volume's third axis + the labelled slice range; the jitter
   is seeded by ``case_id:label``), run through the slice-wise predictor;
2. ``click_rounds`` rounds of the challenge's click
   (:func:`~sam_med.evaluation.cvpr25.clicks.next_click`: the deepest voxel of the
   largest 26-connected 3D error component, seed 42), each applied to the predictor as a
   refinement of its previous result (``predict(..., previous=...)``, what
   ``Session.add_point`` does in the protocol), so every round starts from the masks the
   earlier rounds left;
3. per round, one 2D sample on the slice the click lands on and on up to ``neighbours``
   slices each side where the in-plane click position is still in the same 3D error
   component (the click projected there, labelled by the ground truth).

A sample is what the predictor's click decode sees on that slice, in the object's view
``(crop, res)``: ``image (1, H, W)`` float32 0..255 (the view's crop of the plane, the
model's intensity mapping), ``label (1, H, W)`` uint8 (ground truth), ``mask (1, H, W)``
uint8 (the predictor's mask on the slice before the click), ``box (4,)`` (the box the
predictor used on that slice, or on a slice the mask has not reached the nearest segmented
slice's box, positive clicks only; XYXY inclusive, crop pixels), ``clicks3d`` ``[(x, y,
positive), ...]`` (the clicks on that slice so far, the new one last, crop pixels),
``res`` (encoder input size, None = the model's S), ``embedding (256, h, w)`` (the
predictor's own cache entry: same namespace and key, so nothing is encoded twice), plus
the keys of :func:`~.sources.extract_source_slices` (``copy`` = ``"r<round>d<offset>"``).
Everything is deterministic: the predictor, the seeded box jitter and the seeded click.

:func:`errors3d_loss` is the training loss of such a sample (box + clicks as point
prompts, DiceCE on the crop); :func:`click_dice` measures a model on samples.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

__all__ = ["object_samples", "errors3d_source_slices", "decode_sample", "errors3d_loss", "click_dice",
           "refine_rule_dice", "edit_dice"]


def _key_box(ref: np.ndarray, box_id: str):
    """The official CVPR 2025 key-slice box of the bool (I, J, K) mask ``ref`` (axis 2)."""
    from ..evaluation.cvpr25.cases import official_boxes
    from ..io.challenge import parse_box

    gts = np.ascontiguousarray(ref.transpose(2, 1, 0)).astype(np.uint8)
    return parse_box(official_boxes(gts, box_id)[0], gts.shape, 1, box_id)


def _cut(pred, st, geo, z: int, clicks, ref: np.ndarray) -> dict | None:
    """The sample of slice ``z`` in the object's view (None: no box for it, or a click outside the view)."""
    from ..predictors.slicewise.clicks import nearest_box

    cur = st.slices.get(z)
    has = cur is not None and cur.box is not None and cur.mask.any()
    # a slice the mask has not reached: the nearest segmented slice's box (as the predictor's
    # refinement uses it there), for a positive click only
    box = cur.box if has else (nearest_box(st.slices, z) if clicks[-1][2] else None)
    if box is None:
        return None
    mask = cur.mask if has else np.zeros(geo.hw, bool)
    crop = st.crop
    h, w = geo.hw
    x0, y0, x1, y1 = (0, 0, w - 1, h - 1) if crop is None else crop
    if any(not (x0 <= x <= x1 and y0 <= y <= y1) for x, y, _ in clicks):
        return None  # a click outside the view: the decoder cannot see it
    box = np.clip(np.asarray(box, dtype=float), [x0, y0, x0, y0], [x1, y1, x1, y1]) - [x0, y0, x0, y0]
    emb = pred.view_embeddings(st, geo, [z])[z]
    win = (slice(y0, y1 + 1), slice(x0, x1 + 1))
    return {"image": np.asarray(pred.slice_image(geo, z, crop), dtype=np.float32)[None],
            "label": np.ascontiguousarray(geo.slice_of(ref, z)[win])[None].astype(np.uint8),
            "mask": np.ascontiguousarray(mask[win])[None].astype(np.uint8), "box": box,
            "clicks3d": [(int(x - x0), int(y - y0), bool(p)) for x, y, p in clicks],
            "res": st.res, "crop": crop, "embedding": emb}


def object_samples(pred, volume, ref: np.ndarray, box_id: str, rounds: int = 5,
                   neighbours: int = 1) -> list[dict]:
    """Samples of one object (see the module docstring): ``pred`` a
    :class:`~sam_med.predictors.slicewise.SliceWisePredictor`, ``volume`` its
    :class:`~sam_med.volume.Volume`, ``ref`` the object's bool mask (the volume's shape),
    ``box_id`` seeds the box jitter. Keys of each dict: the module docstring's, plus
    ``slice``, ``axis``, ``round`` (0-based), ``dz`` (offset from the clicked slice)."""
    from ..evaluation.cvpr25.clicks import largest_error_component, next_click
    from ..predictors.planes import PlaneGeometry
    from ..predictors.slicewise.clicks import clicks_on
    from ..prompts import ObjectPrompts, Point

    ref = np.asarray(ref, bool)
    gt = np.ascontiguousarray(ref.transpose(2, 1, 0))
    prompts = ObjectPrompts(key_box=_key_box(ref, box_id))
    res = pred.predict(volume, prompts)
    out: list[dict] = []
    offsets = [0] + [s * d for d in range(1, int(neighbours) + 1) for s in (1, -1)]
    for r in range(int(rounds)):
        pz = res.mask.transpose(2, 1, 0)
        click = next_click(pz, gt)
        if click is None:
            break
        comp = largest_error_component(pz, gt).transpose(2, 1, 0)
        z, y, x = click.zyx
        p = Point((float(x), float(y), float(z)), click.kind == "fg")
        st = res.state
        geo = PlaneGeometry(st.axis, volume.shape)
        k, fx, fy = geo.to_plane(p.ijk)
        k, px, py = int(round(k)), int(round(fx)), int(round(fy))
        for dz in offsets:
            zz = k + dz
            if not 0 <= zz < geo.n_slices or (dz and not geo.slice_of(comp, zz)[py, px]):
                continue
            positive = bool(geo.slice_of(ref, zz)[py, px])
            item = _cut(pred, st, geo, zz, clicks_on(st.prompts.points, geo, zz) + [(px, py, positive)], ref)
            if item is not None:
                item.update({"slice": zz, "axis": int(st.axis), "round": r, "dz": int(dz)})
                out.append(item)
        more = prompts.copy()
        more.points.append(p)
        res = pred.predict(volume, more, previous=res)
        prompts = more
    return out


def errors3d_source_slices(spec, cases, loaded, cache, predictor_options: dict | None = None,
                           log: Callable[[str], None] | None = None) -> list[dict]:
    """Samples of every object of the source ``spec`` (a :class:`~.sources.SourceSpec` with
    ``clicks == "errors3d"``; ``cases``: its :class:`~sam_med.evaluation.EvalCase` list), with
    the keys :func:`~.sources.extract_source_slices` gives."""
    from ..predictors.slicewise import SliceWisePredictor

    out: list[dict] = []
    enc0 = cache.encoded
    for case in cases:
        image, label = case.load()
        # one predictor per case, sharing the cache (it keys its bound volume by id(volume))
        pred = SliceWisePredictor(loaded=loaded, cache=cache, **dict(predictor_options or {}))
        for value, oname in case.objects(label):
            ref = np.asarray(label.array) == value
            if not ref.any():
                continue
            for it in object_samples(pred, image, ref, f"{case.case_id}:{int(value)}", spec.click_rounds,
                                     spec.neighbours):
                it.update({"source": spec.name, "case_id": case.case_id, "object": int(value), "name": oname,
                           "copy": f"r{it['round']}d{it['dz']}", "largest": False, "largest_acq": False,
                           "iso": (1.0, 1.0)})
                out.append(it)
    if log:
        log(f"[errors3d] {spec.name}: {len(out)} click samples, {cache.encoded - enc0} encoded")
    return out


def _transform(loaded, res):
    return loaded.preprocess if res is None or int(res) == int(loaded.image_size) else loaded.preprocess_at(int(res))


def decode_sample(model: torch.nn.Module, loaded, item: dict, device=None, clicks: bool = True,
                  mask_prompt: bool = False) -> torch.Tensor:
    """Logits ``(1, 1, H, W)`` on the sample's crop: ``model`` (a SAM-style network with
    ``decode``) on the sample's embedding with its box and (``clicks``) its clicks as point
    prompts (``mask_prompt``: + the predictor's mask as the dense prompt,
    :func:`~sam_med.masks.mask_logits`), mapped by the view's
    preprocessing exactly as the predictor's decoder does."""
    from ..predictors.image_predictor import slice_meta

    device = device or next(model.parameters()).device
    hw = tuple(int(v) for v in np.shape(item["label"])[-2:])
    pre = _transform(loaded, item.get("res"))
    emb = item["embedding"]
    emb = (emb if emb.ndim == 4 else emb[None]).to(device)
    box = torch.as_tensor(pre.box_to_model(np.asarray(item["box"], float), hw), dtype=torch.float32,
                          device=device).reshape(1, 4)
    kw = {}
    if clicks and item["clicks3d"]:
        pts = pre.points_to_model(np.array([c[:2] for c in item["clicks3d"]], dtype=float), hw)
        kw = {"points": torch.as_tensor(np.asarray(pts), dtype=torch.float32, device=device).reshape(1, -1, 2),
              "point_labels": torch.tensor([[int(c[2]) for c in item["clicks3d"]]], device=device)}
    if mask_prompt:
        from ..masks import mask_logits
        kw["mask_input"] = mask_logits(np.asarray(item["mask"])[0] > 0, pre, emb.shape[-2:]).to(device)
    low, _iou = model.decode(emb, boxes=box, **kw)
    return loaded.postprocess(low[:, :1].float(), slice_meta(hw, pre.image_size))


def errors3d_loss(trainer, idx: int) -> torch.Tensor:
    """The loss of sample ``idx`` of a :class:`~.trainer.Trainer` (``items``, ``model``, ``lm``,
    ``device``, ``loss_fn``, ``cfg``): DiceCE of the box + clicks decode (+ the mask as the
    dense prompt with ``prompts.click_mask_input``) against the ground truth."""
    item = trainer.items[idx]
    mp = bool(trainer.cfg["prompts"].get("click_mask_input"))
    logits = decode_sample(trainer.model, trainer.lm, item, trainer.device, mask_prompt=mp)
    target = torch.as_tensor(np.asarray(item["label"], dtype=np.float32))[None].to(trainer.device)
    return trainer.loss_fn(logits, target)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


@torch.no_grad()
def click_dice(model: torch.nn.Module, loaded, items: Sequence[dict], clicks: bool = True,
               mask_prompt: bool = False) -> np.ndarray:
    """2D Dice per sample of :func:`decode_sample` (thresholded at 0) against the label."""
    model.eval()
    return np.array([_dice(decode_sample(model, loaded, it, clicks=clicks, mask_prompt=mask_prompt)[0, 0].cpu().numpy() > 0,
                           np.asarray(it["label"])[0] > 0) for it in items], dtype=float)


@torch.no_grad()
def refine_rule_dice(model: torch.nn.Module, loaded, items: Sequence[dict],
                     mask_prompt: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(2D Dice per sample, whether the decode was kept) under the ``refine_model`` rule of
    the predictor: the click decode when it honours the newest click, else the disk edit."""
    from ..predictors.slicewise.clicks import local_edit

    model.eval()
    dice, kept = [], []
    for it in items:
        pred = decode_sample(model, loaded, it, mask_prompt=mask_prompt)[0, 0].cpu().numpy() > 0
        x, y, pos = it["clicks3d"][-1]
        ok = bool(pred[y, x]) == pos and pred.any()
        m = np.asarray(it["mask"])[0] > 0
        if not ok:
            pred = local_edit(m, [(x, y, pos)]) if m.any() else m
        dice.append(_dice(pred, np.asarray(it["label"])[0] > 0))
        kept.append(ok)
    return np.array(dice), np.array(kept)


def edit_dice(items: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(Dice of the predictor's mask before the click, Dice after the disk edit of the
    ``click_rule=edit`` rule, the default when these weights were trained) per sample: what the model has to beat."""
    from ..predictors.slicewise.clicks import local_edit

    before, after = [], []
    for it in items:
        m, g = np.asarray(it["mask"])[0] > 0, np.asarray(it["label"])[0] > 0
        before.append(_dice(m, g))
        after.append(_dice(local_edit(m, list(it["clicks3d"])), g))
    return np.array(before), np.array(after)
