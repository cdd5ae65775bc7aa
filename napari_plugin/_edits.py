"""Brush / eraser edits of the Labels layer as Session mask edits (no Qt, no napari import).

napari paints into the Labels layer's array in place. The widget keeps a copy of the
label map it last showed (``shown``); after each stroke (the layer's ``paint`` event)
:func:`stroke_masks` compares the layer with it and gives each touched object's new
mask: voxels painted with an object's label join that object and leave the other
(shown) objects; erased voxels leave every shown object. The widget applies them with
:meth:`Session.set_mask` (one undo step per touched object), so a painted correction
is in the session: undoable, saved, written by "Save labels".

Kept by later clicks: :class:`EditLedger` remembers, for the mask array an edit
produced (masks are immutable in the Session, so undo/redo bring the same arrays back),
the voxels the user added and removed by hand. When a click or Segment re-predicts the
object, :meth:`EditLedger.apply` lays those voxels over the new prediction.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np


class PaintRefused(ValueError):
    """A stroke that cannot become a mask edit (a locked object, an unknown label)."""


@dataclass(frozen=True)
class Edits:
    """Hand edits of one object: flat voxel indices added and removed."""

    added: np.ndarray
    removed: np.ndarray

    @staticmethod
    def none() -> "Edits":
        return Edits(np.zeros(0, np.int64), np.zeros(0, np.int64))

    def merged(self, add: np.ndarray, remove: np.ndarray) -> "Edits":
        """These edits followed by a stroke adding ``add`` and removing ``remove`` (flat indices)."""
        added = np.setdiff1d(np.union1d(self.added, add), remove)
        removed = np.setdiff1d(np.union1d(self.removed, remove), add)
        return Edits(added, removed)

    def apply(self, mask: np.ndarray) -> np.ndarray:
        """``mask`` with the added voxels set and the removed ones cleared (a new array)."""
        out = np.array(mask, dtype=bool, copy=True)
        flat = out.reshape(-1)
        flat[self.added] = True
        flat[self.removed] = False
        return out

    def __bool__(self) -> bool:
        return bool(self.added.size or self.removed.size)


class EditLedger:
    """``mask array → Edits`` for masks that carry hand edits (weak: forgets dropped masks)."""

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[weakref.ref, Edits]] = {}

    def get(self, mask: np.ndarray | None) -> Edits:
        if mask is None:
            return Edits.none()
        hit = self._by_id.get(id(mask))
        if hit is None or hit[0]() is not mask:
            return Edits.none()
        return hit[1]

    def record(self, mask: np.ndarray, edits: Edits) -> None:
        key = id(mask)
        self._by_id[key] = (weakref.ref(mask, lambda _r, k=key: self._by_id.pop(k, None)), edits)


def stroke_masks(layer_data: np.ndarray, shown: np.ndarray, session, visible_ids) -> dict[int, tuple]:
    """``{object id: (new mask, added flat indices, removed flat indices)}`` for the objects a
    stroke changed: ``layer_data`` is the Labels layer after the stroke, ``shown`` the label
    map the widget showed before it (of ``visible_ids``). Raises :class:`PaintRefused` for a
    label that is no object or a stroke touching a locked object."""
    data = np.asarray(layer_data)
    changed = np.flatnonzero(data.reshape(-1) != shown.reshape(-1))
    if changed.size == 0:
        return {}
    new = data.reshape(-1)[changed]
    unknown = sorted(set(np.unique(new).tolist()) - {0} - set(session.objects))
    if unknown:
        raise PaintRefused(f"label {unknown[0]} is no object: select an object (its label is the brush's) "
                           "before painting")
    out: dict[int, tuple] = {}
    for oid in visible_ids:
        obj = session.objects[oid]
        add = changed[new == oid]
        # voxels painted with another label, or erased, leave this object where it has them
        others = changed[new != oid]
        if obj.mask is not None and others.size:
            remove = others[obj.mask.reshape(-1)[others]]
        else:
            remove = np.zeros(0, np.int64)
        if obj.mask is not None and add.size:
            add = add[~obj.mask.reshape(-1)[add]]
        if not add.size and not remove.size:
            continue
        if obj.locked:
            raise PaintRefused(f"{obj.name!r} is locked: unlock it to paint")
        mask = np.zeros(shown.shape, bool) if obj.mask is None else obj.mask.copy()
        flat = mask.reshape(-1)
        flat[add] = True
        flat[remove] = False
        out[oid] = (mask, add, remove)
    return out
