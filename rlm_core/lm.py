"""Language-model clients behind one small protocol.

Rules this module keeps:

* An ``LM`` takes a list of chat messages (``{"role": "user"|"assistant", "content": str}``),
  an optional system prompt and an optional ``max_tokens``, and returns an ``LMResponse``:
  the text, token ``Usage``, the stop reason and the cost in USD (0.0 when unknown).
* Every client has a sync ``complete`` and an async ``acomplete``.
* The fakes (``ScriptedLM``, ``FunctionLM``) ship in the library so users can test their own
  agents offline; they record every request they receive.
* Clients are passed in as objects; nothing here looks a backend up by name.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from memory.errors import LMResponseError

__all__ = [
    "LM",
    "FunctionLM",
    "LMRequest",
    "LMResponse",
    "ScriptedLM",
    "Usage",
]

ChatMessage = dict[str, Any]


@dataclass
class Usage:
    """Token counts of one call (or a sum of calls)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
        )

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
        )

    def to_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
        }


@dataclass
class LMResponse:
    """What one model call returned."""

    text: str
    usage: Usage = field(default_factory=Usage)
    stop_reason: str = "end_turn"
    model: str = ""
    cost_usd: float = 0.0
    raw: Any = None


@dataclass
class LMRequest:
    """One request as a fake LM received it (for assertions in tests)."""

    messages: list[ChatMessage]
    system: str | None
    max_tokens: int | None

    @property
    def prompt(self) -> str:
        """The text of the last user message."""
        for m in reversed(self.messages):
            if m.get("role") == "user":
                c = m.get("content")
                return c if isinstance(c, str) else str(c)
        return ""


@runtime_checkable
class LM(Protocol):
    """The one seam to a language model."""

    name: str

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        system: str | None = None,
        max_tokens: int | None = None,
    ) -> LMResponse: ...

    async def acomplete(
        self,
        messages: Sequence[ChatMessage],
        *,
        system: str | None = None,
        max_tokens: int | None = None,
    ) -> LMResponse: ...


def _estimate_tokens(text: str) -> int:
    # ~4 characters per token: good enough for fakes, whose budgets must still add up.
    return max(1, (len(text) + 3) // 4) if text else 0


def _fake_usage(messages: Sequence[ChatMessage], system: str | None, text: str) -> Usage:
    prompt = (system or "") + "".join(str(m.get("content", "")) for m in messages)
    return Usage(input_tokens=_estimate_tokens(prompt), output_tokens=_estimate_tokens(text))


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
        self, messages: Sequence[ChatMessage], system: str | None, max_tokens: int | None
    ) -> LMRequest:
        req = LMRequest([dict(m) for m in messages], system, max_tokens)
        with self._lock:
            self.requests.append(req)
        return req

    def _wrap(self, req: LMRequest, out: str | LMResponse) -> LMResponse:
        if isinstance(out, LMResponse):
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
    ) -> LMResponse:
        req = self._record(messages, system, max_tokens)
        return self._wrap(req, self._produce(req))

    async def acomplete(
        self,
        messages: Sequence[ChatMessage],
        *,
        system: str | None = None,
        max_tokens: int | None = None,
    ) -> LMResponse:
        return await asyncio.to_thread(
            self.complete, messages, system=system, max_tokens=max_tokens
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
