"""Interactive segmentation state shared by the napari plugin, the CLI and scripts.

A :class:`Session` holds one :class:`~sam_med.volume.Volume`, a predictor and a
list of objects. Each object has prompts (a 3D box and/or clicks, in voxel
coordinates) and a boolean mask on the volume's grid. Every change of prompts
or masks is one undoable step.

Predictors implement :class:`~sam_med.predictors.base.VolumePredictor` (the contract
lives in :mod:`sam_med.predictors.base`; re-exported here): given the volume, an object's
prompts and the object's previous result they return a new
:class:`PredictionResult`. They may keep private state in
``PredictionResult.state`` (e.g. per-slice logits) to re-run only what a new
click changes.

Masks are treated as immutable: a new prediction creates a new array, so undo
snapshots share arrays instead of copying them.

Overlap rule when objects are combined into one label map
(:meth:`Session.label_map`): ``"last"`` (later objects win; default, like
painting), ``"first"`` (earlier objects win), or ``"locked-first"`` (locked
objects win over unlocked ones, then ``"last"``).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PromptError, SamMedError
from ..predictors.base import PredictionResult, ProgressFn, VolumePredictor  # noqa: F401 (re-exported: the contract lives in predictors.base)
from ..predictors.streaming import stream_prediction
from ..prompts import Box, KeySliceBox, ObjectPrompts, Point, make_box, make_key_slice_box, make_point
from ..volume import Volume
from .objects import OVERLAP_RULES, PALETTE, SegObject
from .store import load_session, save_session, session_record

class Session:
    """Objects, prompts and masks for one volume, with multi-level undo/redo."""

    def __init__(
        self,
        volume: Volume,
        predictor: VolumePredictor | None = None,
        *,
        overlap: str = "last",
        max_undo: int = 100,
    ) -> None:
        if overlap not in OVERLAP_RULES:
            raise SamMedError(f"overlap rule must be one of {OVERLAP_RULES}, got {overlap!r}")
        self.volume = volume
        self.predictor = predictor
        self.overlap = overlap
        self.max_undo = max_undo
        self.objects: dict[int, SegObject] = {}
        self._undo: list[dict[int, SegObject]] = []
        self._redo: list[dict[int, SegObject]] = []

    # ------------------------------------------------------------ objects
    def add_object(
        self, name: str | None = None, id: int | None = None, color: tuple | None = None
    ) -> SegObject:
        if id is None:
            id = max(self.objects, default=0) + 1
        id = int(id)
        if not 1 <= id <= 65535:
            raise SamMedError(f"object id must be in 1..65535, got {id}")
        if id in self.objects:
            raise SamMedError(f"object id {id} already exists ({self.objects[id].name!r})")
        self._push_undo()
        obj = SegObject(
            id=id,
            name=name or f"object {id}",
            color=tuple(color) if color is not None else PALETTE[(id - 1) % len(PALETTE)],
        )
        self.objects[id] = obj
        return obj

    def get(self, id: int) -> SegObject:
        try:
            return self.objects[int(id)]
        except KeyError:
            raise SamMedError(f"no object with id {id}; objects: {sorted(self.objects)}") from None

    def remove_object(self, id: int) -> None:
        self.get(id)
        self._push_undo()
        del self.objects[int(id)]

    def rename(self, id: int, name: str) -> None:
        self._edit(id, name=str(name))

    def set_color(self, id: int, color: tuple) -> None:
        self._edit(id, color=tuple(float(c) for c in color))

    def set_locked(self, id: int, locked: bool = True) -> None:
        self._edit(id, locked=bool(locked))

    def _edit(self, id: int, **changes) -> None:
        obj = self.get(id)
        self._push_undo()
        self.objects[obj.id] = dataclasses.replace(obj, prompts=obj.prompts.copy(), **changes)

    # ------------------------------------------------------------ prompts
    def _check_editable(self, obj: SegObject) -> None:
        if obj.locked:
            raise SamMedError(f"object {obj.id} ({obj.name!r}) is locked; unlock it to change it")

    def set_box(self, id: int, box: Box | list | tuple | None, *, run: bool = True,
                progress: ProgressFn | None = None) -> SegObject:
        """Set (or clear with None) the object's 3D box, in voxel coordinates."""
        obj = self.get(id)
        self._check_editable(obj)
        if box is not None and not isinstance(box, Box):
            box = make_box(box, self.volume.shape)
        prompts = obj.prompts.copy()
        prompts.box = box
        if box is not None:
            prompts.key_box = None  # a tight 3D box replaces a key-slice box
        return self._update(obj, prompts, run, progress)

    def set_key_slice_box(self, id: int, key_box: KeySliceBox | None, *, run: bool = True,
                          progress: ProgressFn | None = None) -> SegObject:
        """Set (or clear with None) the object's key-slice box: a 2D rectangle on one slice
        plus a slice range (what a user draws on the slice they look at). It replaces a
        tight 3D box; see :class:`~sam_med.prompts.KeySliceBox`."""
        obj = self.get(id)
        self._check_editable(obj)
        if key_box is not None:
            key_box = make_key_slice_box(key_box.axis, key_box.slice, key_box.range, key_box.rect,
                                         self.volume.shape)
        prompts = obj.prompts.copy()
        prompts.key_box = key_box
        if key_box is not None:
            prompts.box = None
        return self._update(obj, prompts, run, progress)

    def add_point(self, id: int, ijk, positive: bool = True, *, run: bool = True,
                  progress: ProgressFn | None = None) -> SegObject:
        """Add a click at voxel (i, j, k). Re-runs the predictor (refinement) unless run=False."""
        obj = self.get(id)
        self._check_editable(obj)
        point = ijk if isinstance(ijk, Point) else make_point(ijk, positive, self.volume.shape)
        prompts = obj.prompts.copy()
        prompts.points.append(point)
        return self._update(obj, prompts, run, progress)

    def set_prompts(self, id: int, prompts: ObjectPrompts, *, run: bool = True,
                    progress: ProgressFn | None = None) -> SegObject:
        obj = self.get(id)
        self._check_editable(obj)
        return self._update(obj, prompts.copy(), run, progress)

    def clear(self, id: int) -> SegObject:
        """Remove the object's prompts and mask (one undo step)."""
        obj = self.get(id)
        self._check_editable(obj)
        self._push_undo()
        new = dataclasses.replace(obj, prompts=ObjectPrompts(), mask=None, result=None)
        self.objects[obj.id] = new
        return new

    def set_mask(self, id: int, mask: np.ndarray, *, amend: bool = False) -> SegObject:
        """Replace an object's mask directly (a brush or eraser edit, an imported segmentation).
        When the predictor can adopt it (``adopt_mask``), the object's result follows the edit, so
        the next click refines the edited mask instead of re-running the prompts. ``amend``: part
        of the last undo step (e.g. edits laid over the result that step committed), not a new one."""
        obj = self.get(id)
        self._check_editable(obj)
        mask = np.asarray(mask).astype(bool)
        if mask.shape != self.volume.shape:
            raise SamMedError(f"mask shape {mask.shape} does not match the volume {self.volume.shape}")
        adopt = getattr(self.predictor, "adopt_mask", None)
        result = adopt(obj.result, mask) if callable(adopt) and obj.result is not None else None
        if not amend or not self._undo:
            self._push_undo()
        new = dataclasses.replace(obj, prompts=obj.prompts.copy(), mask=mask, result=result)
        self.objects[obj.id] = new
        return new

    def _update(self, obj: SegObject, prompts: ObjectPrompts, run: bool,
                progress: ProgressFn | None) -> SegObject:
        mask, result = obj.mask, obj.result
        if run and not prompts.is_empty():
            result = self._predict(prompts, obj.result, progress)
            mask = result.mask
        elif prompts.is_empty():
            mask, result = None, None
        self._push_undo()
        new = dataclasses.replace(obj, prompts=prompts, mask=mask, result=result)
        self.objects[obj.id] = new
        return new

    def run(self, id: int, progress: ProgressFn | None = None) -> SegObject:
        """(Re)compute an object's mask from its prompts, from scratch."""
        obj = self.get(id)
        if obj.prompts.is_empty():
            raise PromptError(f"object {obj.id} ({obj.name!r}) has no prompts to segment from")
        result = self._predict(obj.prompts, None, progress)
        self._push_undo()
        new = dataclasses.replace(obj, prompts=obj.prompts.copy(), mask=result.mask, result=result)
        self.objects[obj.id] = new
        return new

    def stream(self, id: int, prompts: ObjectPrompts | None = None, *, progress: ProgressFn | None = None):
        """Segment object ``id`` from ``prompts`` (default: its own), yielding each slice's mask
        as it is decoded, the prompted slice first: ``(axis, k, plane)`` as in
        :mod:`sam_med.predictors.streaming` (``(None, None, mask3d)`` once for a predictor
        without the streaming API). When the generator ends, the object's new prompts and
        result are committed as one undo step, and the object is returned (``StopIteration.value``,
        ``yield from``); closed early (cancel), nothing is committed."""
        obj = self.get(id)
        self._check_editable(obj)
        prompts = (obj.prompts if prompts is None else prompts).copy()
        if prompts.is_empty():
            raise PromptError(f"object {obj.id} ({obj.name!r}) has no prompts to segment from")
        if self.predictor is None:
            raise SamMedError("this session has no predictor; create it with one to segment")
        result = yield from stream_prediction(self.predictor, self.volume, prompts, obj.result, progress)
        if result.mask.shape != self.volume.shape:
            raise SamMedError(f"predictor returned a mask of shape {result.mask.shape}, volume is {self.volume.shape}")
        self._push_undo()
        new = dataclasses.replace(obj, prompts=prompts, mask=result.mask.astype(bool, copy=False), result=result)
        self.objects[obj.id] = new
        return new

    def _predict(self, prompts: ObjectPrompts, previous: PredictionResult | None,
                 progress: ProgressFn | None) -> PredictionResult:
        if self.predictor is None:
            raise SamMedError("this session has no predictor; create it with one to segment")
        result = self.predictor.predict(self.volume, prompts, previous, progress)
        if result.mask.shape != self.volume.shape:
            raise SamMedError(
                f"predictor returned a mask of shape {result.mask.shape}, volume is {self.volume.shape}"
            )
        result.mask = result.mask.astype(bool, copy=False)
        return result

    # ------------------------------------------------------------ undo/redo
    def _snapshot(self) -> dict[int, SegObject]:
        return {k: v.snapshot() for k, v in self.objects.items()}

    def _push_undo(self) -> None:
        self._undo.append(self._snapshot())
        if len(self._undo) > self.max_undo:
            del self._undo[0]
        self._redo.clear()

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self) -> bool:
        """Go back one step; returns False when there is nothing to undo."""
        if not self._undo:
            return False
        self._redo.append(self._snapshot())
        self.objects = self._undo.pop()
        return True

    def redo(self) -> bool:
        if not self._redo:
            return False
        self._undo.append(self._snapshot())
        self.objects = self._redo.pop()
        return True

    # ------------------------------------------------------------ results
    def label_map(self, dtype=None, ids=None) -> np.ndarray:
        """All object masks (or those of ``ids``) combined into one label volume (value =
        object id) under the overlap rule."""
        chosen = None if ids is None else {self.get(i).id for i in ids}
        top = max(self.objects if chosen is None else chosen, default=0)
        dtype = dtype or (np.uint8 if top < 256 else np.uint16)
        out = np.zeros(self.volume.shape, dtype=dtype)
        objs = [o for o in self.objects.values() if o.mask is not None and (chosen is None or o.id in chosen)]
        if self.overlap == "first":
            objs = objs[::-1]  # paint in reverse so earlier objects end on top
        elif self.overlap == "locked-first":
            objs = [o for o in objs if not o.locked] + [o for o in objs if o.locked]
        for o in objs:
            out[o.mask] = o.id
        return out

    def mask(self, id: int) -> np.ndarray:
        obj = self.get(id)
        return obj.mask if obj.mask is not None else np.zeros(self.volume.shape, dtype=bool)

    # ------------------------------------------------------------ persistence
    def to_json(self) -> dict[str, Any]:
        """The session's record: source, geometry, model, versions, objects with their prompts."""
        return session_record(self)

    def save(self, path: str | os.PathLike) -> Path:
        """Save prompts, object list, masks, model id and versions to one ``.npz`` file
        (checked against the scan's files first; written atomically)."""
        return save_session(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike, volume: Volume,
             predictor: VolumePredictor | None = None) -> "Session":
        """A session saved by :meth:`save`, for ``volume`` (refused for another scan)."""
        return load_session(cls, path, volume, predictor)

