"""``BaseLM``: the one request path of every LM client in rlm-memory (real ones and fakes).

Rules this module keeps:

* ``complete`` and ``acomplete`` are written here once. The arguments become one
  ``LMRequest`` (messages copied, tools listed); a client's ``_call`` (or ``_acall``) sends it,
  with the client's own retries, and returns an ``LMResponse``; ``_finish`` then does the
  usage accounting the same way for every client: a response without usage gets the
  ``count_tokens`` estimate of what was sent and what came back, one without a model name
  gets the client's, and a client with a ``PriceTable`` prices it.
* ``_acall`` defaults to ``_call`` in a worker thread: a client without an async transport
  never blocks the event loop.
* Settings are checked once, when the client is made: ``max_tokens`` at least 1,
  ``max_retries`` 0 or more (``ConfigError`` naming the setting).
* Real clients (``requires_message``) refuse a request with nothing to send before any
  network traffic (``ValidationError``); a failure that outlived the retries is one
  ``LMTransientError`` (``gave_up``) saying how many attempts were made and what to do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Self

from memory.errors import ConfigError, LMTransientError, ValidationError
from rlm_core.lm.pricing import PriceTable
from rlm_core.lm.types import ChatMessage, LMRequest, LMResponse, Usage, content_text, count_tokens

__all__ = ["BaseLM", "estimate_usage"]


def estimate_usage(req: LMRequest, text: str) -> Usage:
    """The ``count_tokens`` estimate of a call: the system prompt and messages sent, ``text`` back."""
    sent = (req.system or "") + "".join(content_text(m.get("content")) for m in req.messages)
    return Usage(input_tokens=count_tokens(sent), output_tokens=count_tokens(text))


class BaseLM:
    """The shared request path (see the module rules); subclasses implement ``_call``."""

    name: str
    model: str
    #: Refuse a request without a user or assistant message before sending it.
    requires_message = False

    def __init__(
        self,
        model: str,
        *,
        max_tokens: int | None = None,
        max_retries: int | None = None,
        prices: PriceTable | None = None,
    ) -> None:
        if max_tokens is not None and max_tokens < 1:
            raise ConfigError(f"max_tokens must be at least 1, got {max_tokens}")
        if max_retries is not None and max_retries < 0:
            raise ConfigError(f"max_retries must be 0 or more, got {max_retries}")
        self.model = model
        self.name = model
        self.prices = prices
        if max_tokens is not None:
            self.max_tokens = max_tokens
        if max_retries is not None:
            self.max_retries = max_retries

    # --- the protocol -----------------------------------------------------------------------

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        system: str | None = None,
        max_tokens: int | None = None,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> LMResponse:
        req = self._request(messages, system, max_tokens, tools)
        return self._finish(req, self._call(req))

    async def acomplete(
        self,
        messages: Sequence[ChatMessage],
        *,
        system: str | None = None,
        max_tokens: int | None = None,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> LMResponse:
        req = self._request(messages, system, max_tokens, tools)
        return self._finish(req, await self._acall(req))

    # --- what a client implements -----------------------------------------------------------

    def _call(self, req: LMRequest) -> LMResponse:
        raise NotImplementedError

    async def _acall(self, req: LMRequest) -> LMResponse:
        return await asyncio.to_thread(self._call, req)

    # --- shared steps -----------------------------------------------------------------------

    def _request(
        self,
        messages: Sequence[ChatMessage],
        system: str | None,
        max_tokens: int | None,
        tools: Sequence[dict[str, Any]] | None,
    ) -> LMRequest:
        req = LMRequest([dict(m) for m in messages], system, max_tokens, list(tools) if tools else None)
        if self.requires_message and not any(m.get("role") != "system" for m in req.messages):
            raise ValidationError(f"{self.name}: nothing to send: give at least one user message")
        return req

    def _finish(self, req: LMRequest, resp: LMResponse) -> LMResponse:
        if resp.usage.total_tokens == 0:
            resp.usage = estimate_usage(req, resp.text)
        if not resp.model:
            resp.model = self.model
        if self.prices is not None and not resp.cost_usd:
            resp.cost_usd = self.prices.cost(resp.usage, self.model)
        return resp

    def gave_up(self, attempts: int, detail: object, who: str, why: str) -> LMTransientError:
        """The error of a call whose transient failures outlived its retries."""
        return LMTransientError(
            f"{self.name} call failed after {attempts} attempt(s): {detail}; {who} is {why}: "
            "try again later, lower the request rate, or raise max_retries"
        )

    def close(self) -> None:
        """Close the sync connections (nothing to close by default)."""

    async def aclose(self) -> None:
        """Close the running event loop's connections (nothing to close by default)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
