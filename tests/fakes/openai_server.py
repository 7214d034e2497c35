"""A fake OpenAI-compatible ``chat/completions`` server on 127.0.0.1.

Rules this module keeps:

* ``POST /v1/chat/completions`` (non-streaming) answers with the shape local servers and the
  OpenAI API share: ``choices[0].message.content``, ``finish_reason``, ``usage`` with
  ``prompt_tokens``, ``completion_tokens`` and ``total_tokens``.
* No key is needed unless ``require_key=True`` or ``api_key=`` is given (local servers take
  none); errors use the ``{"error": {"message", "type", "code"}}`` envelope.
* ``Reply.stop_reason`` is sent as ``finish_reason`` as given (``stop`` by default);
  ``Reply(usage=None)`` counts ~4 characters per token, ``Reply(body=...)`` sends any JSON,
  e.g. a body without ``usage`` as some servers do.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ._http import FakeServerBase, Reply

__all__ = ["FakeOpenAIServer"]


def _tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4) if text else 0


class FakeOpenAIServer(FakeServerBase):
    """The fake chat-completions API. Its ``base_url`` goes to ``OpenAICompatibleLM``."""

    paths = ("/v1/chat/completions",)

    def __init__(self, *args: Any, require_key: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, require_key=require_key, **kwargs)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: what ``OpenAICompatibleLM(base_url=...)`` takes."""
        return f"{self.url}/v1"

    def validate(self, body: Any) -> str | None:
        if not isinstance(body, dict):
            return "the request body must be a JSON object"
        if not isinstance(body.get("model"), str) or not body["model"]:
            return "model is required"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "messages must be a non-empty array"
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "tool"):
                return f"messages[{i}].role must be system, user, assistant or tool"
        return None

    def success_body(self, body: Any, reply: Reply, number: int) -> dict[str, Any]:
        prompt = sum(_tokens(str(m.get("content") or "")) for m in body["messages"])
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": f"call_fake_{number:06d}_{i}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args)},
                }
                for i, (name, args) in enumerate(reply.tool_calls)
            ]
        completion = _tokens(reply.text)
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if reply.usage is not None:
            usage.update(reply.usage)
        return {
            "id": f"chatcmpl-fake{number:06d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": reply.model or body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": reply.stop_reason or ("tool_calls" if reply.tool_calls else "stop"),
                }
            ],
            "usage": usage,
        }

    def error_body(self, status: int, message: str, error_type: str | None) -> dict[str, Any]:
        kind = error_type or ("server_error" if status >= 500 else "invalid_request_error")
        return {"error": {"message": message, "type": kind, "code": status}}
