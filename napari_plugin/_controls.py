"""The widget's handlers (``on_*``), on the GUI thread: user action → Session → layers.

:class:`Controls` holds the GUI-side state (the Session of the selected scan,
the current object, the plugin's layers, the A/B marks) and runs every model
call as a ``napari.qt.threading.create_worker`` generator worker from
``_workers``: its ``yielded`` reports drive the progress bar, ``returned``
applies the result to the layers, ``errored`` shows one line in the status
label (and a napari notification), ``finished`` unlocks the controls. Only
one such foreground worker runs at a time; while it runs the controls are
locked and the prompt layers ignore new clicks. Segmentation streams: its
``(axis, k, plane)`` yields are painted into the Labels layer as they come.
Besides it, :class:`~._prefetch.Prefetcher` encodes the slices around the
displayed one in the background (cancelled whenever a foreground job starts).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable

import numpy as np

from . import _display as D
from . import _layers as L
from ._predictors import PredictorCache
from ._object_controls import ObjectControls
from ._prefetch import Prefetcher
from ._workers import Cancelled, CancelToken, Progress, load_job, prepare_job, refine_job, segment_job

log = logging.getLogger(__name__)


class NoScan(RuntimeError):
    """The viewer has no 3D image layer to segment."""


def one_line(exc: BaseException) -> str:
    """An exception as one line: its message's first line, else its type's name."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class Controls(ObjectControls):
    """Handlers of :class:`~._widget.SamMedWidget` (``ui``); the state of one scan's Session."""

    def __init__(self, ui) -> None:
        self.ui = ui
        self.viewer = ui.viewer
        self.session = None
        self.volume = None
        self.image_layer = None
        self.predictors = PredictorCache()
        #: on-disk embedding cache (slice-wise models); default from $SAM_MED_CACHE_DIR
        self.cache_dir: str | None = os.environ.get("SAM_MED_CACHE_DIR") or None
        self.current_id: int | None = None
        self.labels_layer = self.shapes_layer = self.points_layer = None
        self.mark_a: int | None = None
        self.mark_b: int | None = None
        self.worker = None
        self.busy = False
        self.last_error: BaseException | None = None
        self.last_info: dict = {}
        self.token = CancelToken()
        self.what = ""
        self.t0 = 0.0
        #: the current job painted streamed slices into the Labels layer (restore them on failure)
        self.painted = False
        self.prefetch = Prefetcher(self)

    def start(self) -> None:
        """Follow the viewer's layer list and bind undo/redo keys (called once by the widget)."""
        self.viewer.layers.events.inserted.connect(self.on_layers_changed)
        self.viewer.layers.events.removed.connect(self.on_layers_changed)
        self.viewer.dims.events.current_step.connect(self.prefetch.schedule)
        self.on_layers_changed()
        self.bind_keys(self.viewer)
        self.refresh_enabled()

    @property
    def predictor(self):
        """The loaded predictor (None before the first Prepare/Segment)."""
        return self.predictors.current

    def bind_keys(self, target) -> None:
        target.bind_key("Control-Z", lambda _=None: self.on_undo(), overwrite=True)
        target.bind_key("Control-Shift-Z", lambda _=None: self.on_redo(), overwrite=True)

    def set_status(self, text: str) -> None:
        self.ui.status.setText(text)

    def obj(self):
        """The current Session object, or None."""
        if self.session is None or self.current_id not in self.session.objects:
            return None
        return self.session.objects[self.current_id]

    def refresh_enabled(self) -> None:
        D.set_enabled(self.ui, self.busy, self.session, self.obj() is not None,
                      (self.points_layer, self.shapes_layer))

    # ================================================================ scan / session
    def on_layers_changed(self, event=None) -> None:
        D.refresh_image_choices(self.ui)

    def selected_image(self):
        layers = D.image_layers(self.viewer)
        for layer in layers:
            if layer.name == self.ui.image_combo.currentText():
                return layer
        if not layers:
            raise NoScan("no 3D image layer: open a scan first (File > Open)")
        return layers[-1]

    def ensure_session(self):
        """Session for the selected image (a new one when the image changed)."""
        from sam_med.session import Session

        layer = self.selected_image()
        if self.session is not None and layer is self.image_layer:
            return self.session
        vol = L.volume_from_layer(layer.data, layer.affine.affine_matrix, layer.metadata)
        self.image_layer, self.volume = layer, vol
        self.session = Session(vol, self.predictor, overlap=self.ui.overlap_combo.currentText())
        self.current_id = None
        self.labels_layer, self.shapes_layer, self.points_layer = D.make_layers(self.viewer, vol)
        self.points_layer.events.data.connect(self.on_points_changed)
        self.shapes_layer.events.data.connect(self.prefetch.schedule)
        self.points_layer.bind_key("t", lambda _=None: self.ui.positive_chk.toggle(), overwrite=True)
        for layer in (self.points_layer, self.shapes_layer, self.labels_layer):
            self.bind_keys(layer)
        D.show_axial(self.viewer)
        return self.session

    def scan_session(self):
        """:meth:`ensure_session`, or None (the reason in the status line) without a scan."""
        try:
            return self.ensure_session()
        except NoScan as exc:
            self.last_error = exc
            self.set_status(one_line(exc))
            return None

    def model_key(self) -> tuple:
        """(model, device, cache_dir, modality) as chosen in the widget; read on the GUI thread."""
        mod = self.ui.modality_combo.currentText()
        if mod == "auto":
            mod = L.guess_modality(self.volume) if self.volume is not None else None
        return (self.ui.model_combo.currentText(), self.ui.device_combo.currentText(), self.cache_dir, mod)

    # ================================================================ workers
    def run(self, job: Callable, *args, on_done: Callable[[Any], None], what: str):
        """Start ``job(*args, token)`` (a generator of :class:`Progress`) in a worker.

        ``on_done(result)`` runs on the GUI thread. Returns the worker, or None when
        another one is running."""
        from napari.qt.threading import create_worker
        from superqt.utils import GeneratorWorker  # napari's subclass would also pop a traceback

        if self.busy:
            self.set_status("busy: wait for the current step or press Cancel")
            return None
        self.prefetch.cancel()  # the foreground job gets the CPU; prefetch resumes when it ends
        self.busy, self.last_error, self.what, self.t0 = True, None, what, time.perf_counter()
        self.painted = False
        self.token = CancelToken()
        self.ui.progress.setValue(0)
        self.set_status(f"{what}…")
        self.refresh_enabled()
        self.worker = create_worker(
            job, *args, self.token, _start_thread=True, _worker_class=GeneratorWorker,
            _connect={"yielded": self.on_worker_progress, "returned": on_done,
                      "errored": self.on_worker_error, "finished": self.on_worker_finished},
        )
        return self.worker

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def on_worker_progress(self, p) -> None:
        """A :class:`Progress` report → bar + status; a streamed slice → the Labels layer."""
        if not isinstance(p, Progress):
            self.painted = True
            D.paint_update(self.labels_layer, p, self.current_id)
            return
        if p.total > 0:
            self.ui.progress.setValue(int(100 * p.fraction))
        self.set_status(f"{self.what}: {p.what} {p.done}/{p.total}")

    def on_worker_error(self, exc: BaseException) -> None:
        from napari.utils.notifications import show_error, show_info

        self.last_error = exc
        if self.painted:  # streamed slices of a result the Session did not take
            self.show_labels()
        if isinstance(exc, Cancelled):
            self.set_status(f"{self.what}: cancelled")
            show_info(f"sam-med: {self.what} cancelled")
            return
        from sam_med.errors import SamMedError

        if not isinstance(exc, SamMedError):  # a bug, not bad input: keep the traceback in the log
            log.error("sam-med %s failed", self.what, exc_info=exc)
        line = f"{self.what} failed: {one_line(exc)}"
        self.set_status(line)
        show_error(f"sam-med: {line}")

    def on_worker_finished(self) -> None:
        self.busy = False
        self.worker = None
        self.refresh_enabled()
        self.prefetch.schedule()  # idle again: encode around the displayed slice

    def on_cancel(self) -> None:
        if self.busy:
            self.token.cancel()
            self.set_status(f"{self.what}: cancelling…")

    # ================================================================ prepare
    def on_prepare(self) -> None:
        """Button "Prepare": load the model in a worker; then the displayed slice's
        neighbourhood is encoded in the background (:class:`~._prefetch.Prefetcher`)."""
        s = self.scan_session()
        if s is not None:
            self.run(load_job, self.predictors, self.model_key(), s, on_done=self.on_prepared, what="Prepare")

    def on_prepare_all(self) -> None:
        """Button "Prepare all": load the model and encode every slice in a worker."""
        s = self.scan_session()
        if s is not None:
            self.run(prepare_job, self.predictors, self.model_key(), self.volume, s,
                     on_done=self.on_prepared, what="Prepare all")

    def on_prepared(self, pred) -> None:
        self.ui.progress.setValue(100)
        self.set_status(f"{self.what}: {pred.model_name} ready in {self.elapsed():.1f} s; "
                        "draw a box or click to segment.")
        if self.session is not None and not self.session.objects:
            self.on_add_object()

    # ================================================================ prompts
    def on_positive_toggled(self, positive: bool) -> None:
        D.set_click_color(self.points_layer, positive)

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
        self.ui.marks_label.setText(f"marks: A={a} B={b}")
        if self.mark_a is not None and self.mark_b is not None:
            self.ui.use_marks_chk.setChecked(True)

    def _rectangle(self):
        """(voxel vertices (4, 3) of the last rectangle, marked z-range or None), or None."""
        if self.shapes_layer is None or len(self.shapes_layer.data) == 0:
            return None
        verts = L.data_to_voxel(self.shapes_layer.data[-1], self.shapes_layer.affine.affine_matrix, self.volume)
        marks = self.ui.use_marks_chk.isChecked() and self.mark_a is not None and self.mark_b is not None
        return verts, ((self.mark_a, self.mark_b) if marks else None)

    def box_from_layers(self) -> list[float] | None:
        """The tight 3D voxel box from the last rectangle in the box layer and the z-range controls.

        Raises :class:`~sam_med.errors.PromptError` (the CLI's check) for a box outside the scan."""
        rect = self._rectangle()
        if rect is None:
            return None
        verts, zr = rect
        axis = self.volume.slice_axis
        if zr is None:
            k = int(np.rint(verts[:, axis].mean()))
            zr = L.slice_range(k, self.ui.half_spin.value(), self.volume.shape[axis])
        return L.rectangle_to_box(verts, zr, self.volume, axis)

    def key_box_from_layers(self):
        """The :class:`~sam_med.prompts.KeySliceBox` of the last rectangle (its slice, the
        z-range controls), or None; a box outside the scan raises ``PromptError``."""
        rect = self._rectangle()
        return None if rect is None else L.rectangle_to_key_box(rect[0], rect[1], self.ui.half_spin.value(),
                                                                self.volume)

    def on_segment(self) -> None:
        """Button "Segment / propagate": the box (if drawn) + clicks → mask, in a worker."""
        from sam_med.errors import PromptError

        s = self.scan_session()
        if s is None:
            return
        from sam_med.prompts import make_box

        try:
            tight = self.ui.tight_chk.isChecked()
            box = self.box_from_layers() if tight else self.key_box_from_layers()
        except PromptError as exc:
            self.last_error = exc
            self.set_status(f"Segment refused: {one_line(exc)}")
            return
        if self.obj() is None:
            self.on_add_object()
        prompts = self.obj().prompts.copy()
        if box is not None:  # a tight 3D box and a key-slice box replace each other
            prompts.box, prompts.key_box = (make_box(box, self.volume.shape), None) if tight else (None, box)
        if prompts.is_empty():
            self.set_status("draw a box (sam-med box layer) or click on the object first")
            return
        self.run(segment_job, self.predictors, self.model_key(), s, self.current_id, prompts,
                 on_done=self.on_segmented, what="Segment")

    def on_points_changed(self, event) -> None:
        """A point was added in the clicks layer → refine the current object (worker)."""
        if getattr(event, "action", None) != "added":
            return
        if self.busy or self.session is None:
            self.set_status("busy: click ignored" if self.busy else "Prepare first")
            self.show_points()
            return
        if self.obj() is None:
            self.on_add_object()
        obj = self.obj()
        if obj.locked:
            self.set_status(f"{obj.name!r} is locked; unlock it to refine")
            self.show_points()
            return
        data = self.points_layer.data
        idx = [i for i in sorted(getattr(event, "data_indices", ()) or []) if 0 <= i < len(data)]
        ijk = L.data_to_voxel(data[idx or [len(data) - 1]], self.points_layer.affine.affine_matrix, self.volume)
        self.run(refine_job, self.predictors, self.model_key(), self.session, self.current_id, ijk,
                 self.ui.positive_chk.isChecked(), on_done=self.on_segmented, what="Refine")

    def on_segmented(self, obj) -> None:
        if obj is not None and obj.result is not None:
            self.last_info = dict(obj.result.info)
        n = int(obj.mask.sum()) if obj is not None and obj.mask is not None else 0
        self.ui.progress.setValue(100)
        self.sync()
        self.set_status(f"{obj.name}: {n} voxels ({self.elapsed():.1f} s)")

    # ================================================================ undo / redo
    def on_undo(self) -> None:
        self._step(self.session.undo if self.session is not None else None, "undone")

    def on_redo(self) -> None:
        self._step(self.session.redo if self.session is not None else None, "redone")

    def _step(self, action, done: str) -> None:
        if self.busy or action is None or not action():
            return
        if self.current_id not in self.session.objects:
            self.current_id = max(self.session.objects, default=None)
        self.sync()
        self.set_status(done)

    # ================================================================ display
    def sync(self) -> None:
        """Session → widgets and layers (objects list, clicks, labels, enabled controls)."""
        if self.session is None:
            return
        D.show_objects(self.ui, self.session, self.current_id)
        self.show_points()
        self.show_labels()
        self.refresh_enabled()

    def show_points(self) -> None:
        D.show_points(self.points_layer, self.obj(), self.ui.positive_chk.isChecked())

    def show_labels(self) -> None:
        D.show_labels(self.labels_layer, self.session, self.volume, self.ui.model_combo.currentText())
