"""The fakes of the LM seam, shipped in the library: ``ScriptedLM`` and ``FunctionLM``.

Rules this module keeps:

* A fake answers from a script (a queue of replies) or a function, records every request it
  receives (thread-safe) and reports usage estimated by ``count_tokens``, so users test their
  own agents offline and assert on what the model was asked.
* They implement the same ``LM`` protocol as the real clients (sync and async) and import no
  SDK.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from memory.errors import LMResponseError
from rlm_core.lm.types import ChatMessage, LMRequest, LMResponse, Usage, content_text, count_tokens

__all__ = ["FunctionLM", "Reply", "ScriptedLM"]


def _fake_usage(messages: Sequence[ChatMessage], system: str | None, text: str) -> Usage:
    prompt = (system or "") + "".join(content_text(m.get("content")) for m in messages)
    return Usage(input_tokens=count_tokens(prompt), output_tokens=count_tokens(text))


Reply = str | LMResponse | Callable[[LMRequest], "str | LMResponse"]


class _FakeBase:
    """Shared bookkeeping of the fakes: request log (thread-safe) and usage estimation."""

    name: str

    def __init__(self, name: str, cost_per_call_usd: float = 0.0) -> None:
        self.name = name
        self.cost_per_call_usd = cost_per_call_usd
        self.requests: list[LMRequest] = []
        self._lock = threading.Lock()

    def _record(
        self,
        messages: Sequence[ChatMessage],
        system: str | None,
        max_tokens: int | None,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> LMRequest:
        req = LMRequest(
            [dict(m) for m in messages], system, max_tokens, list(tools) if tools else None
        )
        with self._lock:
            self.requests.append(req)
        return req

    def _wrap(self, req: LMRequest, out: str | LMResponse) -> LMResponse:
        if isinstance(out, LMResponse):
            if out.usage.total_tokens == 0:
                out.usage = _fake_usage(req.messages, req.system, out.text)
            if not out.model:
                out.model = self.name
            return out
        if not isinstance(out, str):
            raise LMResponseError(f"{self.name}: a reply must be str or LMResponse, got {type(out).__name__}")
        return LMResponse(
            text=out,
            usage=_fake_usage(req.messages, req.system, out),
            model=self.name,
            cost_usd=self.cost_per_call_usd,
        )

    @property
    def calls(self) -> int:
        return len(self.requests)

    def _produce(self, req: LMRequest) -> str | LMResponse:
        raise NotImplementedError

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        system: str | None = None,
        max_tokens: int | None = None,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> LMResponse:
        req = self._record(messages, system, max_tokens, tools)
        return self._wrap(req, self._produce(req))

    async def acomplete(
        self,
        messages: Sequence[ChatMessage],
        *,
        system: str | None = None,
        max_tokens: int | None = None,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> LMResponse:
        return await asyncio.to_thread(
            self.complete, messages, system=system, max_tokens=max_tokens, tools=tools
        )


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
