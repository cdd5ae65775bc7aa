"""Handlers of the "Results" buttons, on the GUI thread: accept into a dataset folder, save
labels, save / open a session.

:class:`FileControls` works on the state of a :class:`~._controls.Controls`
(``c``: its Session, scan volume, labels layer and status line). Each handler
takes an optional ``path``; without one it asks with a file dialog. A file
that cannot be written or read is reported as one line in the status label.

"Accept" stores every object that has a mask (final mask, prompts, click history, the scan's
path + checksum) as one entry of the accepted-results folder (``Session.accept``, in a
worker; ``docs/dataengine.md``). The folder is chosen with "Dataset…"; its default is
``$SAM_MED_DATASET``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._controls import one_line
from ._workers import stream


def accept_job(session, folder: str, token):
    """Worker job: ``accept_session(session, folder)`` off the GUI thread; returns the entry."""
    from sam_med.dataengine import accept_session

    return (yield from stream(lambda _progress: accept_session(session, folder), token))


class FileControls:
    """Accept / save / open handlers for the widget whose handlers are ``c``."""

    def __init__(self, c) -> None:
        self.c = c
        #: the accepted-results folder of "Accept" (default $SAM_MED_DATASET)
        self.dataset_dir: str | None = None
        self.last_entry = None
        self.set_dataset(os.environ.get("SAM_MED_DATASET") or None)

    def set_dataset(self, folder: str | None) -> bool:
        """Use ``folder`` for "Accept" after checking an entry can be added there (an
        accepted-results folder, an empty or a new one); a bad one is one status line."""
        from sam_med.dataengine import check_folder
        from sam_med.errors import SamMedError

        if folder:
            try:
                folder = str(check_folder(folder))
            except SamMedError as exc:
                self.c.last_error = exc
                self.c.set_status(f"dataset folder refused: {one_line(exc)}")
                return False
        self.dataset_dir = folder or None
        self.c.ui.dataset_label.setText(f"dataset: {self.dataset_dir or '- (choose one)'}")
        return True

    def on_choose_dataset(self, folder: str | None = None) -> str | None:
        """Button "Dataset…": the folder accepted results go to."""
        if folder is None:
            from qtpy.QtWidgets import QFileDialog

            folder = QFileDialog.getExistingDirectory(self.c.ui, "Accepted-results folder",
                                                      self.dataset_dir or str(Path.home()))
        if folder and self.set_dataset(folder):
            self.c.set_status(f"accepted results go to {self.dataset_dir}")
        return self.dataset_dir

    def on_accept(self, folder: str | None = None):
        """Button "Accept": store the objects with a mask as one entry of the dataset folder
        (in a worker); the status line then names the entry's folder. Returns the worker."""
        c = self.c
        if c.session is None:
            return None
        if folder is not None and not self.set_dataset(folder):
            return None
        if self.dataset_dir is None and not self.on_choose_dataset():
            c.set_status("Accept: choose a dataset folder first (Dataset…, or set SAM_MED_DATASET)")
            return None
        if c.session.predictor is None and c.predictor is not None:
            c.session.predictor = c.predictor
        return c.run(accept_job, c.session, self.dataset_dir, on_done=self.on_accepted, what="Accept")

    def on_accepted(self, entry) -> None:
        self.last_entry = entry
        names = ", ".join(o["name"] for o in entry.objects)
        self.c.set_status(f"accepted {len(entry.objects)} object(s) ({names}) to {entry.dir}")

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
        try:  # every object, hidden ones too: hiding is display only
            out = write(str(path), c.session.label_map(), state)[0]
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
        c.hidden, c.ledger = set(), type(c.ledger)()
        c.current_id = max(s.objects, default=None)
        c.sync()
        c.set_status(f"opened session {path} ({len(s.objects)} objects"
                     + (f", model {model}" if model else "") + "); Prepare to refine")

    def _ask_path(self, mode: str, title: str, default: str, filters: str) -> str:
        from qtpy.QtWidgets import QFileDialog

        ask = QFileDialog.getSaveFileName if mode == "save" else QFileDialog.getOpenFileName
        path, _ = ask(self.c.ui, title, str(Path.home() / default), filters)
        return path
