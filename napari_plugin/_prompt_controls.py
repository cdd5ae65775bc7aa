"""Prompt handlers of the widget (GUI thread): boxes, slice marks, Segment, clicks.

A mixin of :class:`~._controls.Controls`. Prompts belong to an object: each object keeps
its own box and clicks in the :class:`~sam_med.session.Session`, and the prompt layers
show the selected object's only, in its colour (``_display.show_prompts``).

* A rectangle drawn in the "sam-med box" layer becomes the selected object's box at once
  (``Session.set_key_slice_box`` / ``set_box`` with ``run=False``: one undo step); when
  that object is already segmented the widget asks first. A box outside the scan is
  refused with the CLI's message.
* "Segment" runs the selected object's own prompts (``Session.stream`` in a worker).
* A point added in the "sam-med clicks" layer refines the selected object.
* When a result comes back, the hand edits (brush / eraser) of the object are laid over it
  (``_edits.EditLedger``), so a later click never drops a painted correction.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import _layers as L
from ._edits import PaintRefused, stroke_masks
from ._workers import refine_job, segment_job


def _same_box(a, b) -> bool:
    return a.box == b.box and a.key_box == b.key_box


class PromptControls:
    """Box, marks, Segment and click handlers (uses the Controls' state and helpers)."""

    # ---------------------------------------------------------------- slice range
    def current_slice(self) -> int:
        """Index of the displayed slice along the volume's slice axis."""
        return L.current_slice(self.viewer.dims.point, self.volume)

    def on_mark_a(self) -> None:
        if self.scan_session() is not None:
            self.mark_a = self.current_slice()
            self.show_marks()

    def on_mark_b(self) -> None:
        if self.scan_session() is not None:
            self.mark_b = self.current_slice()
            self.show_marks()

    def show_marks(self) -> None:
        a = "-" if self.mark_a is None else self.mark_a
        b = "-" if self.mark_b is None else self.mark_b
        self.ui.marks_label.setText(f"first slice {a}, last slice {b}")
        if self.mark_a is not None and self.mark_b is not None:
            self.ui.use_marks_chk.setChecked(True)

    def _marks(self):
        if self.ui.use_marks_chk.isChecked() and self.mark_a is not None and self.mark_b is not None:
            return self.mark_a, self.mark_b
        return None

    def box_prompt(self, vertices):
        """A drawn rectangle (layer data, (4, 3)) → the selected options' box prompt: a
        :class:`~sam_med.prompts.KeySliceBox` (default) or a tight 3D :class:`Box`. Raises
        :class:`~sam_med.errors.PromptError` (the CLI's check) for a box outside the scan."""
        from sam_med.prompts import make_box

        verts = L.data_to_voxel(vertices, self.shapes_layer.affine.affine_matrix, self.volume)
        zr = self._marks()
        if not self.ui.tight_chk.isChecked():
            return L.rectangle_to_key_box(verts, zr, self.ui.half_spin.value(), self.volume)
        axis = self.volume.slice_axis
        if zr is None:
            k = int(np.rint(verts[:, axis].mean()))
            zr = L.slice_range(k, self.ui.half_spin.value(), self.volume.shape[axis])
        return make_box(L.rectangle_to_box(verts, zr, self.volume, axis), self.volume.shape)

    # ---------------------------------------------------------------- box drawn
    def on_box_drawn(self, event=None) -> None:
        """A rectangle was added to the box layer: it becomes the selected object's box."""
        from sam_med.errors import SamMedError
        from sam_med.prompts import Box

        if event is not None and getattr(event, "action", None) != "added":
            return
        if self.session is None or self.shapes_layer is None or len(self.shapes_layer.data) == 0:
            return
        if self.busy:
            self.set_status("busy: box ignored (wait or press Cancel)")
            self.show_prompts()
            return
        vertices = np.asarray(self.shapes_layer.data[-1])
        if self.obj() is None:
            self.on_add_object()
        obj = self.obj()
        try:
            prompt = self.box_prompt(vertices)
        except SamMedError as exc:
            self.last_error = exc
            self.set_status(f"box refused: {self.one_line(exc)}")
            self.show_prompts()
            return
        if obj.locked:
            self.set_status(f"{obj.name!r} is locked: unlock it to change its box")
            self.show_prompts()
            return
        if obj.mask is not None and obj.mask.any() and not self.confirm(
                f"Replace the box of {obj.name!r}? It is segmented; press Segment afterwards "
                "to segment it from the new box (Undo brings the old one back)."):
            self.set_status(f"kept the box of {obj.name!r}")
            self.show_prompts()
            return
        if isinstance(prompt, Box):
            self.session.set_box(obj.id, prompt, run=False)
        else:
            self.session.set_key_slice_box(obj.id, prompt, run=False)
        self.sync()
        lo, hi = self.box_slices(self.obj())
        self.set_status(f"box of {obj.name!r} set on slices {lo}-{hi}: press Segment (S)")

    def box_slices(self, obj) -> tuple[int, int] | tuple[None, None]:
        """The inclusive slice range of ``obj``'s box, or (None, None)."""
        p = obj.prompts if obj is not None else None
        if p is None:
            return None, None
        if p.key_box is not None:
            return tuple(int(z) for z in p.key_box.range)
        if p.box is not None:
            lo, hi = p.box.int_bounds()
            axis = self.volume.slice_axis
            return int(lo[axis]), int(hi[axis])
        return None, None

    # ---------------------------------------------------------------- segment
    def on_segment(self) -> None:
        """Button "Segment": the selected object's own prompts → its mask, in a worker."""
        s = self.scan_session()
        if s is None:
            return
        obj = self.obj()
        if obj is None or obj.prompts.is_empty():
            self.set_status("draw a box (sam-med box layer) or click on the object first")
            return
        if obj.locked:
            self.set_status(f"{obj.name!r} is locked: unlock it to segment it again")
            return
        self.before = obj
        self.run(segment_job, self.predictors, self.model_key(), s, obj.id, None,
                 on_done=self.on_segmented, what="Segment")

    # ---------------------------------------------------------------- clicks
    def on_points_changed(self, event) -> None:
        """A point was added in the clicks layer → refine the selected object (worker)."""
        if getattr(event, "action", None) != "added":
            return
        if self.busy or self.session is None:
            self.set_status("busy: click ignored" if self.busy else "Prepare first")
            self.show_prompts()
            return
        if self.obj() is None:
            self.on_add_object()
        obj = self.obj()
        if obj.locked:
            self.set_status(f"{obj.name!r} is locked; unlock it to refine")
            self.show_prompts()
            return
        data = self.points_layer.data
        idx = [i for i in sorted(getattr(event, "data_indices", ()) or []) if 0 <= i < len(data)]
        ijk = L.data_to_voxel(data[idx or [len(data) - 1]], self.points_layer.affine.affine_matrix, self.volume)
        self.before = obj
        self.run(refine_job, self.predictors, self.model_key(), self.session, obj.id, ijk,
                 self.ui.positive_chk.isChecked(), on_done=self.on_segmented, what="Refine")

    def on_segmented(self, obj) -> None:
        """A Segment / click result is in the Session: lay the object's hand edits over it."""
        before, self.before = getattr(self, "before", None), None
        if obj is not None and before is not None and obj.mask is not None and _same_box(before.prompts, obj.prompts):
            edits = self.ledger.get(before.mask)
            if edits:
                mask = edits.apply(obj.mask)
                # the committed step (prompts + prediction) keeps the hand edits: the same undo
                # step, the prediction's state stays for the next click's refinement
                obj = self.session.set_mask(obj.id, mask, amend=True)
                self.ledger.record(mask, edits)
        if obj is not None and obj.result is not None:
            self.last_info = dataclasses.asdict(obj.result.info)
        self.sync()
        ml = L.volume_ml(obj.mask if obj is not None else None, self.volume)
        self.set_status(f"{obj.name}: {ml:.1f} mL ({self.elapsed():.1f} s)")

    # ---------------------------------------------------------------- brush / eraser
    def on_labels_paint_event(self, event=None) -> None:
        """The Labels layer's ``paint`` event: napari emits it while recording the stroke,
        before the last voxels are written, so the edit is read on the next event-loop turn."""
        from qtpy.QtCore import QTimer

        QTimer.singleShot(0, self.on_labels_painted)

    def on_labels_painted(self, event=None) -> None:
        """A brush / eraser / fill stroke on the Labels layer → ``Session.set_mask`` of each
        object it touched (one undo step each); the hand edits are remembered so later
        clicks keep them."""
        if self.session is None or self.shown is None or self.closed:
            return
        try:
            masks = stroke_masks(np.asarray(self.labels_layer.data), self.shown, self.session, self.visible_ids())
        except PaintRefused as exc:
            self.set_status(f"paint undone: {self.one_line(exc)}")
            self.show_labels()
            return
        for oid, (mask, add, remove) in masks.items():
            edits = self.ledger.get(self.session.objects[oid].mask).merged(add, remove)
            new = self.session.set_mask(oid, mask)
            self.ledger.record(new.mask, edits)
        if masks:
            names = ", ".join(self.session.objects[o].name for o in masks)
            self.sync()
            self.set_status(f"hand edit of {names} kept in the session (Undo: Ctrl+Z)")
