"""``OpenAICompatibleLM``: the LM protocol over a ``/chat/completions`` endpoint.

For local servers (Ollama, vLLM, llama.cpp, LM Studio) and hosted OpenAI-compatible APIs,
over plain HTTP with ``httpx``.

Rules this module keeps:

* The key is optional (local servers take none): ``api_key=`` or ``OPENAI_API_KEY``, sent as
  ``Authorization: Bearer`` when present.
* Retries are tenacity's: 408/409/429/5xx answers and broken transfers are retried with
  jittered exponential backoff (a ``retry-after`` header sets the wait); other 4xx become
  ``LMResponseError`` with the server's message. A refused connection is retried once by the
  httpx transport and then reported at once as "is the server at URL running?": waiting
  longer does not start a server.
* The HTTP seam is injectable: ``transport=`` (e.g. ``httpx.MockTransport``, used by both the
  sync and the async client) or ready-made ``http_client=`` / ``async_http_client=``.
* The system prompt goes first as a ``{"role": "system"}`` message.
* Usage comes from the response: ``prompt_tokens`` minus the cached part is ``input_tokens``,
  ``prompt_tokens_details.cached_tokens`` is ``cache_read_tokens``. A server that reports no
  usage gets ``BaseLM``'s ``count_tokens`` estimate, so token budgets still hold.
* ``finish_reason`` is mapped onto the shared stop-reason vocabulary (``stop`` -> ``end_turn``,
  ``length`` -> ``max_tokens``, ``tool_calls`` -> ``tool_use``, ``content_filter`` ->
  ``refusal``).
* Cost is 0.0 unless ``prices=`` names the model (local models are free; no warning then).
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
)

from memory.errors import ConfigError, LMResponseError, LMTransientError
from rlm_core.lm.base import BaseLM
from rlm_core.lm.loops import PerLoop
from rlm_core.lm.pricing import PricesArg, PriceTable
from rlm_core.lm.retry import RetryPolicy, Transient, is_transient_status, parse_retry_after
from rlm_core.lm.types import (
    ChatMessage,
    LMRequest,
    LMResponse,
    ToolCall,
    Usage,
    content_text,
    count_tokens,
)

__all__ = ["ContextWindowWarning", "OpenAICompatibleLM"]


class ContextWindowWarning(UserWarning):
    """The server cut the prompt to a context window smaller than it."""

_FINISH = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


class OpenAICompatibleLM(BaseLM):
    """A model served by an OpenAI-compatible ``chat/completions`` endpoint."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str = "http://127.0.0.1:11434/v1",
        api_key: str | None = None,
        max_tokens: int = 4096,
        temperature: float | None = None,
        max_retries: int = 4,
        timeout_s: float = 120.0,
        prices: PricesArg = None,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 60.0,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, got {base_url!r}")
        # Only an explicit table prices anything: a local model missing from it is not news.
        table = PriceTable(model, prices, defaults={}, warn_unknown=prices is not None)
        super().__init__(model, max_tokens=max_tokens, max_retries=max_retries, prices=table)
        self.base_url = base_url.rstrip("/")
        self.temperature = temperature
        self.timeout_s = timeout_s
        self.retry = RetryPolicy(max_retries, backoff_base_s, backoff_max_s)
        key = api_key or os.environ.get("OPENAI_API_KEY")
        self._headers = {"Content-Type": "application/json"}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self._url = f"{self.base_url}/chat/completions"
        self._transport = transport
        if http_client is not None:
            self._client = http_client
        else:
            sync_transport = transport if isinstance(transport, httpx.BaseTransport) else httpx.HTTPTransport(retries=1)
            self._client = httpx.Client(timeout=timeout_s, headers=self._headers, transport=sync_transport)
        self._given_async = async_http_client
        self._async_clients: PerLoop[httpx.AsyncClient] = PerLoop()
        self._context_warned = False

    def __repr__(self) -> str:
        return f"OpenAICompatibleLM(model={self.model!r}, base_url={self.base_url!r})"

    requires_message = True

    def _body(self, req: LMRequest) -> dict[str, Any]:
        chat: list[dict[str, Any]] = []
        if req.system:
            chat.append({"role": "system", "content": req.system})
        for m in req.messages:
            chat.extend(_to_openai(m))
        body: dict[str, Any] = {
            "model": self.model,
            "messages": chat,
            "max_tokens": req.max_tokens or self.max_tokens,
            "stream": False,
        }
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if req.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t["name"],
                        "description": t.get("description", ""),
                        "parameters": t.get("input_schema", {"type": "object"}),
                    },
                }
                for t in req.tools
            ]
        return body

    def _check(self, resp: httpx.Response) -> Any:
        """The decoded body of a 2xx response; raises ``Transient`` or ``LMResponseError``."""
        if resp.status_code >= 400:
            message = _error_message(resp)
            if is_transient_status(resp.status_code):
                raise Transient(
                    f"HTTP {resp.status_code}: {message}", parse_retry_after(resp.headers)
                )
            raise LMResponseError(f"{self.name}: HTTP {resp.status_code}: {message}")
        try:
            return resp.json()
        except json.JSONDecodeError as exc:
            raise LMResponseError(
                f"{self.name}: the server at {self.base_url} answered with non-JSON: "
                f"{resp.text[:200]!r}"
            ) from exc

    def _response(self, body: dict[str, Any], data: Any) -> LMResponse:
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            finish = choice.get("finish_reason")
            calls = [
                ToolCall(
                    str(c.get("id") or f"call_{i}"),
                    c["function"]["name"],
                    _arguments(c["function"].get("arguments")),
                )
                for i, c in enumerate(choice["message"].get("tool_calls") or [])
            ]
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise LMResponseError(
                f"{self.name}: response has no choices[0].message: {str(data)[:200]}"
            ) from exc
        u = data.get("usage") or {}
        if u:
            prompt = int(u.get("prompt_tokens") or 0)
            cached = int((u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
            self._check_context(prompt, body)
            usage = Usage(
                input_tokens=max(0, prompt - cached),
                output_tokens=int(u.get("completion_tokens") or 0),
                cache_read_tokens=cached,
            )
        else:
            usage = Usage()  # estimated by BaseLM._finish
        return LMResponse(
            text=text,
            usage=usage,
            stop_reason=_FINISH.get(finish, finish) if finish else "unknown",
            model=str(data.get("model") or self.model),
            raw=data,
            tool_calls=calls,
        )

    def _check_context(self, prompt_tokens: int, body: dict[str, Any]) -> None:
        """Warn, once, when the server read far fewer prompt tokens than were sent: it cut the
        prompt to a context window smaller than it (Ollama's default is a few thousand tokens,
        and the root model's first prompt alone is about 1,500)."""
        if self._context_warned or prompt_tokens <= 0:
            return
        sent = count_tokens(_sent_text(body))
        if sent >= 1024 and prompt_tokens < sent // 2:
            self._context_warned = True
            warnings.warn(
                f"{self.name}: the server at {self.base_url} read {prompt_tokens:,} prompt tokens "
                f"of about {sent:,} sent: its context window is smaller than the prompt and it "
                "dropped the rest. Give the model a larger context (Ollama: OLLAMA_CONTEXT_LENGTH="
                "16384 or num_ctx; llama.cpp server: --ctx-size 16384).",
                ContextWindowWarning, stacklevel=2,
            )

    def _call(self, req: LMRequest) -> LMResponse:
        body = self._body(req)
        try:
            for attempt in Retrying(**self._retrying()):
                with attempt:
                    resp = self._send(lambda: self._client.post(self._url, json=body, headers=self._headers))
                    return self._response(body, self._check(resp))
        except RetryError as exc:
            raise self._give_up(exc) from exc.last_attempt.exception()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _acall(self, req: LMRequest) -> LMResponse:
        body = self._body(req)
        client = self._async_client()
        try:
            async for attempt in AsyncRetrying(**self._retrying()):
                with attempt:
                    try:
                        resp = await client.post(self._url, json=body, headers=self._headers)
                    except httpx.TransportError as exc:
                        raise self._transport_error(exc) from exc
                    return self._response(body, self._check(resp))
        except RetryError as exc:
            raise self._give_up(exc) from exc.last_attempt.exception()
        raise AssertionError("unreachable")  # pragma: no cover

    # --- retries ------------------------------------------------------------------------------

    def _retrying(self) -> dict[str, Any]:
        return {"stop": stop_after_attempt(self.retry.max_retries + 1),
                "retry": retry_if_exception_type(Transient), "wait": self._wait}  # fmt: skip

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        return self.retry.delay(state.attempt_number - 1, getattr(exc, "retry_after_s", None))

    def _send(self, post: Any) -> httpx.Response:
        try:
            return post()  # type: ignore[no-any-return]
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc

    def _transport_error(self, exc: httpx.TransportError) -> Exception:
        if isinstance(exc, httpx.ConnectError):
            return LMTransientError(
                f"{self.name}: cannot connect to {self.base_url}: is the server at {self.base_url} "
                f"running? ({exc})"
            )
        return Transient(f"the connection to {self.base_url} failed: {exc!r}")

    def _give_up(self, exc: RetryError) -> LMTransientError:
        last = exc.last_attempt.exception()
        return self.gave_up(exc.last_attempt.attempt_number, getattr(last, "message", last),
                            f"the server at {self.base_url}", "overloaded or failing")  # fmt: skip

    def _async_client(self) -> httpx.AsyncClient:
        if self._given_async is not None:
            return self._given_async
        t = self._transport if isinstance(self._transport, httpx.AsyncBaseTransport) else None
        return self._async_clients.get(
            lambda: httpx.AsyncClient(timeout=self.timeout_s, headers=self._headers,
                                      transport=t or httpx.AsyncHTTPTransport(retries=1))
        )

    def close(self) -> None:
        """Close the sync HTTP connections."""
        self._client.close()

    async def aclose(self) -> None:
        """Close the running event loop's HTTP connections (others go with their loops)."""
        client = self._async_clients.pop_current()
        if client is not None:
            await client.aclose()


def _sent_text(body: dict[str, Any]) -> str:
    """The text of every message a request sends (for token estimates)."""
    return "".join(content_text(m.get("content")) for m in body["messages"])


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw or "{}")
    except (TypeError, json.JSONDecodeError):
        return {"_raw": raw}
    return value if isinstance(value, dict) else {"_value": value}


def _to_openai(m: ChatMessage) -> list[dict[str, Any]]:
    """One Anthropic-shaped message as chat-completions messages.

    Assistant ``tool_use`` blocks become ``tool_calls``; user ``tool_result`` blocks become
    ``role: tool`` messages, which must directly follow the assistant turn that asked.
    """
    role, content = m.get("role"), m.get("content")
    if not isinstance(content, list):
        return [{"role": role, "content": content}]
    if role == "assistant":
        out: dict[str, Any] = {"role": "assistant", "content": content_text(content) or None}
        calls = [
            {
                "id": b.get("id"),
                "type": "function",
                "function": {"name": b.get("name"), "arguments": json.dumps(b.get("input") or {})},
            }
            for b in content
            if isinstance(b, dict) and b.get("type") == "tool_use"
        ]
        if calls:
            out["tool_calls"] = calls
        return [out]
    msgs: list[dict[str, Any]] = [
        {"role": "tool", "tool_call_id": b.get("tool_use_id"), "content": content_text(b.get("content", ""))}
        for b in content
        if isinstance(b, dict) and b.get("type") == "tool_result"
    ]
    text = "".join(
        str(b.get("text", "")) for b in content if isinstance(b, dict) and b.get("type") == "text"
    )
    if text or not msgs:
        msgs.append({"role": role, "content": text})
    return msgs


def _error_message(resp: httpx.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.text[:500] or resp.reason_phrase
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            return str(err.get("message") or err)[:500]
        return str(err)[:500]
    return str(data)[:500]
