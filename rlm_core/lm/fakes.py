"""The fakes of the LM seam, shipped in the library: ``ScriptedLM`` and ``FunctionLM``.

Rules this module keeps:

* A fake answers from a script (a queue of replies) or a function, records every request it
  receives (thread-safe) and reports usage estimated by ``count_tokens``, so users test their
  own agents offline and assert on what the model was asked.
* They take the same request path as the real clients (``BaseLM``: sync and async, the same
  usage accounting) and import no SDK.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable

from memory.errors import LMResponseError
from rlm_core.lm.base import BaseLM
from rlm_core.lm.types import LMRequest, LMResponse

__all__ = ["FunctionLM", "Reply", "ScriptedLM"]


Reply = str | LMResponse | Callable[[LMRequest], "str | LMResponse"]


class _FakeBase(BaseLM):
    """Shared bookkeeping of the fakes: the request log (thread-safe); usage is ``BaseLM``'s."""

    def __init__(self, name: str, cost_per_call_usd: float = 0.0) -> None:
        super().__init__(name)
        self.cost_per_call_usd = cost_per_call_usd
        self.requests: list[LMRequest] = []
        self._lock = threading.Lock()

    @property
    def calls(self) -> int:
        return len(self.requests)

    def _produce(self, req: LMRequest) -> str | LMResponse:
        raise NotImplementedError

    def _call(self, req: LMRequest) -> LMResponse:
        with self._lock:
            self.requests.append(req)
        out = self._produce(req)
        if isinstance(out, LMResponse):
            return out
        if not isinstance(out, str):
            raise LMResponseError(f"{self.name}: a reply must be str or LMResponse, got {type(out).__name__}")
        return LMResponse(text=out, model=self.name, cost_usd=self.cost_per_call_usd)


class ScriptedLM(_FakeBase):
    """A queue of replies, answered in order; records every request in ``.requests``.

    A reply is a string, an ``LMResponse``, or a callable taking the ``LMRequest`` and
    returning either. When the queue is empty, ``default`` answers (if given); otherwise
    ``LMResponseError`` says the script ran out.
    """

    def __init__(
        self,
        replies: Iterable[Reply] = (),
        *,
        default: Reply | None = None,
        name: str = "scripted",
        cost_per_call_usd: float = 0.0,
    ) -> None:
        super().__init__(name, cost_per_call_usd)
        self._queue: deque[Reply] = deque(replies)
        self.default = default

    def add(self, *replies: Reply) -> None:
        with self._lock:
            self._queue.extend(replies)

    @property
    def remaining(self) -> int:
        return len(self._queue)

    def _produce(self, req: LMRequest) -> str | LMResponse:
        with self._lock:
            reply = self._queue.popleft() if self._queue else self.default
        if reply is None:
            raise LMResponseError(
                f"{self.name}: the script ran out of replies after {self.calls - 1} calls "
                "(add more replies or give default=...)"
            )
        return reply(req) if callable(reply) else reply


class FunctionLM(_FakeBase):
    """An LM whose replies come from ``fn(request) -> str | LMResponse``."""

    def __init__(
        self,
        fn: Callable[[LMRequest], str | LMResponse],
        *,
        name: str = "function",
        cost_per_call_usd: float = 0.0,
    ) -> None:
        super().__init__(name, cost_per_call_usd)
        self.fn = fn

    def _produce(self, req: LMRequest) -> str | LMResponse:
        return self.fn(req)
