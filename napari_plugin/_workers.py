"""The widget's heavy work, run off the GUI thread. No Qt object is touched here.

Each job (:func:`load_job`, :func:`prepare_job`, :func:`segment_job`,
:func:`refine_job`, :func:`prefetch_job`) is a generator for
``napari.qt.threading.create_worker``: it yields :class:`Progress` reports and, for
segmentation, ``(axis, k, plane)`` slice updates as they are decoded (the worker's
``yielded`` signal carries them to the GUI thread), and returns its result
(``returned``); an exception ends it (``errored``).

sam-med's long calls (``predictor.prepare``, ``Session.set_box`` / ``run`` /
``add_point``) are blocking and report through a ``progress(done, total, what)``
callback. :func:`stream` turns such a call into a generator: the call runs in a
helper thread, its progress reports go through a queue and are yielded here.
Cancel is a :class:`CancelToken`: once set, the next progress callback raises
:class:`Cancelled`, which unwinds the library call (sam-med calls ``progress``
between batches, so cancelling takes at most one batch) and ends the job with
``errored(Cancelled)``. :func:`pump` does the same for a generator such as
``Session.stream``, yielding its items too; cancel closes it (nothing committed).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Generator, Iterator

import numpy as np

#: the helper thread's last message: its call has returned or raised
_END = object()


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


def _threaded(call: Callable[[Callable[..., None], Callable[[Any], None]], Any], token: CancelToken) -> Job:
    """Run ``call(progress, emit)`` in a helper thread; yield, in order, its progress reports
    (:class:`Progress`) and the items it passes to ``emit``; return what it returns, or
    raise what it raised (after the thread has ended, so the caller never races a
    still-running library call). ``progress`` raises :class:`Cancelled` once ``token`` is set."""
    reports: queue.Queue = queue.Queue()
    outcome: dict[str, Any] = {}

    def progress(done: int, total: int, what: str = "") -> None:
        token.check(f"{what or 'work'} ({done}/{total})")
        reports.put(Progress(int(done), int(total), str(what)))

    def target() -> None:
        try:
            outcome["value"] = call(progress, reports.put)
        except BaseException as exc:  # noqa: BLE001 - handed to the job's caller below
            outcome["error"] = exc
        finally:
            reports.put(_END)  # wakes the loop below at once (no polling delay after the call)

    thread = threading.Thread(target=target, name="sam-med job", daemon=True)
    thread.start()
    while True:
        item = reports.get()
        if item is _END:
            break
        yield item
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def stream(call: Callable[[Callable[..., None]], Any], token: CancelToken) -> Job:
    """Run ``call(progress)`` in a helper thread; yield its progress reports as they come.

    ``progress(done, total, what="")`` is the sam-med ``ProgressFn`` passed to
    ``call``; it raises :class:`Cancelled` once ``token`` is cancelled. Returns
    what ``call`` returns, or raises what it raised."""
    return (yield from _threaded(lambda progress, _emit: call(progress), token))


def pump(make: Callable[[Callable[..., None]], Iterator], token: CancelToken) -> Job:
    """Iterate ``make(progress)`` (e.g. :meth:`Session.stream`) in a helper thread; yield its
    items and its progress reports (:class:`Progress`) as they come; return its return value.

    Cancel closes the iterator before its next item (``Session.stream`` then commits
    nothing); a progress report after cancel raises :class:`Cancelled` inside it."""
    def run(progress, emit):
        it = make(progress)
        try:
            while True:
                token.check("streaming")
                try:
                    item = next(it)
                except StopIteration as stop:
                    return stop.value
                emit(item)
        finally:
            it.close()

    return (yield from _threaded(run, token))


def loaded(predictors, key: tuple, token: CancelToken) -> Job:
    """The predictor for ``key``: the loaded one at once, else built in a helper thread
    (:meth:`PredictorCache.get`, seconds) with its progress reports."""
    pred = predictors.loaded(key) if callable(getattr(predictors, "loaded", None)) else None
    if pred is not None:
        return pred
    return (yield from stream(lambda p: predictors.get(key, p), token))


def load_job(predictors, key: tuple, session, token: CancelToken) -> Job:
    """Load (or reuse) the predictor for ``key``; returns it (also set as ``session.predictor``)."""
    pred = yield from loaded(predictors, key, token)
    session.predictor = pred
    return pred


def prepare_job(predictors, key: tuple, volume, session, token: CancelToken) -> Job:
    """Load (or reuse) the predictor for ``key`` and encode every slice of ``volume``.

    Returns the predictor (also set as ``session.predictor``)."""
    pred = yield from loaded(predictors, key, token)
    token.check("prepare")
    session.predictor = pred
    yield from stream(lambda p: pred.prepare(volume, p), token)
    return pred


def segment_job(predictors, key: tuple, session, oid: int, prompts, token: CancelToken) -> Job:
    """Segment object ``oid`` from ``prompts`` (an ``ObjectPrompts``; None: its own) through
    :meth:`Session.stream`: yields :class:`Progress` and ``(axis, k, plane)`` slice updates as
    they are decoded (the key slice first); returns the session's object."""
    session.predictor = yield from loaded(predictors, key, token)
    return (yield from pump(lambda p: session.stream(oid, prompts, progress=p), token))


def refine_job(predictors, key: tuple, session, oid: int, points: np.ndarray, positive: bool,
               token: CancelToken) -> Job:
    """Add each voxel point of ``points`` (N, 3) as a click on ``oid`` and re-segment through
    :meth:`Session.stream` (slice updates as for :func:`segment_job`); returns the object."""
    from sam_med.prompts import make_point

    session.predictor = yield from loaded(predictors, key, token)
    prompts = session.get(oid).prompts.copy()
    for ijk in np.atleast_2d(points):
        prompts.points.append(make_point(ijk, positive, session.volume.shape))
    return (yield from pump(lambda p: session.stream(oid, prompts, progress=p), token))


def neighbourhood(center: int, n_slices: int, window: int, ahead: int = 0, direction: int = 1) -> list[int]:
    """Slices to encode around ``center``: ``center``, then ``center ± 1``, ... ``± window``;
    then ``ahead`` more slices beyond the window in ``direction`` (+1/-1, where the user is
    heading), then as many on the other side. Clipped to ``0..n_slices-1``, each once."""
    order = [center]
    for d in range(1, window + 1):
        order += [center + direction * d, center - direction * d]
    for side in (direction, -direction):
        order += [center + side * (window + d) for d in range(1, ahead + 1)]
    return [k for k in dict.fromkeys(order) if 0 <= k < n_slices]


def prefetch_job(predictors, key: tuple, volume, center: int, window: int, ahead: int, direction: int,
                 token: CancelToken) -> Job:
    """Encode the whole slices of ``volume`` around ``center`` (:func:`neighbourhood`), one at
    a time (cancel takes at most one slice), into the predictor's embedding cache, and stop
    before an entry would evict another (the cache's memory budget, ``max_bytes``).
    Predictors without slice embeddings (volumetric models) encode nothing. Yields
    ``Progress(done, total, "encode")``; returns ``(encoded, cached)`` slice counts."""
    pred = yield from loaded(predictors, key, token)
    if not (callable(getattr(pred, "geometry", None)) and callable(getattr(pred, "embeddings", None))):
        return 0, 0
    geo = pred.geometry(volume)
    ks = neighbourhood(int(center), geo.n_slices, int(window), int(ahead), int(direction))
    cache, entry, encoded = pred.cache, 0, 0
    for n, k in enumerate(ks):
        token.check("encode")
        before = cache.encoded
        if entry and cache.encoded and cache.nbytes + entry > cache.max_bytes:
            return encoded, n  # the memory budget is full: encoding more would evict
        emb = pred.embeddings(geo, [k])[k]
        entry = max(entry, int(emb.numel() * emb.element_size()))
        encoded += cache.encoded - before
        yield Progress(n + 1, len(ks), "encode")
    return encoded, len(ks)
