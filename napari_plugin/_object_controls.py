"""Object handlers of the widget (``on_add_object`` ... ``on_object_selected``), GUI thread.

A mixin of :class:`~._controls.Controls` (with the Session → layers display, ``sync``): it uses the Controls' ``session``,
``current_id``, ``ui``, :meth:`~._controls.Controls.ensure_session`,
:meth:`~._controls.Controls.obj`, ``sync``, ``show_labels`` and ``set_status``.
Each handler is one undoable Session step, then the Session is shown again.
"""

from __future__ import annotations

from . import _display as D


class ObjectControls:
    """Add, delete, rename, colour, lock, overlap rule and selection of objects (Accept lives in
    :class:`~._file_controls.FileControls`: it stores results)."""

    def on_add_object(self, name: str | None = None) -> int | None:
        s = self.scan_session()
        if s is None:
            return None
        obj = s.add_object(name or None)
        self.current_id = obj.id
        self.sync()
        return obj.id

    def on_delete_object(self) -> None:
        """Delete the selected object: one undo step, and the status line says how to get it back."""
        obj = self.obj()
        if obj is None:
            return
        self.session.remove_object(obj.id)
        self.hidden.discard(obj.id)
        self.current_id = max(self.session.objects, default=None)
        self.sync()
        self.set_status(f"deleted {obj.name!r} ({self.volume_text(obj)}): Undo (Ctrl+Z) brings it back")

    def volume_text(self, obj) -> str:
        from ._layers import volume_ml

        return f"{volume_ml(obj.mask, self.volume):.1f} mL" if obj.mask is not None else "not segmented"

    def on_next_object(self) -> None:
        """Shortcut Shift+N: select the next object (the first after the last)."""
        if self.session is None or not self.session.objects:
            return
        ids = list(self.session.objects)
        i = ids.index(self.current_id) + 1 if self.current_id in ids else 0
        self.current_id = ids[i % len(ids)]
        self.sync()

    def on_visibility(self, oid: int, visible: bool) -> None:
        """The object's check box in the list: show or hide its mask and box (display only:
        hidden objects stay in the session, in saved labels and in accepted results)."""
        if self.session is None or oid not in self.session.objects:
            return
        (self.hidden.discard if visible else self.hidden.add)(int(oid))
        self.sync()

    def on_rename(self, name: str | None = None) -> None:
        if self.obj() is None:
            return
        name = name if name is not None else self.ui.name_edit.text().strip()
        if name:
            self.session.rename(self.current_id, name)
            self.sync()

    def on_color(self, color=None) -> None:
        obj = self.obj()
        if obj is None:
            return
        if color is None:
            from qtpy.QtGui import QColor
            from qtpy.QtWidgets import QColorDialog

            c = QColorDialog.getColor(QColor.fromRgbF(*obj.color), self.ui, "Object colour")
            if not c.isValid():
                return
            color = (c.redF(), c.greenF(), c.blueF())
        self.session.set_color(self.current_id, tuple(color)[:3])
        self.sync()

    def on_lock(self, locked: bool) -> None:
        obj = self.obj()
        if obj is not None and obj.locked != bool(locked):
            self.session.set_locked(self.current_id, bool(locked))
            self.sync()

    def on_overlap(self, rule: str) -> None:
        if self.session is not None:
            self.session.overlap = rule
            self.show_labels()

    def on_object_selected(self, row: int) -> None:
        if self.session is None or row < 0:
            return
        ids = list(self.session.objects)
        if row < len(ids) and ids[row] != self.current_id:
            self.current_id = ids[row]
            self.sync()

    # ---------------------------------------------------------------- display
    def visible_ids(self) -> list[int]:
        return [o for o in self.session.objects if o not in self.hidden] if self.session is not None else []

    def sync(self) -> None:
        """Session → widgets and layers (objects list, prompts, labels, enabled controls)."""
        if self.session is None or self.closed:
            return
        D.show_objects(self.ui, self.session, self.current_id, self.hidden, self.volume)
        self.show_prompts()
        self.show_labels()
        self.refresh_enabled()

    def show_prompts(self) -> None:
        if self.session is None:
            return
        D.show_prompts(self, self.obj(), [self.session.objects[i] for i in self.visible_ids()])

    def show_labels(self) -> None:
        self.shown = D.show_labels(self.labels_layer, self.session, self.volume, self.ui.model_combo.currentText(),
                                   self.visible_ids(), self.current_id)
