"""A fake Anthropic Messages API on 127.0.0.1, for the real ``anthropic`` SDK to talk to.

Rules this module keeps:

* ``POST /v1/messages`` (non-streaming) answers with the JSON the SDK parses: ``id``,
  ``type: "message"``, ``role``, ``content: [{"type": "text", ...}]``, ``model``,
  ``stop_reason``, ``stop_sequence`` and ``usage`` with both cache counters.
* Like the real API it rejects a request without a key (``x-api-key`` or
  ``Authorization: Bearer``, which the SDK 2.x sends) with 401, and a body without
  ``model``, ``max_tokens`` or ``messages`` with 400; errors use the real error envelope
  ``{"type": "error", "error": {"type": ..., "message": ...}}``.
* Usage is counted at ~4 characters per token unless the reply gives its own. Prompt caching
  is simulated: the first time a system prefix marked ``cache_control`` is seen its tokens are
  cache writes, afterwards cache reads.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from ._http import FakeServerBase, Reply

__all__ = [
    "FakeAnthropicServer",
    "bad_request",
    "last_user_text",
    "overloaded",
    "rate_limited",
    "server_error",
]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def _tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4) if text else 0


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


def last_user_text(body: Mapping[str, Any]) -> str:
    """The text of the last user message of a Messages or chat-completions request body."""
    for m in reversed(body.get("messages") or []):
        if m.get("role") == "user":
            return _text(m.get("content"))
    return ""


def rate_limited(retry_after: float | None = None, message: str = "rate limited") -> Reply:
    """A 429, with a ``retry-after`` header (seconds) when given."""
    headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else {}
    return Reply(status=429, message=message, headers=headers)


def overloaded(message: str = "Overloaded") -> Reply:
    """A 529, Anthropic's status for an overloaded service."""
    return Reply(status=529, message=message)


def server_error(status: int = 500, message: str = "Internal server error") -> Reply:
    return Reply(status=status, message=message)


def bad_request(message: str = "invalid request") -> Reply:
    return Reply(status=400, message=message)


class FakeAnthropicServer(FakeServerBase):
    """The fake Messages API. Give ``server.url`` to ``AnthropicLM(base_url=...)``.

    Scripting: ``FakeAnthropicServer(["first answer", rate_limited(0), Reply(text=...)])``,
    ``server.add(...)``, ``handler=lambda body: ...`` (the request JSON in, a reply out) and
    ``default=`` for every request once the queue is empty. ``delay_s`` holds every answer back.
    """

    paths = ("/v1/messages",)

    def __init__(self, *args: Any, simulate_cache: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.simulate_cache = simulate_cache
        self._cached: set[str] = set()
        self._cache_lock = threading.Lock()

    def validate(self, body: Any) -> str | None:
        if not isinstance(body, dict):
            return "the request body must be a JSON object"
        if not isinstance(body.get("model"), str) or not body["model"]:
            return "model: Field required"
        if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
            return "max_tokens: Field required (an integer >= 1)"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "messages: at least one message is required"
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
                return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        system = body.get("system")
        if system is not None and not isinstance(system, str | list):
            return "system: Input should be a valid string or list of text blocks"
        return None

    def _usage(self, body: dict[str, Any], text: str) -> dict[str, int]:
        system = body.get("system")
        blocks = [{"text": system}] if isinstance(system, str) else list(system or [])
        cached_prefix = ""
        rest = ""
        for b in blocks:
            if self.simulate_cache and isinstance(b, dict) and b.get("cache_control"):
                # Everything up to and including a marked block is the cacheable prefix.
                cached_prefix += rest + str(b.get("text", ""))
                rest = ""
            else:
                rest += str(b.get("text", "")) if isinstance(b, dict) else ""
        rest += "".join(_text(m.get("content")) for m in body.get("messages", []))
        read = write = 0
        if cached_prefix:
            with self._cache_lock:
                if cached_prefix in self._cached:
                    read = _tokens(cached_prefix)
                else:
                    self._cached.add(cached_prefix)
                    write = _tokens(cached_prefix)
        return {
            "input_tokens": _tokens(rest),
            "output_tokens": _tokens(text),
            "cache_creation_input_tokens": write,
            "cache_read_input_tokens": read,
        }

    def success_body(self, body: Any, reply: Reply, number: int) -> dict[str, Any]:
        usage = self._usage(body, reply.text)
        if reply.usage is not None:
            usage.update(reply.usage)
        return {
            "id": f"msg_fake_{number:06d}",
            "type": "message",
            "role": "assistant",
            "model": reply.model or body["model"],
            "content": ([{"type": "text", "text": reply.text}] if reply.text or not reply.tool_calls else [])
            + [
                {"type": "tool_use", "id": f"toolu_fake_{number:06d}_{i}", "name": name, "input": args}
                for i, (name, args) in enumerate(reply.tool_calls)
            ],
            "stop_reason": reply.stop_reason or ("tool_use" if reply.tool_calls else "end_turn"),
            "stop_sequence": None,
            "usage": usage,
        }

    def error_body(self, status: int, message: str, error_type: str | None) -> dict[str, Any]:
        kind = error_type or _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
