"""Dock widget layout: napari layers ⇄ :class:`sam_med.session.Session`.

This module only builds the widget: child widgets are public attributes, and
each one's signal is wired to a public handler of :class:`~._controls.Controls`
(``widget.controls.on_prepare``, ``on_segment``, ``on_undo`` ...; the save/open
buttons of ``widget.files``), so tests
drive the same code paths as a user. What the handlers do lives in
``_controls`` (GUI thread), the heavy work in ``_workers`` (no Qt), the
layer ⇄ Session conversions in ``_layers`` (no Qt) and the Session → layers
display in ``_display``.

Prompting
---------
* **Objects**: each object keeps its own box and clicks (in the Session); selecting it in
  the list shows its prompts only, in its colour; its check box shows / hides it (display
  only). Volumes are in mL (the scan's voxel size); "confidence" is the model's predicted
  IoU, with a warning line when it is low.
* **Box**: draw a rectangle in the "sam-med box" layer (active after a scan opens) on the
  slice you look at: it becomes the selected object's box at once (the widget asks before
  replacing the box of a segmented object). It covers that slice ± "Box covers ± slices",
  or the first/last slices set with the two buttons. By default the rectangle bounds its
  own slice only (a key-slice box, the other slices follow the propagation); "Clip every
  slice to the rectangle" makes it a tight 3D box. Its range is drawn thin on the other
  slices ("sam-med box range"). "Segment" runs the selected object's own prompts; the
  Labels layer shows each slice as it is decoded. A box outside the scan is refused.
* **Encoding**: slices are encoded on demand around the displayed one in the background
  (``_prefetch``). "Load model" loads it; "Encode whole scan" encodes every slice up front.
* **Clicks**: points added to the "sam-med clicks" layer refine the selected object at
  once; "Clicks add to the object" (T / Shift+T) decides add (filled) or remove (cross).
* **Brush / eraser**: napari's paint tools on "sam-med labels" edit the object whose label
  they paint (the selected one); the edit is a Session step (undoable, saved) and later
  clicks keep it.
* **Undo/redo**: Ctrl+Z / Ctrl+Shift+Z step the Session. Shortcuts are listed in the widget.
* **Accept**: stores every object with a mask (mask, prompts, click history, scan path +
  checksum) as one entry of the accepted-results folder chosen with "Dataset…" (default
  ``$SAM_MED_DATASET``), which ``sam-med evaluate`` / ``finetune --from`` read.

While a worker runs, the controls are locked, the plugin's layers ignore edits, the
progress line shows slices done / total and the time left, and Cancel is enabled. Closing
the viewer cancels the workers and waits for them.
Errors show as one line in the status label (and a napari notification).
"""

from __future__ import annotations

from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ._controls import Controls
from ._file_controls import FileControls


def _row(*widgets) -> QHBoxLayout:
    row = QHBoxLayout()
    for w in widgets:
        row.addWidget(w)
    return row


SHORTCUTS = ("Shortcuts: Shift+S segment · Shift+N next object · T / Shift+T clicks add/remove · "
             "Shift+A accept · Ctrl+Z / Ctrl+Shift+Z undo/redo · R rectangle, P brush, E eraser "
             "(on the box / labels layer)")


class _CloseWatcher(QObject):
    """Sees the viewer's window close (before Qt tears it down) and stops the workers."""

    def __init__(self, controls) -> None:
        super().__init__()
        self.controls = controls

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.Close:
            self.controls.shutdown()
        return False


def _tip(widget, tip: str):
    widget.setToolTip(tip)
    return widget


def _button(text: str, tip: str | None = None) -> QPushButton:
    b = QPushButton(text)
    if tip:
        b.setToolTip(tip)
    return b


class SamMedWidget(QWidget):
    """Interactive 3D segmentation of the selected scan with a sam-med model."""

    def __init__(self, napari_viewer, parent=None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        lay = QVBoxLayout(self)
        lay.addWidget(self._scan_box())
        lay.addWidget(self._objects_box())
        lay.addWidget(self._prompts_box())
        lay.addWidget(self._results_box())
        self.warning_label = QLabel("")
        self.warning_label.setWordWrap(True)
        self.warning_label.setStyleSheet("color: #ff6b3d; font-weight: bold")
        self.warning_label.setVisible(False)
        lay.addWidget(self.warning_label)
        self.status = QLabel("Open a scan (File > Open Folder... for DICOM), then draw a box on the organ.")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.shortcuts_label = QLabel(SHORTCUTS)
        self.shortcuts_label.setWordWrap(True)
        lay.addWidget(self.shortcuts_label)
        lay.addStretch(1)
        self._watched = None
        #: widgets disabled while a worker runs (Cancel is the only control left)
        self.lockable = [
            self.image_combo, self.model_combo, self.device_combo, self.modality_combo, self.prepare_btn,
            self.prepare_all_btn, self.window_spin, self.ahead_spin, self.tight_chk,
            self.add_btn, self.delete_btn, self.color_btn, self.lock_chk, self.name_edit, self.rename_btn,
            self.overlap_combo, self.half_spin, self.mark_a_btn, self.mark_b_btn, self.use_marks_chk,
            self.segment_btn, self.undo_btn, self.redo_btn, self.accept_btn, self.dataset_btn, self.save_labels_btn,
            self.save_session_btn, self.load_session_btn, self.objects_list,
        ]
        #: widgets that need a current object
        self.object_controls = [self.delete_btn, self.color_btn, self.lock_chk, self.rename_btn,
                                self.accept_btn, self.segment_btn]
        self.controls = Controls(self)
        self.files = FileControls(self.controls)
        self._wire(self.controls, self.files)
        self.controls.start()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        """Once docked, watch the viewer's window: closing it stops the workers first."""
        super().showEvent(event)
        win = self.window()
        if win is not self and id(win) != self._watched:  # an id: holding the window would leak it
            self._watched = id(win)
            self._close_watcher = _CloseWatcher(self.controls)
            win.installEventFilter(self._close_watcher)

    # ---------------------------------------------------------------- layout
    def _scan_box(self) -> QGroupBox:
        from qtpy.QtCore import Qt

        from ._models import model_entries

        box = QGroupBox("Scan and model")
        form = QFormLayout(box)
        self.image_combo = _tip(QComboBox(), "The scan to segment; each scan keeps its own objects "
                                "when you switch")
        form.addRow("Scan", self.image_combo)
        self.model_combo = QComboBox()
        entries = model_entries()  # site models carry their validation summary as tooltip
        for i, m in enumerate(entries):
            self.model_combo.addItem(m.name)
            self.model_combo.setItemData(i, m.tooltip, Qt.ToolTipRole)
        models = [m.name for m in entries]
        if "lite_medsam" in models:
            self.model_combo.setCurrentText("lite_medsam")
        form.addRow("Model", self.model_combo)
        self.device_combo = QComboBox()
        self.device_combo.addItems(["cpu", "auto", "cuda"])
        form.addRow("Device", self.device_combo)
        self.modality_combo = QComboBox()
        self.modality_combo.addItems(["auto", "CT", "MR"])
        self.modality_combo.setToolTip("auto: the scan's modality, or CT when a file without one "
                                       "holds HU values (air <= -500)")
        form.addRow("Modality", self.modality_combo)
        self.prepare_btn = _button("Load model", "Load the model; the slices near the one you look at "
                                   "are then prepared (encoded) in the background as you go")
        self.prepare_all_btn = _button("Encode whole scan", "Prepare every slice of the scan now "
                                       "(slower first, then every box and click is fast; cancellable)")
        self.cancel_btn = _button("Cancel", "Stop the running step; nothing is half-applied")
        form.addRow(_row(self.prepare_btn, self.prepare_all_btn, self.cancel_btn))
        self.window_spin = QSpinBox()
        self.window_spin.setRange(0, 2000)
        self.window_spin.setValue(8)
        self.window_spin.setToolTip("slices prepared on each side of the displayed one")
        self.ahead_spin = QSpinBox()
        self.ahead_spin.setRange(0, 4000)
        self.ahead_spin.setValue(64)
        self.ahead_spin.setToolTip("while idle, this many more slices in the scrolling direction "
                                   "(then behind), within the memory budget")
        form.addRow("Prepare ± slices", _row(self.window_spin, QLabel("then, while idle"), self.ahead_spin))
        self.encode_label = QLabel("prepared slices: -")
        form.addRow(self.encode_label)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        form.addRow(self.progress)
        self.progress_label = QLabel("")
        self.progress_label.setWordWrap(True)
        form.addRow(self.progress_label)
        return box

    def _objects_box(self) -> QGroupBox:
        from sam_med.session import OVERLAP_RULES

        box = QGroupBox("Objects")
        v = QVBoxLayout(box)
        self.objects_list = QListWidget()
        v.addWidget(self.objects_list)
        self.objects_list.setToolTip("Select an object to see and edit its own box and clicks; "
                                     "untick it to hide it")
        self.add_btn = _button("New object", "Add an object (organ, lesion); draw its box next")
        self.delete_btn = _button("Delete", "Delete the selected object (Undo brings it back)")
        self.color_btn = _button("Colour…")
        self.lock_chk = _tip(QCheckBox("Lock"), "A locked object cannot be changed by boxes, clicks "
                             "or the brush")
        v.addLayout(_row(self.add_btn, self.delete_btn, self.color_btn, self.lock_chk))
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("name")
        self.rename_btn = _button("Rename")
        v.addLayout(_row(self.name_edit, self.rename_btn))
        self.overlap_combo = QComboBox()
        self.overlap_combo.addItems(list(OVERLAP_RULES))
        self.overlap_combo.setToolTip("Where two objects overlap, which one keeps the voxel: last: the "
                                      "newer object; first: the older one; locked-first: locked objects, "
                                      "then the newer")
        v.addLayout(_row(QLabel("Shared voxels go to"), self.overlap_combo))
        return box

    def _prompts_box(self) -> QGroupBox:
        box = QGroupBox("Prompts")
        form = QFormLayout(box)
        self.positive_chk = _tip(QCheckBox("Clicks add to the object (untick: clicks remove)"),
                                 "T (on the clicks layer) or Shift+T toggles; adding clicks are "
                                 "filled dots, removing clicks are crosses")
        self.positive_chk.setChecked(True)
        form.addRow(self.positive_chk)
        self.half_spin = QSpinBox()
        self.half_spin.setRange(0, 2000)
        self.half_spin.setValue(10)
        self.half_spin.setToolTip("A new box covers the slice you draw it on and this many slices "
                                  "above and below (drawn thin on those slices)")
        form.addRow("Box covers ± slices", self.half_spin)
        self.mark_a_btn = _button("First slice: here", "The displayed slice is the organ's first slice")
        self.mark_b_btn = _button("Last slice: here", "The displayed slice is the organ's last slice")
        self.use_marks_chk = _tip(QCheckBox("use them"), "A new box covers the first..last slices set "
                                  "here instead of ± slices")
        form.addRow(_row(self.mark_a_btn, self.mark_b_btn, self.use_marks_chk))
        self.tight_chk = QCheckBox("Clip every slice to the rectangle")
        self.tight_chk.setToolTip("off (default): the rectangle bounds the slice it is drawn on; the "
                                  "organ may be wider on the other slices. On: every slice stays inside it")
        form.addRow(self.tight_chk)
        self.marks_label = QLabel("first/last slice: not set")
        form.addRow(self.marks_label)
        self.segment_btn = _button("Segment (Shift+S)", "Segment the selected object from its own box "
                                   "and clicks, slice by slice")
        form.addRow(self.segment_btn)
        self.undo_btn = _button("Undo")
        self.redo_btn = _button("Redo")
        form.addRow(_row(self.undo_btn, self.redo_btn))
        return box

    def _results_box(self) -> QGroupBox:
        box = QGroupBox("Results")
        v = QVBoxLayout(box)
        self.accept_btn = _button("Accept", "Store every object's final mask, prompts, clicks and the scan "
                                  "reference in the dataset folder (training / evaluation data)")
        self.dataset_btn = _button("Dataset…", "Choose the accepted-results folder (default $SAM_MED_DATASET)")
        self.dataset_label = QLabel("dataset: -")
        self.dataset_label.setWordWrap(True)
        v.addLayout(_row(self.accept_btn, self.dataset_btn))
        v.addWidget(self.dataset_label)
        self.save_labels_btn = _button("Save labels…")
        v.addLayout(_row(self.save_labels_btn))
        self.save_session_btn = _button("Save session…")
        self.load_session_btn = _button("Open session…")
        v.addLayout(_row(self.save_session_btn, self.load_session_btn))
        return box

    # ---------------------------------------------------------------- signals → handlers
    def _wire(self, c: Controls, f: FileControls) -> None:
        from qtpy.QtCore import Qt

        self.prepare_btn.clicked.connect(c.on_prepare)
        self.prepare_all_btn.clicked.connect(c.on_prepare_all)
        self.cancel_btn.clicked.connect(c.on_cancel)
        self.objects_list.currentRowChanged.connect(c.on_object_selected)
        self.objects_list.itemChanged.connect(
            lambda item: c.on_visibility(item.data(Qt.ItemDataRole.UserRole),
                                         item.checkState() == Qt.CheckState.Checked))
        self.add_btn.clicked.connect(lambda: c.on_add_object())
        self.delete_btn.clicked.connect(c.on_delete_object)
        self.color_btn.clicked.connect(lambda: c.on_color())
        self.lock_chk.toggled.connect(c.on_lock)
        self.name_edit.returnPressed.connect(lambda: c.on_rename())
        self.rename_btn.clicked.connect(lambda: c.on_rename())
        self.overlap_combo.currentTextChanged.connect(c.on_overlap)
        self.positive_chk.toggled.connect(c.on_positive_toggled)
        self.mark_a_btn.clicked.connect(c.on_mark_a)
        self.mark_b_btn.clicked.connect(c.on_mark_b)
        self.segment_btn.clicked.connect(c.on_segment)
        self.undo_btn.clicked.connect(c.on_undo)
        self.redo_btn.clicked.connect(c.on_redo)
        self.accept_btn.clicked.connect(lambda: f.on_accept())
        self.dataset_btn.clicked.connect(lambda: f.on_choose_dataset())
        self.save_labels_btn.clicked.connect(lambda: f.on_save_labels())
        self.save_session_btn.clicked.connect(lambda: f.on_save_session())
        self.load_session_btn.clicked.connect(lambda: f.on_load_session())
