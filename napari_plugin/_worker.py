"""Qt-free helpers for running sam-med work off the GUI thread.

The widget runs every model call (load, Prepare, segment, refine) in a napari
``thread_worker``. The worker thread touches no Qt object: it reports progress
into a :class:`ProgressBox` that the GUI thread polls with a ``QTimer``, and a
Cancel request makes the next progress callback raise :class:`Cancelled`, which
unwinds the library call (sam-med's long operations call ``progress`` between
batches, so cancelling takes at most one batch).
"""

from __future__ import annotations

import threading


class Cancelled(Exception):
    """Raised inside a worker when the user pressed Cancel."""


class ProgressBox:
    """Thread-safe last progress report + cancel flag; ``box(done, total, what)`` is a ProgressFn."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._state: tuple[int, int, str] | None = None
        self.calls = 0

    def reset(self) -> None:
        with self._lock:
            self._state = None
            self.calls = 0
        self._cancel.clear()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def __call__(self, done: int, total: int, what: str = "") -> None:
        if self._cancel.is_set():
            raise Cancelled(f"cancelled during {what or 'work'} ({done}/{total})")
        with self._lock:
            self._state = (int(done), int(total), str(what))
            self.calls += 1

    def check(self) -> None:
        """Raise :class:`Cancelled` if Cancel was pressed (for checkpoints between steps)."""
        if self._cancel.is_set():
            raise Cancelled("cancelled")

    def read(self) -> tuple[int, int, str] | None:
        with self._lock:
            return self._state
