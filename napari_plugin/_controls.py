"""The widget's handlers (``on_*``), on the GUI thread: user action → Session → layers.

:class:`Controls` holds the GUI-side state (each scan's Session, the selected object, the
plugin's layers, the slice marks) and runs every model call as a ``create_worker``
generator worker from ``_workers``: ``yielded`` reports drive the progress line
(:class:`~._progress.ProgressMeter`: slices done/total and the time left, throttled) and
streamed ``(axis, k, plane)`` slices are painted into the Labels layer (repainted at most
every :data:`REPAINT_S`); ``returned`` applies the result, ``errored`` shows one line,
``finished`` unlocks the controls. One foreground worker at a time, the controls and the
plugin's layers locked meanwhile.

No silent loss: each scan keeps its own Session (switching the "Scan" combo brings it back);
closing the viewer cancels the workers and waits for them; brush strokes become
``Session.set_mask`` edits; deleting an object is one undo step and says so. Prompt and
brush handlers live in ``_prompt_controls``, object handlers in ``_object_controls``.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import _display as D
from . import _layers as L
from ._edits import EditLedger
from ._object_controls import ObjectControls
from ._predictors import PredictorCache
from ._prefetch import Prefetcher
from ._progress import ProgressMeter
from ._prompt_controls import PromptControls
from ._workers import Cancelled, CancelToken, Progress, load_job, prepare_job

log = logging.getLogger(__name__)

#: streamed slices are repainted at most this often (s); the Labels layer holds them all
REPAINT_S = 0.1
#: a job shows its progress line once it has run this long (s): a click is over before
SHOW_AFTER_S = 0.3


class NoScan(RuntimeError):
    """The viewer has no 3D image layer to segment."""


def one_line(exc: BaseException) -> str:
    """An exception as one line: its message's first line, else its type's name."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@dataclass
class ScanState:
    """What the widget keeps per scan (image layer) while another one is selected."""

    layer: Any
    volume: Any
    session: Any
    current_id: int | None = None
    hidden: set = field(default_factory=set)
    ledger: EditLedger = field(default_factory=EditLedger)


class Controls(PromptControls, ObjectControls):
    """Handlers of :class:`~._widget.SamMedWidget` (``ui``)."""

    one_line = staticmethod(one_line)

    def __init__(self, ui) -> None:
        self.ui = ui
        self.viewer = ui.viewer
        self.session = self.volume = self.image_layer = None
        self.current_id: int | None = None
        #: object ids not shown (their masks stay in the Session and in saved files)
        self.hidden: set[int] = set()
        self.ledger = EditLedger()
        #: ``id(image layer) → ScanState`` of every scan with a Session
        self.scans: dict[int, ScanState] = {}
        self.predictors = PredictorCache()
        #: on-disk embedding cache (slice-wise models); default from $SAM_MED_CACHE_DIR
        self.cache_dir: str | None = os.environ.get("SAM_MED_CACHE_DIR") or None
        self.labels_layer = self.shapes_layer = self.points_layer = self.range_layer = None
        #: the label map last shown (brush strokes are what differs from it)
        self.shown: np.ndarray | None = None
        self.mark_a: int | None = None
        self.mark_b: int | None = None
        self.worker = None
        self.busy = self.closed = False
        self.last_error: BaseException | None = None
        self.last_info: dict = {}
        self.token = CancelToken()
        self.what = ""
        self.t0 = self.t_paint = 0.0
        self.meter = ProgressMeter()
        self.streamed: set[int] = set()
        self.stream_total = 0
        #: the current job painted streamed slices into the Labels layer (restore them on failure)
        self.painted = False
        self.before = None
        self.prefetch = Prefetcher(self)

    def start(self) -> None:
        """Follow the viewer's layer list, bind keys, and stop cleanly on close (once)."""
        self.viewer.layers.events.inserted.connect(self.on_layers_changed)
        self.viewer.layers.events.removed.connect(self.on_layers_changed)
        self.viewer.dims.events.current_step.connect(self.prefetch.schedule)
        self.ui.image_combo.currentTextChanged.connect(self.on_image_changed)
        self.on_layers_changed()
        self.bind_keys(self.viewer)
        self.refresh_enabled()
        from ._preference import prefer_sam_med

        prefer_sam_med()  # scans open with sam-med from now on (the user's preferences kept)

    @property
    def predictor(self):
        """The loaded predictor (None before the first Prepare/Segment)."""
        return self.predictors.current

    def bind_keys(self, target) -> None:
        """Ctrl+Z / Ctrl+Shift+Z undo/redo; the shortcuts listed in the widget."""
        keys = {"Control-Z": self.on_undo, "Control-Shift-Z": self.on_redo, "Shift-S": self.on_segment,
                "Shift-N": self.on_next_object, "Shift-T": self.ui.positive_chk.toggle,
                "Shift-A": lambda: self.ui.files.on_accept()}
        for key, fn in keys.items():
            target.bind_key(key, lambda _=None, fn=fn: fn(), overwrite=True)

    def set_status(self, text: str) -> None:
        self.ui.status.setText(text)

    def confirm(self, question: str) -> bool:
        """Ask a yes/no question (Yes is not the default)."""
        from qtpy.QtWidgets import QMessageBox

        B = QMessageBox.StandardButton
        return QMessageBox.question(self.ui, "sam-med", question, B.Yes | B.No, B.No) == B.Yes

    def obj(self):
        """The current Session object, or None."""
        if self.session is None or self.current_id not in self.session.objects:
            return None
        return self.session.objects[self.current_id]

    def refresh_enabled(self) -> None:
        D.set_enabled(self.ui, self.busy, self.session, self.obj() is not None,
                      (self.points_layer, self.shapes_layer, self.labels_layer))

    # ================================================================ scans and sessions
    def on_layers_changed(self, event=None) -> None:
        D.refresh_image_choices(self.ui)
        added = getattr(event, "value", None) if getattr(event, "type", "") == "inserted" else None
        if event is None:  # the widget opened: the newest sam-med scan
            added = next((la for la in reversed(D.image_layers(self.viewer))
                          if L.VOLUME_KEY in la.metadata), None)
        if added is not None and added in D.image_layers(self.viewer) and L.VOLUME_KEY in added.metadata:
            D.show_axial(self.viewer, added.metadata[L.VOLUME_KEY])  # a new scan: its acquisition plane
        alive = {id(layer) for layer in D.image_layers(self.viewer)}
        for key in [k for k in self.scans if k not in alive]:
            del self.scans[key]  # the scan itself was closed

    def on_image_changed(self, name: str = "") -> None:
        """The "Scan" combo: the selected scan's own Session comes back (the other one is kept)."""
        if self.session is None or self.busy or self.closed:
            return
        if self.image_layer is not None and self.image_layer.name == name:
            return
        self.scan_session()

    def selected_image(self):
        layers = D.image_layers(self.viewer)
        for layer in layers:
            if layer.name == self.ui.image_combo.currentText():
                return layer
        if not layers:
            raise NoScan("no 3D image layer: open a scan first (File > Open)")
        return layers[-1]

    def ensure_session(self):
        """The Session of the selected scan: its own one when it had one, else a new one."""
        from sam_med.session import Session

        layer = self.selected_image()
        if self.session is not None and layer is self.image_layer:
            return self.session
        vol = L.volume_from_layer(layer.data, layer.affine.affine_matrix, layer.metadata, layer.name)
        if self.session is not None:
            self.scans[id(self.image_layer)] = ScanState(self.image_layer, self.volume, self.session,
                                                         self.current_id, self.hidden, self.ledger)
        st = self.scans.pop(id(layer), None) or ScanState(
            layer, vol, Session(vol, self.predictor, overlap=self.ui.overlap_combo.currentText()))
        self.image_layer, self.volume, self.session = layer, st.volume, st.session
        self.current_id, self.hidden, self.ledger = st.current_id, st.hidden, st.ledger
        self.mark_a = self.mark_b = None
        self.labels_layer, self.shapes_layer, self.range_layer, self.points_layer = D.make_layers(self.viewer, vol)
        self.points_layer.events.data.connect(self.on_points_changed)
        self.shapes_layer.events.data.connect(self.on_box_drawn)
        self.shapes_layer.events.data.connect(self.prefetch.schedule)
        self.labels_layer.events.paint.connect(self.on_labels_paint_event)
        self.points_layer.bind_key("t", lambda _=None: self.ui.positive_chk.toggle(), overwrite=True)
        for lay in (self.points_layer, self.shapes_layer, self.labels_layer):
            self.bind_keys(lay)
        D.show_axial(self.viewer, vol)
        self.viewer.layers.selection.active = self.shapes_layer  # a first drag draws a box
        self.sync()
        return self.session

    def scan_session(self):
        """:meth:`ensure_session`, or None (the reason in the status line) without a usable scan."""
        try:
            return self.ensure_session()
        except (NoScan, L.NoGeometry) as exc:
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

        if self.busy or self.closed:
            self.set_status("busy: wait for the current step or press Cancel")
            return None
        self.prefetch.cancel()  # the foreground job gets the CPU; prefetch resumes when it ends
        self.busy, self.last_error, self.what, self.t0 = True, None, what, time.perf_counter()
        self.painted, self.streamed, self.t_paint = False, set(), 0.0
        self.stream_total = self.expected_slices()
        self.meter.reset()
        self.token = CancelToken()
        self.refresh_enabled()  # no progress repaint here: a click's job is over in a blink
        self.worker = create_worker(
            job, *args, self.token, _start_thread=True, _worker_class=GeneratorWorker,
            _connect={"yielded": self.on_worker_progress, "returned": self._done(on_done),
                      "errored": self.on_worker_error, "finished": self.on_worker_finished},
        )
        return self.worker

    def _done(self, on_done):
        return lambda result: None if self.closed else on_done(result)

    def expected_slices(self) -> int:
        """Slices a segmentation of the selected object will decode (its box's range)."""
        lo, hi = self.box_slices(self.obj()) if self.volume is not None else (None, None)
        if lo is None:
            return int(self.volume.shape[self.volume.slice_axis]) if self.volume is not None else 0
        return int(hi) - int(lo) + 1

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def set_bar(self, value: int) -> None:
        """The progress bar, only when its value changes (QProgressBar repaints at once, and
        a synchronous repaint of the window costs tens of ms under software OpenGL)."""
        if self.ui.progress.value() != int(value):
            self.ui.progress.setValue(int(value))

    def on_worker_progress(self, p) -> None:
        """A :class:`Progress` report → progress line; a streamed slice → the Labels layer."""
        if self.closed:
            return
        if not isinstance(p, Progress):
            self.painted = True
            D.paint_update(self.labels_layer, p, self.current_id, refresh=False)
            if p[1] is not None:
                self.streamed.add(int(p[1]))
            now = time.perf_counter()
            if now - self.t_paint >= REPAINT_S:
                self.t_paint = now
                self.labels_layer.refresh()
            if self.meter.total <= 1 and self.stream_total > 1:  # no slice count from the engine
                p = Progress(min(len(self.streamed), self.stream_total), self.stream_total, "propagate")
            else:
                return
        if self.meter.update(p.done, p.total, p.what) and self.elapsed() >= SHOW_AFTER_S:
            if p.total > 0:
                self.set_bar(self.meter.percent)
            self.ui.progress_label.setText(self.meter.text())
            self.set_status(f"{self.what}: {self.meter.text()}")

    def on_worker_error(self, exc: BaseException) -> None:
        from napari.utils.notifications import show_error, show_info

        self.last_error = exc
        if self.closed:
            return
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
        if self.closed:
            return
        self.set_bar(100 if self.last_error is None else self.ui.progress.value())
        self.ui.progress_label.setText(f"{self.what}: done in {self.elapsed():.1f} s" if self.last_error is None
                                       else f"{self.what}: stopped")
        self.refresh_enabled()
        self.prefetch.schedule()  # idle again: encode around the displayed slice

    def on_cancel(self) -> None:
        if self.busy:
            self.token.cancel()
            self.set_status(f"{self.what}: cancelling…")

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """The viewer closes: cancel the foreground job and the prefetch, and wait for their
        threads to end (a library call stops at its next progress report), so no worker
        outlives the window. Idempotent."""
        from qtpy.QtCore import QThreadPool

        if self.closed:
            return
        self.closed = True
        self.token.cancel()
        self.prefetch.cancel()
        if not QThreadPool.globalInstance().waitForDone(int(timeout_s * 1000)):
            log.warning("sam-med: a worker did not stop within %.0f s of closing", timeout_s)

    # ================================================================ prepare
    def on_prepare(self) -> None:
        """Button "Load model": load it in a worker; then the displayed slice's
        neighbourhood is encoded in the background (:class:`~._prefetch.Prefetcher`)."""
        s = self.scan_session()
        if s is not None:
            self.run(load_job, self.predictors, self.model_key(), s, on_done=self.on_prepared, what="Load model")

    def on_prepare_all(self) -> None:
        """Button "Encode whole scan": load the model and encode every slice in a worker."""
        s = self.scan_session()
        if s is not None:
            self.run(prepare_job, self.predictors, self.model_key(), self.volume, s,
                     on_done=self.on_prepared, what="Encode whole scan")

    def on_prepared(self, pred) -> None:
        self.set_status(f"{self.what}: {pred.model_name} ready in {self.elapsed():.1f} s; "
                        "draw a box on the organ, then Segment (Shift+S).")
        if self.session is not None and not self.session.objects:
            self.on_add_object()

    def on_positive_toggled(self, positive: bool) -> None:
        self.show_prompts()

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
