"""Progress as the user feels it: ``what done/total`` with a rate-based estimate (ETA),
throttled for the GUI. No Qt.

The engine reports ``progress(done, total, what)`` (``what`` in "encode", "propagate",
"loading <model>" ...). :class:`ProgressMeter` keeps one clock per ``what`` (a new
``what``, or ``done`` going backwards, restarts it), estimates the time left from the
rate since that phase's first report, and says when the widget should repaint (at most
every :data:`MIN_INTERVAL_S`, and always on a phase's first and last report).
"""

from __future__ import annotations

import time
from typing import Callable

#: the widget repaints the progress line at most this often (s)
MIN_INTERVAL_S = 0.1
#: an estimate needs this much elapsed time in the phase (s) and at least 2 reports
MIN_ETA_S = 0.5

_NOUNS = {"encode": "encoding slices", "propagate": "segmenting slices"}


def format_seconds(s: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = max(0, int(round(s)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


class ProgressMeter:
    """Turns ``(done, total, what)`` reports into a line and a percentage, with an ETA."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        self.what: str | None = None
        self.t_first = self.t_shown = 0.0
        self.done_first = 0
        self.done = self.total = 0
        self.reports = 0

    def update(self, done: int, total: int, what: str = "") -> bool:
        """Record a report; True when the widget should repaint now (throttled)."""
        now = self.clock()
        done, total = int(done), int(total)
        first = what != self.what or done < self.done
        if first:
            self.what, self.t_first, self.done_first, self.reports = what, now, done, 0
        self.done, self.total = done, total
        self.reports += 1
        last = total > 0 and done >= total
        if first or last or now - self.t_shown >= MIN_INTERVAL_S:
            self.t_shown = now
            return True
        return False

    @property
    def percent(self) -> int:
        return int(100 * min(1.0, self.done / self.total)) if self.total > 0 else 0

    def eta(self) -> float | None:
        """Seconds left at the rate seen since this phase's first report (None: too early)."""
        elapsed = self.clock() - self.t_first
        steps = self.done - self.done_first
        if self.total <= 0 or steps <= 0 or elapsed < MIN_ETA_S or self.reports < 2:
            return None
        return max(0.0, (self.total - self.done) * elapsed / steps)

    def text(self) -> str:
        """e.g. ``segmenting slices 12/40, about 8 s left``."""
        noun = _NOUNS.get(self.what or "", self.what or "working")
        if self.total <= 1:  # no real count (a one-step phase, or loading)
            return f"{noun}…"
        line = f"{noun} {self.done}/{self.total}"
        eta = self.eta()
        if self.done >= self.total:
            return line + ", done"
        return line + (f", about {format_seconds(eta)} left" if eta is not None else ", estimating time left…")
