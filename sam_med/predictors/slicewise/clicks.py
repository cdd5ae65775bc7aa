"""Clicks on one slice: what a box-trained model understands of them.

A click acts on its slice through the box: a positive click grows the slice's box to
include it, a negative click moves the nearest box side past it. A click on a slice that
has a mask makes the smallest disk edit of that mask that honours it (no decoder call:
with the box-trained LiteMedSAM the edit won 20 of 20 clicks of the CT-lesion protocol
against decoded candidates); where the edit cannot honour it, candidates are decoded
(reshaped box, box + clicks as points, multimask) and the one that honours most clicks
with the least change wins.

Clicks are ``(x, y, positive)`` plane pixels of the slice. ``decode(box, points=None,
labels=None, mask_input=None, multimask=False)`` decodes the slice in the object's view
(see :class:`~.decoding.SliceDecoder`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import ndimage

from ...prompts import Point
from ..planes import PlaneGeometry, clip_box, component_at, dice2d, union_box
from .state import SliceOut

__all__ = ["clicks_on", "slice_with_clicks", "local_edit", "shrink_past", "nearest_box", "clicked_part"]

Click = tuple[int, int, bool]


def clicks_on(points: list[Point], geo: PlaneGeometry, k: int) -> list[Click]:
    """The clicks among ``points`` (voxel) that lie on slice ``k``, as plane ``(x, y, positive)``."""
    out = []
    for p in points:
        s, x, y = geo.to_plane(p.ijk)
        if int(round(s)) == k:
            out.append((int(round(x)), int(round(y)), p.positive))
    return out


def slice_with_clicks(decode: Callable, hw, base_box, mask_input, clicks: list[Click], *, margin: int,
                      previous: np.ndarray | None = None) -> SliceOut:
    """Decode the slice from its base box, honouring the clicks on it.

    Clicks reshape the box (positive: grow to include it; negative: move the nearest
    side past it). Then a few candidates are decoded (box; box + clicks as point
    prompts, single and multimask) and the one that satisfies most clicks wins; among
    those a non-empty one, then the smallest change from ``previous`` (the slice's mask
    before this click: a correction is local), else the model's predicted IoU. A
    negative click inside a separate blob of a candidate removes that blob."""
    m = max(margin, 2)
    box = None if base_box is None else np.asarray(base_box).copy()
    for x, y, pos in clicks:
        if pos:
            pb = np.array([x - m, y - m, x + m, y + m])
            box = pb if box is None else union_box(box, pb)
    if box is None:
        return SliceOut(np.zeros(hw, bool), None, None)
    box = clip_box(box, hw)
    if not clicks:
        return decode(box, mask_input=mask_input)
    grown = box
    if previous is None and base_box is not None:
        # a run over prompts that already hold clicks (a re-run, a CLI call with --point):
        # the same two steps as interactively — the slice from its box, then the edit
        # the clicks ask for — so a re-run reproduces the interactive result, for one
        # decoder call instead of the candidates'
        first = decode(clip_box(np.asarray(base_box), hw), mask_input=mask_input)
        previous = first.mask if first.mask.any() else None
    if previous is not None and previous.any():
        edit = local_edit(previous, clicks)
        if all(bool(edit[y, x]) == pos for x, y, pos in clicks):
            return SliceOut(edit, None, grown, 0.0)
    for x, y, pos in clicks:
        if not pos and box is not None and box[0] <= x <= box[2] and box[1] <= y <= box[3]:
            box = shrink_past(box, x, y)
    pts = [(x, y) for x, y, _ in clicks]
    labels = [1 if pos else 0 for _, _, pos in clicks]
    candidates = []
    if box is not None:
        candidates.append(decode(box, mask_input=mask_input))
        candidates.append(decode(box, points=pts, labels=labels, mask_input=mask_input))
    candidates.append(decode(grown, points=pts, labels=labels, mask_input=mask_input))
    candidates.extend(decode(grown, points=pts, labels=labels, multimask=True))
    if previous is not None and previous.any():
        candidates.append(SliceOut(local_edit(previous, clicks), None, grown, 0.0))
    for c in candidates:
        for x, y, pos in clicks:
            if not pos and c.mask[y, x]:
                comp = component_at(c.mask, x, y)
                if comp is not None and comp.sum() < c.mask.sum():
                    c.mask = c.mask & ~comp

    def rank(c: SliceOut):
        agree = dice2d(c.mask, previous) if previous is not None and previous.any() else c.score
        return (sum(bool(c.mask[y, x]) == pos for x, y, pos in clicks), bool(c.mask.any()), agree)

    return candidates[max(range(len(candidates)), key=lambda i: rank(candidates[i]))]


def clicked_part(m: np.ndarray, clicks: list[Click]) -> np.ndarray | None:
    """The components of ``m`` under the positive clicks, minus blobs under negative ones."""
    for x, y, p in clicks:
        if not p and m[y, x]:
            c = component_at(m, x, y)
            m = m & ~c if c is not None else m
    parts = [component_at(m, x, y) for x, y, p in clicks if p]
    parts = [c for c in parts if c is not None]
    return np.logical_or.reduce(parts) if parts else None


def edit_radius(mask: np.ndarray, x: int, y: int, positive: bool) -> float | None:
    """The edit rule's disk radius for a click at plane pixel ``(x, y)`` of ``mask``: the
    distance to the nearest pixel of the other kind, at least 1.5; None when the pixel
    already agrees with the click."""
    if bool(mask[y, x]) == positive:
        return None
    dist = ndimage.distance_transform_edt(~mask if positive else mask)
    return max(float(dist[y, x]), 1.5)


def local_edit(mask: np.ndarray, clicks: list[Click]) -> np.ndarray:
    """The smallest edit of ``mask`` that honours the clicks: a disk at each unsatisfied
    click, reaching from the click to the mask's edge (:func:`edit_radius`), is added
    (positive) or cut (negative)."""
    out = mask.copy()
    yy, xx = np.ogrid[: mask.shape[0], : mask.shape[1]]
    for x, y, pos in clicks:
        r = edit_radius(out, x, y, pos)
        if r is None:
            continue
        disk = (xx - x) ** 2 + (yy - y) ** 2 <= r * r
        out = (out | disk) if pos else (out & ~disk)
    return out


def shrink_past(box: np.ndarray, x: int, y: int) -> np.ndarray | None:
    """Move the box side nearest to (x, y) just past it, so the click lies outside
    (None when the box vanishes)."""
    d = [x - box[0], y - box[1], box[2] - x, box[3] - y]
    side = int(np.argmin(d))
    b = box.copy()
    if side == 0:
        b[0] = x + 1
    elif side == 1:
        b[1] = y + 1
    elif side == 2:
        b[2] = x - 1
    else:
        b[3] = y - 1
    if b[2] < b[0] or b[3] < b[1]:
        return None
    return b


def nearest_box(slices: dict[int, SliceOut], k: int) -> np.ndarray | None:
    """The box of the segmented slice nearest to ``k`` (None when none is segmented)."""
    best = None
    for z, so in slices.items():
        if so.mask.any() and so.box is not None and (best is None or abs(z - k) < abs(best[0] - k)):
            best = (z, so.box)
    return None if best is None else best[1]
