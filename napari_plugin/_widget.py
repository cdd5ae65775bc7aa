"""Dock widget: napari layers ⇄ :class:`sam_med.session.Session`.

Thin by design: every mask decision is made by ``sam_med`` (Session + predictor);
this module only converts layers to prompts (``_layers``), runs the work in a
napari ``thread_worker`` and applies results to layers in ``_on_*`` handlers on
the GUI thread. While a worker runs, the controls are locked and the prompt
layers ignore new clicks. Child widgets are attributes, and each button calls a
public handler (``_on_prepare``, ``_on_segment``, ``_on_undo`` ...), so tests
drive the same code paths as a user.

Prompting
---------
* **Box**: draw a rectangle in the "sam-med box" Shapes layer on an axial slice;
  its slice range is the rectangle's slice ± "± slices", or the two slices marked
  with "Mark A"/"Mark B" when "use marks" is ticked. "Segment" runs the 3D box
  (slice-wise propagation for 2D models).
* **Clicks**: points added to the "sam-med clicks" Points layer refine the
  current object at once (``Session.add_point``); the "positive" box (key
  ``T`` on the Points layer toggles it) decides foreground/background.
* **Undo/redo**: Ctrl+Z / Ctrl+Shift+Z (viewer and plugin layers) step the Session.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QCheckBox,
    QColorDialog,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from . import _layers as L
from ._worker import Cancelled, ProgressBox

POS_COLOR = np.array([0.0, 0.9, 0.2, 1.0])
NEG_COLOR = np.array([1.0, 0.1, 0.1, 1.0])
BOX_LAYER = "sam-med box"
POINTS_LAYER = "sam-med clicks"
LABELS_LAYER = "sam-med labels"


def _default_predictor_factory(model: str, device: str, cache_dir: str | None, modality: str | None = None):
    """The predictor the CLI would build for ``sam-med segment --model M --device D [--modality]``."""
    from sam_med.predictors.factory import build_predictor, is_volumetric

    if is_volumetric(model):
        return build_predictor(model, device)
    opts = {"modality": modality} if modality else {}
    return build_predictor(model, device, cache_dir=cache_dir, **opts)


class SamMedWidget(QWidget):
    """Interactive 3D segmentation of the selected scan with a sam-med model."""

    def __init__(self, napari_viewer, parent=None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = None
        self.volume = None
        self.image_layer = None
        self.predictor = None
        self._predictor_key: tuple | None = None
        #: ``factory(model, device, cache_dir, modality) -> predictor`` (tests may replace it)
        self.predictor_factory: Callable[..., Any] = _default_predictor_factory
        #: on-disk embedding cache (slice-wise models); default from $SAM_MED_CACHE_DIR
        self.cache_dir: str | None = os.environ.get("SAM_MED_CACHE_DIR") or None
        self.current_id: int | None = None
        self.points_layer = None
        self.shapes_layer = None
        self.labels_layer = None
        self.mark_a: int | None = None
        self.mark_b: int | None = None
        self.worker = None
        self.busy = False
        self.last_error: BaseException | None = None
        self.last_info: dict = {}
        self._box = ProgressBox()
        self._t0 = 0.0
        self._syncing = False
        self._build_ui()
        self._poll = QTimer(self)
        self._poll.setInterval(100)
        self._poll.timeout.connect(self._on_poll)
        self.viewer.layers.events.inserted.connect(self._refresh_images)
        self.viewer.layers.events.removed.connect(self._refresh_images)
        self._refresh_images()
        self._bind_keys(self.viewer)
        self._update_enabled()

    # ================================================================ UI
    def _build_ui(self) -> None:
        from sam_med.models.registry import list_models
        from sam_med.session import OVERLAP_RULES

        lay = QVBoxLayout(self)

        box = QGroupBox("Scan and model")
        form = QFormLayout(box)
        self.image_combo = QComboBox()
        form.addRow("Image", self.image_combo)
        self.model_combo = QComboBox()
        models = list_models()
        self.model_combo.addItems(models)
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
        row = QHBoxLayout()
        self.prepare_btn = QPushButton("Prepare")
        self.prepare_btn.setToolTip("Compute image embeddings for every slice (once per scan)")
        self.prepare_btn.clicked.connect(self._on_prepare)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.clicked.connect(self._on_cancel)
        row.addWidget(self.prepare_btn)
        row.addWidget(self.cancel_btn)
        form.addRow(row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        form.addRow(self.progress)
        lay.addWidget(box)

        box = QGroupBox("Objects")
        v = QVBoxLayout(box)
        self.objects_list = QListWidget()
        self.objects_list.currentRowChanged.connect(self._on_object_selected)
        v.addWidget(self.objects_list)
        row = QHBoxLayout()
        self.add_btn = QPushButton("Add")
        self.add_btn.clicked.connect(lambda: self._on_add_object())
        self.delete_btn = QPushButton("Delete")
        self.delete_btn.clicked.connect(self._on_delete_object)
        self.color_btn = QPushButton("Colour…")
        self.color_btn.clicked.connect(lambda: self._on_color())
        self.lock_chk = QCheckBox("Lock")
        self.lock_chk.toggled.connect(self._on_lock)
        for w in (self.add_btn, self.delete_btn, self.color_btn, self.lock_chk):
            row.addWidget(w)
        v.addLayout(row)
        row = QHBoxLayout()
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("name")
        self.name_edit.returnPressed.connect(lambda: self._on_rename())
        self.rename_btn = QPushButton("Rename")
        self.rename_btn.clicked.connect(lambda: self._on_rename())
        row.addWidget(self.name_edit)
        row.addWidget(self.rename_btn)
        v.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(QLabel("Overlap"))
        self.overlap_combo = QComboBox()
        self.overlap_combo.addItems(list(OVERLAP_RULES))
        self.overlap_combo.setToolTip("last: later objects win; first: earlier win; "
                                      "locked-first: locked objects win, then last")
        self.overlap_combo.currentTextChanged.connect(self._on_overlap)
        row.addWidget(self.overlap_combo)
        v.addLayout(row)
        lay.addWidget(box)

        box = QGroupBox("Prompts")
        form = QFormLayout(box)
        self.positive_chk = QCheckBox("positive clicks (T toggles)")
        self.positive_chk.setChecked(True)
        self.positive_chk.toggled.connect(self._on_positive_toggled)
        form.addRow(self.positive_chk)
        self.half_spin = QSpinBox()
        self.half_spin.setRange(0, 2000)
        self.half_spin.setValue(10)
        form.addRow("Box slices ±", self.half_spin)
        row = QHBoxLayout()
        self.mark_a_btn = QPushButton("Mark A")
        self.mark_a_btn.clicked.connect(self._on_mark_a)
        self.mark_b_btn = QPushButton("Mark B")
        self.mark_b_btn.clicked.connect(self._on_mark_b)
        self.use_marks_chk = QCheckBox("use marks")
        row.addWidget(self.mark_a_btn)
        row.addWidget(self.mark_b_btn)
        row.addWidget(self.use_marks_chk)
        form.addRow(row)
        self.marks_label = QLabel("z-range: slice ± N")
        form.addRow(self.marks_label)
        self.segment_btn = QPushButton("Segment / propagate")
        self.segment_btn.clicked.connect(self._on_segment)
        form.addRow(self.segment_btn)
        row = QHBoxLayout()
        self.undo_btn = QPushButton("Undo")
        self.undo_btn.clicked.connect(self._on_undo)
        self.redo_btn = QPushButton("Redo")
        self.redo_btn.clicked.connect(self._on_redo)
        row.addWidget(self.undo_btn)
        row.addWidget(self.redo_btn)
        form.addRow(row)
        lay.addWidget(box)

        box = QGroupBox("Results")
        v = QVBoxLayout(box)
        row = QHBoxLayout()
        self.accept_btn = QPushButton("Accept")
        self.accept_btn.setToolTip("Lock the current object (its mask is final)")
        self.accept_btn.clicked.connect(self._on_accept)
        self.save_labels_btn = QPushButton("Save labels…")
        self.save_labels_btn.clicked.connect(lambda: self._on_save_labels())
        row.addWidget(self.accept_btn)
        row.addWidget(self.save_labels_btn)
        v.addLayout(row)
        row = QHBoxLayout()
        self.save_session_btn = QPushButton("Save session…")
        self.save_session_btn.clicked.connect(lambda: self._on_save_session())
        self.load_session_btn = QPushButton("Open session…")
        self.load_session_btn.clicked.connect(lambda: self._on_load_session())
        row.addWidget(self.save_session_btn)
        row.addWidget(self.load_session_btn)
        v.addLayout(row)
        lay.addWidget(box)

        self.status = QLabel("Open a scan, then Prepare.")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        lay.addStretch(1)
        self._controls = [
            self.image_combo, self.model_combo, self.device_combo, self.modality_combo, self.prepare_btn, self.add_btn,
            self.delete_btn, self.color_btn, self.lock_chk, self.name_edit, self.rename_btn,
            self.overlap_combo, self.half_spin, self.mark_a_btn, self.mark_b_btn, self.use_marks_chk,
            self.segment_btn, self.undo_btn, self.redo_btn, self.accept_btn, self.save_labels_btn,
            self.save_session_btn, self.load_session_btn, self.objects_list,
        ]

    def _bind_keys(self, target) -> None:
        target.bind_key("Control-Z", lambda _=None: self._on_undo(), overwrite=True)
        target.bind_key("Control-Shift-Z", lambda _=None: self._on_redo(), overwrite=True)

    def _set_status(self, text: str) -> None:
        self.status.setText(text)

    def _update_enabled(self) -> None:
        for w in self._controls:
            w.setEnabled(not self.busy)
        self.cancel_btn.setEnabled(self.busy)
        if not self.busy:
            has_obj = self.session is not None and self.current_id in (self.session.objects if self.session else {})
            for w in (self.delete_btn, self.color_btn, self.lock_chk, self.rename_btn, self.accept_btn,
                      self.segment_btn):
                w.setEnabled(bool(has_obj))
            self.undo_btn.setEnabled(self.session is not None and self.session.can_undo)
            self.redo_btn.setEnabled(self.session is not None and self.session.can_redo)
            self.save_labels_btn.setEnabled(self.session is not None)
            self.save_session_btn.setEnabled(self.session is not None)
        for layer in (self.points_layer, self.shapes_layer):
            if layer is not None:
                layer.editable = not self.busy

    # ================================================================ scan / session
    def _image_layers(self):
        from napari.layers import Image

        return [l for l in self.viewer.layers if isinstance(l, Image) and l.ndim == 3]

    def _refresh_images(self, event=None) -> None:
        cur = self.image_combo.currentText()
        names = [l.name for l in self._image_layers()]
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems(names)
        if cur in names:
            self.image_combo.setCurrentText(cur)
        self.image_combo.blockSignals(False)

    def _selected_image(self):
        name = self.image_combo.currentText()
        for l in self._image_layers():
            if l.name == name:
                return l
        imgs = self._image_layers()
        if not imgs:
            raise RuntimeError("no 3D image layer: open a scan first (File > Open)")
        return imgs[-1]

    def _ensure_session(self):
        """Session for the selected image (a new one when the image changed)."""
        from sam_med.session import Session

        layer = self._selected_image()
        if self.session is not None and layer is self.image_layer:
            return self.session
        vol = L.volume_from_layer(layer.data, layer.affine.affine_matrix, layer.metadata)
        self.image_layer = layer
        self.volume = vol
        self.session = Session(vol, self.predictor, overlap=self.overlap_combo.currentText())
        self.current_id = None
        self._make_layers()
        self._show_axial()
        return self.session

    def _show_axial(self) -> None:
        if self.viewer.dims.ndisplay == 2 and self.viewer.dims.ndim == 3:
            self.viewer.dims.order = L.AXIAL_ORDER
            try:
                scene = getattr(self.viewer, "scene", None)  # napari >= 0.9
                cam = scene.camera if scene is not None else self.viewer.camera
                cam.orientation2d = L.RADIOLOGICAL_2D
            except Exception:  # noqa: BLE001 - older napari: keep the default orientation
                pass

    def _make_layers(self) -> None:
        vol = self.volume
        aff = np.asarray(vol.affine)
        for name in (POINTS_LAYER, BOX_LAYER, LABELS_LAYER):
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
        kw = L.labels_layer_kwargs(vol, LABELS_LAYER)
        self.labels_layer = self.viewer.add_labels(np.zeros(vol.shape, np.uint8), **kw)
        self.labels_layer.opacity = 0.5
        self.shapes_layer = self.viewer.add_shapes(
            ndim=3, name=BOX_LAYER, affine=aff, edge_color="yellow", face_color="transparent", edge_width=1.5,
        )
        self.points_layer = self.viewer.add_points(
            ndim=3, name=POINTS_LAYER, affine=aff, size=6, face_color=POS_COLOR, border_color="white",
        )
        self.points_layer.events.data.connect(self._on_points_changed)
        self.points_layer.bind_key("t", lambda _=None: self.positive_chk.toggle(), overwrite=True)
        for layer in (self.points_layer, self.shapes_layer, self.labels_layer):
            self._bind_keys(layer)
        self.shapes_layer.mode = "add_rectangle"

    def _model_key(self) -> tuple:
        """(model, device, cache_dir, modality) as chosen in the widget; read on the GUI thread."""
        mod = self.modality_combo.currentText()
        if mod == "auto":
            mod = L.guess_modality(self.volume) if self.volume is not None else None
        return (self.model_combo.currentText(), self.device_combo.currentText(), self.cache_dir, mod)

    def _get_predictor(self, key: tuple, progress=None):
        """Build (or reuse) the predictor for ``key``. Runs in the worker (touches no Qt)."""
        if self.predictor is None or self._predictor_key != key:
            if progress:
                progress(0, 1, f"loading {key[0]}")
            self.predictor = self.predictor_factory(*key)
            self._predictor_key = key
        if self.session is not None:
            self.session.predictor = self.predictor
        return self.predictor

    # ================================================================ workers
    def _run(self, fn: Callable[[], Any], on_done: Callable[[Any], None], what: str):
        """Run ``fn`` in a thread worker; ``on_done(result)`` on the GUI thread."""
        from napari.qt.threading import create_worker

        if self.busy:
            self._set_status("busy: wait for the current step or press Cancel")
            return None
        self._box.reset()
        self.busy = True
        self.last_error = None
        self._what = what
        self._t0 = time.perf_counter()
        self.progress.setValue(0)
        self._set_status(f"{what}…")
        self._update_enabled()
        def guarded():
            # errors come back as values: napari would otherwise re-raise them as notifications
            try:
                return True, fn()
            except Exception as exc:  # noqa: BLE001 - reported in the status line
                return False, exc

        def done(res):
            ok, value = res
            if ok:
                on_done(value)
            else:
                self._on_worker_error(value)

        worker = create_worker(guarded, _start_thread=False)
        worker.returned.connect(done)
        worker.finished.connect(self._on_worker_finished)
        self.worker = worker
        self._poll.start()
        worker.start()
        return worker

    def _on_poll(self) -> None:
        st = self._box.read()
        if st is None:
            return
        done, total, what = st
        if total > 0:
            self.progress.setValue(int(100 * done / total))
        self._set_status(f"{self._what}: {what} {done}/{total}")

    def _on_worker_error(self, exc: BaseException) -> None:
        self.last_error = exc
        if isinstance(exc, Cancelled):
            self._set_status(f"{self._what}: cancelled")
        else:
            self._set_status(f"{self._what} failed: {exc}")

    def _on_worker_finished(self) -> None:
        self._poll.stop()
        self.busy = False
        self.worker = None
        self._update_enabled()

    def _on_cancel(self) -> None:
        if self.busy:
            self._box.cancel()
            self._set_status(f"{self._what}: cancelling…")

    # ================================================================ prepare
    def _on_prepare(self) -> None:
        """Button "Prepare": load the model and encode every slice in a worker."""
        self._ensure_session()
        vol, box, key = self.volume, self._box, self._model_key()

        def work():
            pred = self._get_predictor(key, box)
            box.check()
            pred.prepare(vol, box)
            return pred

        self._run(work, self._on_prepared, "Prepare")

    def _on_prepared(self, pred) -> None:
        self.progress.setValue(100)
        self._set_status(f"Prepared {pred.model_name} in {time.perf_counter() - self._t0:.1f} s; "
                         "draw a box or click to segment.")
        if self.session is not None and not self.session.objects:
            self._on_add_object()

    # ================================================================ objects
    def _obj(self):
        if self.session is None or self.current_id not in self.session.objects:
            return None
        return self.session.objects[self.current_id]

    def _on_add_object(self, name: str | None = None) -> int:
        s = self._ensure_session()
        obj = s.add_object(name or None)
        self.current_id = obj.id
        self._sync()
        return obj.id

    def _on_delete_object(self) -> None:
        if self._obj() is None:
            return
        self.session.remove_object(self.current_id)
        self.current_id = max(self.session.objects, default=None)
        self._sync()

    def _on_rename(self, name: str | None = None) -> None:
        if self._obj() is None:
            return
        name = name if name is not None else self.name_edit.text().strip()
        if name:
            self.session.rename(self.current_id, name)
            self._sync()

    def _on_color(self, color=None) -> None:
        obj = self._obj()
        if obj is None:
            return
        if color is None:
            c = QColorDialog.getColor(QColor.fromRgbF(*obj.color), self, "Object colour")
            if not c.isValid():
                return
            color = (c.redF(), c.greenF(), c.blueF())
        self.session.set_color(self.current_id, tuple(color)[:3])
        self._sync()

    def _on_lock(self, locked: bool) -> None:
        obj = self._obj()
        if obj is None or self._syncing or obj.locked == bool(locked):
            return
        self.session.set_locked(self.current_id, locked)
        self._sync()

    def _on_accept(self) -> None:
        """Accept the current object: lock it so further clicks cannot change it."""
        obj = self._obj()
        if obj is not None and not obj.locked:
            self.session.set_locked(obj.id, True)
            self._sync()
            self._set_status(f"accepted {obj.name!r} (locked)")

    def _on_overlap(self, rule: str) -> None:
        if self.session is not None and not self._syncing:
            self.session.overlap = rule
            self._sync_labels()

    def _on_object_selected(self, row: int) -> None:
        if self._syncing or self.session is None or row < 0:
            return
        ids = list(self.session.objects)
        if row < len(ids):
            self.current_id = ids[row]
            self._sync()

    # ================================================================ prompts
    def _on_positive_toggled(self, positive: bool) -> None:
        if self.points_layer is not None:
            # napari recolours the *selected* points with the current colour: select none first
            self.points_layer.selected_data = set()
            self.points_layer.current_face_color = POS_COLOR if positive else NEG_COLOR

    def current_slice(self) -> int:
        """Index of the displayed slice along the volume's slice axis."""
        return L.current_slice(self.viewer.dims.point, self.volume)

    def _on_mark_a(self) -> None:
        self._ensure_session()
        self.mark_a = self.current_slice()
        self._show_marks()

    def _on_mark_b(self) -> None:
        self._ensure_session()
        self.mark_b = self.current_slice()
        self._show_marks()

    def _show_marks(self) -> None:
        a = "-" if self.mark_a is None else self.mark_a
        b = "-" if self.mark_b is None else self.mark_b
        self.marks_label.setText(f"marks: A={a} B={b}")
        if self.mark_a is not None and self.mark_b is not None:
            self.use_marks_chk.setChecked(True)

    def box_from_layers(self) -> list[float] | None:
        """The 3D voxel box from the last rectangle in the box layer and the z-range controls."""
        if self.shapes_layer is None or len(self.shapes_layer.data) == 0:
            return None
        verts = L.data_to_voxel(self.shapes_layer.data[-1], self.shapes_layer.affine.affine_matrix, self.volume)
        axis = self.volume.slice_axis
        if self.use_marks_chk.isChecked() and self.mark_a is not None and self.mark_b is not None:
            zr = (self.mark_a, self.mark_b)
        else:
            k = int(np.rint(verts[:, axis].mean()))
            zr = L.slice_range(k, self.half_spin.value(), self.volume.shape[axis])
        return L.rectangle_to_box(verts, zr, self.volume, axis)

    def _on_segment(self) -> None:
        """Button "Segment / propagate": the box (if drawn) + clicks → mask, in a worker."""
        s = self._ensure_session()
        if self._obj() is None:
            self._on_add_object()
        oid = self.current_id
        box3d = self.box_from_layers()
        obj = s.get(oid)
        if box3d is None and obj.prompts.is_empty():
            self._set_status("draw a box (sam-med box layer) or click on the object first")
            return
        pbox, key = self._box, self._model_key()

        def work():
            self._get_predictor(key, pbox)
            if box3d is not None:
                return s.set_box(oid, box3d, progress=pbox)
            return s.run(oid, progress=pbox)

        self._run(work, self._on_segmented, "Segment")

    def _on_points_changed(self, event) -> None:
        """A point was added in the clicks layer → refine the current object (worker)."""
        if self._syncing or getattr(event, "action", None) != "added":
            return
        idx = sorted(getattr(event, "data_indices", ()) or [])
        if self.busy or self.session is None:
            self._set_status("busy: click ignored" if self.busy else "Prepare first")
            self._sync_points()
            return
        if self._obj() is None:
            self._on_add_object()
        obj = self._obj()
        if obj.locked:
            self._set_status(f"{obj.name!r} is locked; unlock it to refine")
            self._sync_points()
            return
        idx = [i for i in idx if 0 <= i < len(self.points_layer.data)] or [len(self.points_layer.data) - 1]
        ijk = L.data_to_voxel(self.points_layer.data[idx], self.points_layer.affine.affine_matrix,
                              self.volume)
        positive = self.positive_chk.isChecked()
        s, oid, pbox, key = self.session, self.current_id, self._box, self._model_key()

        def work():
            self._get_predictor(key, pbox)
            out = None
            for p in ijk:
                out = s.add_point(oid, p, positive, progress=pbox)
            return out

        if self._run(work, self._on_segmented, "Refine") is None:
            self._sync_points()

    def _on_segmented(self, obj) -> None:
        if obj is not None and obj.result is not None:
            self.last_info = dict(obj.result.info)
        n = int(obj.mask.sum()) if obj is not None and obj.mask is not None else 0
        self.progress.setValue(100)
        self._sync()
        self._set_status(f"{obj.name}: {n} voxels ({time.perf_counter() - self._t0:.1f} s)")

    # ================================================================ undo / redo
    def _on_undo(self) -> None:
        if self.busy or self.session is None:
            return
        if self.session.undo():
            self._fix_current()
            self._sync()
            self._set_status("undone")

    def _on_redo(self) -> None:
        if self.busy or self.session is None:
            return
        if self.session.redo():
            self._fix_current()
            self._sync()
            self._set_status("redone")

    def _fix_current(self) -> None:
        if self.current_id not in self.session.objects:
            self.current_id = max(self.session.objects, default=None)

    # ================================================================ layers sync
    def _sync(self) -> None:
        """Session → widgets and layers (objects list, clicks, labels)."""
        if self.session is None:
            return
        self._syncing = True
        try:
            self.objects_list.clear()
            row = -1
            for n, o in enumerate(self.session.objects.values()):
                text = f"{o.id}: {o.name}" + ("  [locked]" if o.locked else "")
                item = QListWidgetItem(text)
                item.setData(Qt.DecorationRole, QColor.fromRgbF(*o.color[:3]))
                self.objects_list.addItem(item)
                if o.id == self.current_id:
                    row = n
            self.objects_list.setCurrentRow(row)
            obj = self._obj()
            self.lock_chk.setChecked(bool(obj and obj.locked))
            self.name_edit.setText(obj.name if obj else "")
            self.overlap_combo.setCurrentText(self.session.overlap)
        finally:
            self._syncing = False
        self._sync_points()
        self._sync_labels()
        self._update_enabled()

    def _sync_points(self) -> None:
        if self.points_layer is None:
            return
        obj = self._obj()
        pts = obj.prompts.points if obj is not None else []
        data = np.array([p.ijk for p in pts], dtype=float).reshape(-1, 3)
        colors = np.array([POS_COLOR if p.positive else NEG_COLOR for p in pts]).reshape(-1, 4)
        self._syncing = True
        try:
            with self.points_layer.events.data.blocker():
                self.points_layer.selected_data = set()
                self.points_layer.data = data
                if len(data):
                    self.points_layer.face_color = colors
        finally:
            self._syncing = False
        self._on_positive_toggled(self.positive_chk.isChecked())

    def _sync_labels(self) -> None:
        if self.labels_layer is None or self.session is None:
            return
        from napari.utils.colormaps import DirectLabelColormap

        objs = list(self.session.objects.values())
        self.labels_layer.data = self.session.label_map()
        self.labels_layer.colormap = DirectLabelColormap(color_dict=L.label_colors(objs))
        md = self.labels_layer.metadata
        md[L.VOLUME_KEY] = self.volume
        md["sam_med_segments"] = L.segments_for([o for o in objs if o.mask is not None and o.mask.any()])
        md["sam_med_algorithm"] = {
            "name": getattr(self.session.predictor, "model_name", None) or self.model_combo.currentText(),
            "checkpoint_sha256": getattr(self.session.predictor, "checkpoint_sha256", None),
        }
        self.labels_layer.refresh()

    # ================================================================ save / open
    def _on_save_labels(self, path: str | None = None) -> str | None:
        """Write the label map on the scan's grid (.nii.gz/.nrrd/.mha) or as DICOM SEG (.dcm)."""
        if self.session is None:
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Save labels", str(Path.home() / "labels.nii.gz"),
                                                  "Label map (*.nii.gz *.nii *.nrrd *.mha);;DICOM SEG (*.dcm)")
            if not path:
                return None
        from . import _writer

        self._sync_labels()
        state = {"metadata": self.labels_layer.metadata, "affine": self.volume.affine}
        write = _writer.write_dicom_seg if str(path).lower().endswith(".dcm") else _writer.write_labels
        try:
            out = write(str(path), self.labels_layer.data, state)[0]
        except Exception as exc:  # noqa: BLE001 - shown to the user; library raises clear errors
            self._set_status(f"save failed: {exc}")
            raise
        self._set_status(f"saved {out}")
        return out

    def _on_save_session(self, path: str | None = None) -> str | None:
        if self.session is None:
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Save session", str(Path.home() / "session.npz"),
                                                  "sam-med session (*.npz)")
            if not path:
                return None
        if self.session.predictor is None and self.predictor is not None:
            self.session.predictor = self.predictor
        out = str(self.session.save(path))
        self._set_status(f"session saved to {out}")
        return out

    def _on_load_session(self, path: str | None = None) -> None:
        from sam_med.session import Session

        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Open session", str(Path.home()),
                                                  "sam-med session (*.npz)")
            if not path:
                return
        self._ensure_session()
        s = Session.load(path, self.volume, self.predictor)
        model = (getattr(s, "saved_meta", {}) or {}).get("model")
        if model and self.model_combo.findText(model) >= 0:
            self.model_combo.setCurrentText(model)
        self.session = s
        self.current_id = max(s.objects, default=None)
        self._sync()
        self._set_status(f"opened session {path} ({len(s.objects)} objects"
                         + (f", model {model}" if model else "") + "); Prepare to refine")
