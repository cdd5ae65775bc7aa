"""Handlers of the "Results" buttons, on the GUI thread: save labels, save / open a session.

:class:`FileControls` works on the state of a :class:`~._controls.Controls`
(``c``: its Session, scan volume, labels layer and status line). Each handler
takes an optional ``path``; without one it asks with a file dialog. A file
that cannot be written or read is reported as one line in the status label.
"""

from __future__ import annotations

from pathlib import Path

from ._controls import one_line


class FileControls:
    """Save / open handlers for the widget whose handlers are ``c``."""

    def __init__(self, c) -> None:
        self.c = c

    def on_save_labels(self, path: str | None = None) -> str | None:
        """Write the label map on the scan's grid (.nii.gz/.nrrd/.mha) or as DICOM SEG (.dcm)."""
        c = self.c
        if c.session is None:
            return None
        path = path or self._ask_path("save", "Save labels", "labels.nii.gz",
                                      "Label map (*.nii.gz *.nii *.nrrd *.mha);;DICOM SEG (*.dcm)")
        if not path:
            return None
        from . import _writer

        c.show_labels()
        state = {"metadata": c.labels_layer.metadata, "affine": c.volume.affine}
        write = _writer.write_dicom_seg if str(path).lower().endswith(".dcm") else _writer.write_labels
        try:
            out = write(str(path), c.labels_layer.data, state)[0]
        except Exception as exc:  # noqa: BLE001 - shown to the user; the library raises clear errors
            c.last_error = exc
            c.set_status(f"save failed: {one_line(exc)}")
            return None
        c.set_status(f"saved {out}")
        return out

    def on_save_session(self, path: str | None = None) -> str | None:
        """Write the Session (objects, prompts, masks, model) as ``.npz``."""
        c = self.c
        if c.session is None:
            return None
        path = path or self._ask_path("save", "Save session", "session.npz", "sam-med session (*.npz)")
        if not path:
            return None
        if c.session.predictor is None and c.predictor is not None:
            c.session.predictor = c.predictor
        out = str(c.session.save(path))
        c.set_status(f"session saved to {out}")
        return out

    def on_load_session(self, path: str | None = None) -> None:
        """Open a saved Session on the selected scan; its model becomes the widget's choice."""
        from sam_med.errors import SamMedError
        from sam_med.session import Session

        c = self.c
        path = path or self._ask_path("open", "Open session", "", "sam-med session (*.npz)")
        if not path:
            return
        c.ensure_session()
        try:
            s = Session.load(path, c.volume, c.predictor)
        except (SamMedError, OSError) as exc:
            c.last_error = exc
            c.set_status(f"open session failed: {one_line(exc)}")
            return
        model = (getattr(s, "saved_meta", {}) or {}).get("model")
        if model and c.ui.model_combo.findText(model) >= 0:
            c.ui.model_combo.setCurrentText(model)
        c.session = s
        c.current_id = max(s.objects, default=None)
        c.sync()
        c.set_status(f"opened session {path} ({len(s.objects)} objects"
                     + (f", model {model}" if model else "") + "); Prepare to refine")

    def _ask_path(self, mode: str, title: str, default: str, filters: str) -> str:
        from qtpy.QtWidgets import QFileDialog

        ask = QFileDialog.getSaveFileName if mode == "save" else QFileDialog.getOpenFileName
        path, _ = ask(self.c.ui, title, str(Path.home() / default), filters)
        return path
