"""``AnthropicLM``: the LM protocol on the official ``anthropic`` SDK (Messages API).

Rules this module keeps:

* The API key comes from ``api_key=`` or ``ANTHROPIC_API_KEY``; without either the
  constructor raises ``MissingAPIKeyError`` naming the variable, before any request.
  A ready-made SDK ``client=`` (and ``async_client=``) brings its own credentials.
* Retries are the SDK's own (``max_retries``, also set on a ready-made client): 408/409,
  429, 5xx (529 included), timeouts and connection errors are retried with its backoff,
  honouring ``retry-after``. Other 4xx become ``LMResponseError`` carrying the server's
  message; a failure that outlived its retries becomes ``LMTransientError`` saying how many
  attempts were made and what to do.
* The system prompt is sent as one text block marked ``cache_control: ephemeral`` when
  ``cache_system`` is on, so the stable prefix of every call is read from the prompt cache.
  ``"system"`` messages in the list are appended to it. ``cache_conversation`` also marks
  the whole request (top-level ``cache_control``) so a loop that only appends turns reads
  its earlier turns from the cache too; off by default, as cache writes cost 1.25x input.
* Usage maps ``cache_creation_input_tokens`` to ``cache_write_tokens`` and
  ``cache_read_input_tokens`` to ``cache_read_tokens``; cost comes from ``PriceTable``.
* Async calls use one ``AsyncAnthropic`` per event loop (``rlm_core.lm.loops``): an SDK
  client's connection pool belongs to the loop that opened it.
"""

from __future__ import annotations

import os
from typing import Any

import anthropic

from memory.errors import ConfigError, LMResponseError, LMTransientError, MissingAPIKeyError
from rlm_core.lm.base import BaseLM
from rlm_core.lm.loops import PerLoop
from rlm_core.lm.pricing import PricesArg, PriceTable
from rlm_core.lm.retry import is_transient_status
from rlm_core.lm.types import LMRequest, LMResponse, ToolCall, Usage

__all__ = ["AnthropicLM"]

_CACHE_CONTROL = {"type": "ephemeral"}


class AnthropicLM(BaseLM):
    """A Claude model behind the ``LM`` protocol.

    >>> lm = AnthropicLM("claude-sonnet-4-5", max_tokens=2048)  # doctest: +SKIP
    >>> lm.complete([{"role": "user", "content": "hi"}], system="Be brief.").text  # doctest: +SKIP
    """

    def __init__(
        self,
        model: str = "claude-sonnet-4-5",
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_tokens: int = 4096,
        temperature: float | None = None,
        max_retries: int = 4,
        timeout_s: float = 120.0,
        prices: PricesArg = None,
        cache_system: bool = True,
        cache_conversation: bool = False,
        client: anthropic.Anthropic | None = None,
        async_client: anthropic.AsyncAnthropic | None = None,
    ) -> None:
        super().__init__(model, max_tokens=max_tokens, max_retries=max_retries, prices=PriceTable(model, prices))
        self.temperature = temperature
        self.cache_system = cache_system
        self.cache_conversation = cache_conversation
        self.timeout_s = timeout_s
        self._base_url = base_url
        self._api_key: str | None = None
        if client is None and async_client is None:
            key = api_key or os.environ.get("ANTHROPIC_API_KEY")
            if not key:
                raise MissingAPIKeyError("ANTHROPIC_API_KEY", "Anthropic")
            self._api_key = key
            client = anthropic.Anthropic(
                api_key=key, base_url=base_url, max_retries=max_retries, timeout=timeout_s
            )
        self._client = client.with_options(max_retries=max_retries) if client is not None else None
        self._async_given = (
            async_client.with_options(max_retries=max_retries) if async_client is not None else None
        )
        self._async_clients: PerLoop[anthropic.AsyncAnthropic] = PerLoop()

    def __repr__(self) -> str:
        return f"AnthropicLM(model={self.model!r}, max_tokens={self.max_tokens})"

    # --- request building ------------------------------------------------------------------

    requires_message = True

    def _params(self, req: LMRequest) -> dict[str, Any]:
        system_parts = [req.system] if req.system else []
        chat: list[dict[str, Any]] = []
        for m in req.messages:
            if m.get("role") == "system":
                system_parts.append(str(m.get("content", "")))
            else:
                chat.append({"role": m.get("role"), "content": m.get("content")})
        params: dict[str, Any] = {
            "model": self.model,
            "max_tokens": req.max_tokens or self.max_tokens,
            "messages": chat,
        }
        if system_parts:
            block: dict[str, Any] = {"type": "text", "text": "\n\n".join(system_parts)}
            if self.cache_system:
                block["cache_control"] = dict(_CACHE_CONTROL)
            params["system"] = [block]
        if req.tools:
            params["tools"] = [dict(t) for t in req.tools]
        if self.cache_conversation:
            params["cache_control"] = dict(_CACHE_CONTROL)
        if self.temperature is not None:
            # SDK 2.x dropped the argument (recent models reject sampling parameters with
            # 400); older models still take it in the body.
            params["extra_body"] = {"temperature": self.temperature}
        return params

    def _response(self, msg: Any) -> LMResponse:
        try:
            # Only text blocks are the answer; tool_use blocks become ToolCalls, and every
            # block is kept in ``content`` so the turn can be sent back verbatim.
            text = "".join(b.text for b in msg.content if getattr(b, "type", None) == "text")
            calls = [
                ToolCall(b.id, b.name, dict(b.input or {}))
                for b in msg.content
                if getattr(b, "type", None) == "tool_use"
            ]
            content = [
                b.model_dump(exclude_none=True) if hasattr(b, "model_dump") else dict(b)
                for b in msg.content
            ]
            u = msg.usage
            usage = Usage(
                input_tokens=u.input_tokens or 0,
                output_tokens=u.output_tokens or 0,
                cache_read_tokens=getattr(u, "cache_read_input_tokens", None) or 0,
                cache_write_tokens=getattr(u, "cache_creation_input_tokens", None) or 0,
            )
        except (AttributeError, TypeError) as exc:
            raise LMResponseError(
                f"{self.name}: the response is not a Messages API message: {str(msg)[:200]}"
            ) from exc
        return LMResponse(
            text=text,
            usage=usage,
            stop_reason=msg.stop_reason or "unknown",
            model=msg.model or self.model,
            raw=msg,
            tool_calls=calls,
            content=content,
        )

    def _translate(self, exc: Exception) -> Exception:
        """Map an SDK exception (after the SDK's own retries) to an ``LMError``."""
        attempts = f"after {self.max_retries + 1} attempt(s)"
        if isinstance(exc, anthropic.APIStatusError):
            status = exc.status_code
            message = exc.api_message or exc.message
            if is_transient_status(status):
                return self.gave_up(self.max_retries + 1, f"HTTP {status}: {message}", "the service",
                                    "overloaded or rate-limited")  # fmt: skip
            hint = ""
            if status in (401, 403):
                hint = " (check ANTHROPIC_API_KEY or the api_key argument)"
            return LMResponseError(f"{self.name}: HTTP {status}: {message}{hint}")
        if isinstance(exc, anthropic.APIConnectionError):
            where = self._base_url or "the Anthropic API"
            return LMTransientError(
                f"{self.name} call failed {attempts}: cannot reach {where} ({exc}): is the "
                f"network up{' and the server at ' + where + ' running' if self._base_url else ''}?"
            )
        if isinstance(exc, anthropic.AnthropicError):
            return LMResponseError(f"{self.name}: unusable response: {exc}")
        return exc

    # --- sending ----------------------------------------------------------------------------

    def _call(self, req: LMRequest) -> LMResponse:
        client = self._client
        if client is None:
            raise ConfigError(
                f"{self.name}: built with async_client only; use acomplete or pass client="
            )
        try:
            msg = client.messages.create(**self._params(req))
        except anthropic.AnthropicError as exc:
            raise self._translate(exc) from exc
        return self._response(msg)

    async def _acall(self, req: LMRequest) -> LMResponse:
        client = self._async_client()
        if client is None:
            # A ready-made sync client without an async twin: keep the loop free anyway.
            return await super()._acall(req)
        try:
            msg = await client.messages.create(**self._params(req))
        except anthropic.AnthropicError as exc:
            raise self._translate(exc) from exc
        return self._response(msg)

    def _async_client(self) -> anthropic.AsyncAnthropic | None:
        if self._async_given is not None:
            return self._async_given
        if self._api_key is None:
            return None
        key = self._api_key
        return self._async_clients.get(
            lambda: anthropic.AsyncAnthropic(
                api_key=key, base_url=self._base_url, max_retries=self.max_retries,
                timeout=self.timeout_s,
            )
        )

    def close(self) -> None:
        """Close the sync HTTP connections."""
        if self._client is not None:
            self._client.close()

    async def aclose(self) -> None:
        """Close the running event loop's HTTP connections (others go with their loops)."""
        client = self._async_clients.pop_current()
        if client is not None:
            await client.close()
