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
* **Box**: draw a rectangle in the "sam-med box" Shapes layer on the axial slice
  you look at; its slice range is that slice ± "± slices", or the two slices marked
  with "Mark A"/"Mark B" when "use marks" is ticked. By default it is a *key-slice
  box* (``KeySliceBox``): the rectangle bounds that slice only, the other slices of
  the range follow the propagation (organs are wider off their middle slice).
  "tight 3D box" makes it the old 3D box (rectangle × range, every slice clipped
  to the rectangle). "Segment" runs it; the Labels layer shows each slice as it is
  decoded, the key slice first (``Session.stream``). A box outside the scan is
  refused with the CLI's message, never clipped.
* **Encoding**: slices are encoded on demand: the slider's neighbourhood ("encode
  ±" slices each side) in the background, then "ahead" more while idle, within the
  embedding cache's memory budget (``_prefetch``). "Prepare" loads the model and
  starts that; "Prepare all" encodes every slice up front.
* **Clicks**: points added to the "sam-med clicks" Points layer refine the
  current object at once (``Session.add_point``); the "positive" box (key
  ``T`` on the Points layer toggles it) decides foreground/background.
* **Undo/redo**: Ctrl+Z / Ctrl+Shift+Z (viewer and plugin layers) step the Session.
* **Accept**: stores every object with a mask (mask, prompts, click history, scan path +
  checksum) as one entry of the accepted-results folder chosen with "Dataset…" (default
  ``$SAM_MED_DATASET``), which ``sam-med evaluate`` / ``finetune --from`` read.

While a worker runs, the controls are locked, the prompt layers ignore clicks,
the progress bar follows the worker's yielded reports, and Cancel is enabled.
Errors show as one line in the status label (and a napari notification).
"""

from __future__ import annotations

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
        self.status = QLabel("Open a scan, then Prepare (or draw a box).")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        lay.addStretch(1)
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

    # ---------------------------------------------------------------- layout
    def _scan_box(self) -> QGroupBox:
        from qtpy.QtCore import Qt

        from ._models import model_entries

        box = QGroupBox("Scan and model")
        form = QFormLayout(box)
        self.image_combo = QComboBox()
        form.addRow("Image", self.image_combo)
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
        self.prepare_btn = _button("Prepare", "Load the model; the slices near the one you look at "
                                   "are then encoded in the background as you go")
        self.prepare_all_btn = _button("Prepare all", "Encode every slice of the scan now (cancellable)")
        self.cancel_btn = _button("Cancel")
        form.addRow(_row(self.prepare_btn, self.prepare_all_btn, self.cancel_btn))
        self.window_spin = QSpinBox()
        self.window_spin.setRange(0, 2000)
        self.window_spin.setValue(8)
        self.window_spin.setToolTip("slices encoded on each side of the displayed one")
        self.ahead_spin = QSpinBox()
        self.ahead_spin.setRange(0, 4000)
        self.ahead_spin.setValue(64)
        self.ahead_spin.setToolTip("while idle, this many more slices in the scrolling direction "
                                   "(then behind), within the embedding cache's memory budget")
        form.addRow("Encode ±", _row(self.window_spin, QLabel("ahead"), self.ahead_spin))
        self.encode_label = QLabel("encoded: -")
        form.addRow(self.encode_label)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        form.addRow(self.progress)
        return box

    def _objects_box(self) -> QGroupBox:
        from sam_med.session import OVERLAP_RULES

        box = QGroupBox("Objects")
        v = QVBoxLayout(box)
        self.objects_list = QListWidget()
        v.addWidget(self.objects_list)
        self.add_btn = _button("Add")
        self.delete_btn = _button("Delete")
        self.color_btn = _button("Colour…")
        self.lock_chk = QCheckBox("Lock")
        v.addLayout(_row(self.add_btn, self.delete_btn, self.color_btn, self.lock_chk))
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("name")
        self.rename_btn = _button("Rename")
        v.addLayout(_row(self.name_edit, self.rename_btn))
        self.overlap_combo = QComboBox()
        self.overlap_combo.addItems(list(OVERLAP_RULES))
        self.overlap_combo.setToolTip("last: later objects win; first: earlier win; "
                                      "locked-first: locked objects win, then last")
        v.addLayout(_row(QLabel("Overlap"), self.overlap_combo))
        return box

    def _prompts_box(self) -> QGroupBox:
        box = QGroupBox("Prompts")
        form = QFormLayout(box)
        self.positive_chk = QCheckBox("positive clicks (T toggles)")
        self.positive_chk.setChecked(True)
        form.addRow(self.positive_chk)
        self.half_spin = QSpinBox()
        self.half_spin.setRange(0, 2000)
        self.half_spin.setValue(10)
        form.addRow("Box slices ±", self.half_spin)
        self.mark_a_btn = _button("Mark A")
        self.mark_b_btn = _button("Mark B")
        self.use_marks_chk = QCheckBox("use marks")
        form.addRow(_row(self.mark_a_btn, self.mark_b_btn, self.use_marks_chk))
        self.tight_chk = QCheckBox("tight 3D box")
        self.tight_chk.setToolTip("off (default): the rectangle bounds its own slice only (key-slice box); "
                                  "on: every slice of the range is clipped to it")
        form.addRow(self.tight_chk)
        self.marks_label = QLabel("z-range: slice ± N")
        form.addRow(self.marks_label)
        self.segment_btn = _button("Segment / propagate")
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
        self.prepare_btn.clicked.connect(c.on_prepare)
        self.prepare_all_btn.clicked.connect(c.on_prepare_all)
        self.cancel_btn.clicked.connect(c.on_cancel)
        self.objects_list.currentRowChanged.connect(c.on_object_selected)
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
