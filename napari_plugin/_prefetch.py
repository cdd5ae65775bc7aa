"""Encoding on demand (GUI thread): the slices near the one the user looks at.

Replaces encoding every slice up front (still there as "Prepare all"). When the user
moves the slider or draws a box, :class:`Prefetcher` waits :data:`DEBOUNCE_MS` for the
slider to settle, then runs :func:`~._workers.prefetch_job` in a background
``create_worker`` generator worker: the current slice, then ± "encode ±" slices
around it, then (while the user stays idle) "ahead" more in the direction they last
scrolled, one slice at a time, into the predictor's embedding cache, never past its
memory budget. It never locks the controls: a new slider position restarts it around
the new slice, and any foreground job (Prepare, Segment, a click) cancels it first
(:meth:`Prefetcher.cancel`; it stops after the slice it is encoding). The segmentation
then finds those slices' embeddings in the cache (whole-slice views: a zoomed or
context crop of a small object needs its own encodes).
"""

from __future__ import annotations

from ._workers import CancelToken, Progress, prefetch_job

#: ms the slider must rest before the neighbourhood is encoded
DEBOUNCE_MS = 150


class Prefetcher:
    """Background encoder of :class:`~._controls.Controls` ``c`` (its scan, model and layers)."""

    def __init__(self, controls) -> None:
        from qtpy.QtCore import QTimer

        self.c = controls
        self.worker = None
        self.token = CancelToken()
        self.last_slice: int | None = None
        self.direction = 1
        #: ``(encoded, considered)`` slice counts of the last finished run
        self.last_result: tuple[int, int] | None = None
        self.runs = 0
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.start)
        self.alive = True  # False once the widget is gone: late worker signals are dropped
        controls.ui.destroyed.connect(self._on_widget_destroyed)

    def _on_widget_destroyed(self, *_):
        self.alive = False
        self.cancel()

    def show(self, text: str) -> None:
        if self.alive:
            try:
                self.c.ui.encode_label.setText(text)
            except RuntimeError:  # the label was deleted with the widget
                self.alive = False

    @property
    def running(self) -> bool:
        return self.worker is not None

    def schedule(self, event=None) -> None:
        """The slider moved or a box was drawn: (re)start after the debounce; only once a
        scan has a session (Prepare, a box or an object) and no foreground job runs."""
        if self.ready():
            self._timer.start()

    def ready(self) -> bool:
        """A scan with a session still shown in 3D, and no foreground job."""
        c = self.c
        return (self.alive and c.session is not None and not c.busy and c.volume is not None and c.viewer.dims.ndim == 3
                and c.image_layer is not None and c.image_layer in c.viewer.layers)

    def cancel(self) -> None:
        """Stop the running encode after its current slice (and a pending start)."""
        self._timer.stop()
        self.token.cancel()

    def start(self) -> None:
        """Encode around the displayed slice now (cancelling a run around an older one)."""
        from napari.qt.threading import create_worker
        from superqt.utils import GeneratorWorker

        c = self.c
        if not self.ready():
            return
        k = c.current_slice()
        if self.last_slice is not None and k != self.last_slice:
            self.direction = 1 if k > self.last_slice else -1
        self.last_slice = k
        self.token.cancel()
        self.token = token = CancelToken()
        worker = create_worker(
            prefetch_job, c.predictors, c.model_key(), c.volume, k, c.ui.window_spin.value(),
            c.ui.ahead_spin.value(), self.direction, token, _start_thread=True, _worker_class=GeneratorWorker,
            _connect={"yielded": self.on_progress, "returned": self.on_done, "errored": self.on_error})
        worker.finished.connect(lambda w=worker: self.on_finished(w))
        self.worker = worker
        self.runs += 1

    def on_progress(self, p: Progress) -> None:
        self.show(f"preparing slices near {self.last_slice}: {p.done}/{p.total}")

    def on_done(self, result) -> None:
        self.last_result = tuple(result)
        enc, n = self.last_result
        self.show(f"prepared slices: {n} slices near {self.last_slice} ready ({enc} new)")

    def on_error(self, exc: BaseException) -> None:
        from ._workers import Cancelled

        if not isinstance(exc, Cancelled):  # a background failure: one line, never a dialog
            text = str(exc).strip().splitlines()
            self.show(f"preparing slices stopped: {text[0] if text else type(exc).__name__}")

    def on_finished(self, worker) -> None:
        if self.worker is worker:
            self.worker = None
