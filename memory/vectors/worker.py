"""The background embedding thread of a long-lived process.

Rules this module keeps:

* The thread drains the durable queue (``memory.vectors.queue``) in batches sized to take
  about ``batch_s`` seconds, checking its stop flag between batches.
* ``stop()`` returns only once the thread has ended: the batch in hand is finished (a short
  wait, by the rule above), never abandoned. A process must not exit while a thread is
  inside the embedding runtime: the interpreter tears the runtime down under it and the
  process aborts (``terminate called without an active exception``, status 134). A Ctrl-C
  during that wait is held until the thread has ended, then raised.
* On start it queues the items another encoder embedded (``EmbeddingQueue.enqueue_stale``),
  so a long-lived process re-embeds a store after a change of encoder.
* Failures are logged and retried with back-off; the queue keeps the items meanwhile. It
  wakes when this process enqueues something and polls every ``poll_s`` for items that other
  processes enqueued.
"""

from __future__ import annotations

import logging
import threading
import time

from memory.vectors.index import import_numpy_first
from memory.vectors.queue import EmbeddingQueue

__all__ = ["EmbeddingWorker"]

log = logging.getLogger(__name__)


class EmbeddingWorker:
    """A daemon thread that drains the queue in the background (see the module notes)."""

    def __init__(
        self, queue: EmbeddingQueue, *, batch: int = 256, poll_s: float = 2.0, batch_s: float = 1.0
    ) -> None:
        self.queue = queue
        self.batch = batch
        self.poll_s = poll_s
        self.batch_s = batch_s
        self.last_error: BaseException | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rlmem-embed", daemon=True)
        queue.on_enqueue(self._wake.set)
        import_numpy_first()  # the thread and this one would otherwise race to import it
        self._thread.start()

    def _run(self) -> None:
        delay = self.poll_s
        stale_checked = False
        while not self._stop.is_set():
            self._idle.clear()
            try:
                if not stale_checked:  # items another encoder embedded: embed them again
                    for tier in list(self.queue.sources):
                        self.queue.enqueue_stale(tier)
                    stale_checked = True
                self.queue.drain(batch=self.batch, stop=self._stop, batch_s=self.batch_s)
                self.last_error = None
                delay = self.poll_s
            except Exception as exc:  # keep the thread alive: the items stay queued
                self.last_error = exc
                log.warning("background embedding failed, will retry: %s", exc)
                delay = min(delay * 2, 60.0)
            self._idle.set()
            self._wake.wait(delay)
            self._wake.clear()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until the queue was found empty once after this call (for tests and tools)."""
        self._idle.clear()
        self._wake.set()
        return self._idle.wait(timeout)

    def stop(self, warn_after_s: float = 5.0) -> None:
        """Stop after the batch in hand and wait for the thread to end (see the module notes)."""
        self._stop.set()
        self._wake.set()
        interrupted: KeyboardInterrupt | None = None
        t0 = time.monotonic()
        warned = False
        while self._thread.is_alive():
            try:
                self._thread.join(0.1)
            except KeyboardInterrupt as exc:  # the thread is still in the runtime: wait it out
                interrupted = exc
            if not warned and time.monotonic() - t0 > warn_after_s:
                warned = True
                log.warning("waiting for the embedding batch in hand to finish")
        if interrupted is not None:
            raise interrupted
