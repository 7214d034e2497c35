"""Long embedding work on the command line: a progress line, and signals that stop it cleanly.

Rules this module keeps:

* The progress line counts the items embedded (chunks, messages), not files, with the rate
  and the time left; it is drawn on stderr only when stderr is a terminal and neither
  ``--quiet`` nor ``--json`` is given, at most a few times a second.
* SIGINT and SIGTERM during embedding set a stop flag that the drain sees between batches
  (each about a second): the batch in hand is finished and stored, the rest stays queued for
  the next command, and the command exits 130 (SIGINT) or 143 (SIGTERM). Outside embedding
  a signal interrupts at once, as usual; a second signal during embedding does too.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

__all__ = ["ProgressLine", "StopSignals", "Terminated", "format_duration", "run_embedding"]


class Terminated(Exception):
    """SIGTERM arrived: the command ends with status 143 after cleaning up."""


def format_duration(seconds: float) -> str:
    s = max(0, int(seconds + 0.5))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class ProgressLine:
    """``embedding: 1,234/18,182 chunks  52.1/s  3m12s left`` redrawn in place on ``err``."""

    def __init__(self, err: TextIO, label: str, unit: str, *, enabled: bool, min_interval_s: float = 0.25) -> None:
        self.err = err
        self.label = label
        self.unit = unit
        self.enabled = enabled
        self.min_interval_s = min_interval_s
        self.done = 0
        self.total = 0
        self._t0 = time.monotonic()
        self._last = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, max(total, done)
        now = time.monotonic()
        if self.enabled and (now - self._last >= self.min_interval_s or done >= self.total):
            self._last = now
            self._draw(now)

    def line(self, now: float | None = None) -> str:
        elapsed = (now if now is not None else time.monotonic()) - self._t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        text = f"{self.label}: {self.done:,}/{self.total:,} {self.unit}"
        if self.done and rate > 0:
            text += f"  {rate:.1f}/s  {format_duration((self.total - self.done) / rate)} left"
        return text

    def _draw(self, now: float) -> None:
        self.err.write("\r\x1b[K" + self.line(now))
        self.err.flush()
        self._drawn = True

    def close(self) -> None:
        """End the line (a summary when anything was drawn)."""
        if self.enabled and self._drawn:
            elapsed = time.monotonic() - self._t0
            self.err.write(f"\r\x1b[K{self.label}: {self.done:,}/{self.total:,} {self.unit} "
                           f"in {format_duration(elapsed)}\n")
            self.err.flush()


class StopSignals:
    """SIGINT/SIGTERM handling for one command run (see the module notes)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None
        self._defer = 0
        self._saved: dict[int, Any] = {}

    def install(self) -> None:
        """Take over SIGINT and SIGTERM (main thread only; elsewhere a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._saved[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, old in self._saved.items():
            signal.signal(sig, old)
        self._saved.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        again = self.event.is_set()
        self.signum = signum
        self.event.set()
        if not self._defer or again:
            self.raise_now()

    def raise_now(self) -> None:
        if self.signum == signal.SIGTERM:
            raise Terminated("terminated")
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def between_batches(self) -> Iterator[threading.Event]:
        """Within this block a signal only sets the returned event; it is raised at the end."""
        self._defer += 1
        try:
            yield self.event
        finally:
            self._defer -= 1
        if self.event.is_set() and not self._defer:
            self.raise_now()


def run_embedding(
    work: Callable[[threading.Event, Callable[[int, int], None]], Any],
    *,
    signals: StopSignals,
    err: TextIO,
    label: str,
    unit: str,
    show: bool,
) -> Any:
    """Run ``work(stop, progress)`` with a progress line and signals held between batches."""
    bar = ProgressLine(err, label, unit, enabled=show)
    try:
        with signals.between_batches() as stop:
            return work(stop, bar)
    finally:
        bar.close()
