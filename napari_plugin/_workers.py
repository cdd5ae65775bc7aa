"""The widget's heavy work, run off the GUI thread. No Qt object is touched here.

Each job (:func:`prepare_job`, :func:`segment_job`, :func:`refine_job`) is a
generator for ``napari.qt.threading.create_worker``: it yields :class:`Progress`
reports (the worker's ``yielded`` signal carries them to the GUI thread) and
returns its result (``returned``); an exception ends it (``errored``).

sam-med's long calls (``predictor.prepare``, ``Session.set_box`` / ``run`` /
``add_point``) are blocking and report through a ``progress(done, total, what)``
callback. :func:`stream` turns such a call into a generator: the call runs in a
helper thread, its progress reports go through a queue and are yielded here.
Cancel is a :class:`CancelToken`: once set, the next progress callback raises
:class:`Cancelled`, which unwinds the library call (sam-med calls ``progress``
between batches, so cancelling takes at most one batch) and ends the job with
``errored(Cancelled)``.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Generator, Sequence

import numpy as np

#: how often (s) :func:`stream` looks at a call that reports no progress
_POLL_S = 0.05


class Cancelled(Exception):
    """Raised inside a job when the user pressed Cancel."""


@dataclass(frozen=True)
class Progress:
    """One progress report: ``done`` of ``total`` steps of ``what`` (e.g. "encode")."""

    done: int
    total: int
    what: str = ""

    @property
    def fraction(self) -> float:
        """``done / total`` in [0, 1] (0 when ``total`` is unknown)."""
        return min(1.0, max(0.0, self.done / self.total)) if self.total > 0 else 0.0


class CancelToken:
    """A thread-safe cancel flag; :meth:`check` raises :class:`Cancelled` once it is set."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self, what: str = "work") -> None:
        if self._event.is_set():
            raise Cancelled(f"cancelled during {what}")


Job = Generator[Progress, None, Any]


def stream(call: Callable[[Callable[..., None]], Any], token: CancelToken) -> Job:
    """Run ``call(progress)`` in a helper thread; yield its progress reports as they come.

    ``progress(done, total, what="")`` is the sam-med ``ProgressFn`` passed to
    ``call``; it raises :class:`Cancelled` once ``token`` is cancelled. Returns
    what ``call`` returns, or raises what it raised (after the thread has ended,
    so the caller never races a still-running library call)."""
    reports: queue.Queue[Progress] = queue.Queue()
    outcome: dict[str, Any] = {}

    def progress(done: int, total: int, what: str = "") -> None:
        token.check(f"{what or 'work'} ({done}/{total})")
        reports.put(Progress(int(done), int(total), str(what)))

    def target() -> None:
        try:
            outcome["value"] = call(progress)
        except BaseException as exc:  # noqa: BLE001 - handed to the job's caller below
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="sam-med job", daemon=True)
    thread.start()
    while thread.is_alive() or not reports.empty():
        try:
            yield reports.get(timeout=_POLL_S)
        except queue.Empty:
            continue
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def prepare_job(predictors, key: tuple, volume, session, token: CancelToken) -> Job:
    """Load (or reuse) the predictor for ``key`` and encode every slice of ``volume``.

    Returns the predictor (also set as ``session.predictor``)."""
    pred = yield from stream(lambda p: predictors.get(key, p), token)
    token.check("prepare")
    session.predictor = pred
    yield from stream(lambda p: pred.prepare(volume, p), token)
    return pred


def segment_job(predictors, key: tuple, session, oid: int, box: Sequence[float] | None,
                token: CancelToken) -> Job:
    """Segment object ``oid``: from the voxel ``box`` ``[i0, j0, k0, i1, j1, k1]`` (inclusive)
    when given, else from its stored prompts. Returns the session's object."""
    session.predictor = yield from stream(lambda p: predictors.get(key, p), token)
    if box is not None:
        return (yield from stream(lambda p: session.set_box(oid, box, progress=p), token))
    return (yield from stream(lambda p: session.run(oid, progress=p), token))


def refine_job(predictors, key: tuple, session, oid: int, points: np.ndarray, positive: bool,
               token: CancelToken) -> Job:
    """Add each voxel point of ``points`` (N, 3) as a click on ``oid``; returns the object."""
    session.predictor = yield from stream(lambda p: predictors.get(key, p), token)

    def clicks(progress):
        out = None
        for ijk in np.atleast_2d(points):
            out = session.add_point(oid, ijk, positive, progress=progress)
        return out

    return (yield from stream(clicks, token))
