"""One async HTTP client per running event loop.

Rules this module keeps:

* An async connection pool belongs to the event loop that opened it; using it from another
  loop fails. Callers may run many loops over time (``asyncio.run`` per call) or several at
  once (one per thread), so clients are kept per loop.
* Entries of closed loops are dropped on the next lookup. A pooled connection holds its
  loop, so a weak-keyed map would never let go of either; dropping the entry leaves the
  pair to the garbage collector. At most one client per *live* loop is ever held.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["PerLoop"]

T = TypeVar("T")


class PerLoop(Generic[T]):
    """``get(factory)`` returns the running loop's object, making it on first use."""

    def __init__(self) -> None:
        self._items: dict[int, tuple[asyncio.AbstractEventLoop, T]] = {}
        self._lock = threading.Lock()

    def get(self, factory: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        with self._lock:
            for key in [k for k, (lp, _) in self._items.items() if lp.is_closed()]:
                del self._items[key]
            entry = self._items.get(id(loop))
            if entry is None or entry[0] is not loop:
                entry = (loop, factory())
                self._items[id(loop)] = entry
        return entry[1]

    def pop_current(self) -> T | None:
        """Forget and return the running loop's object (for the caller to close)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._items.pop(id(loop), None)
        return entry[1] if entry is not None and entry[0] is loop else None

    def __len__(self) -> int:
        return len(self._items)
