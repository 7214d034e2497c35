"""The value types of the LM seam: messages in, ``LMResponse`` out.

Rules this module keeps:

* A chat message is ``{"role": "user"|"assistant", "content": str}``; a ``"system"`` message
  in the list is folded into the system prompt by the clients that need it.
* ``Usage.input_tokens`` counts prompt tokens that were *not* read from or written to a
  prompt cache; cache reads and writes are counted apart, so ``total_tokens`` never counts a
  token twice.
* ``LMResponse.stop_reason`` uses one vocabulary for every provider: ``end_turn``,
  ``max_tokens``, ``stop_sequence``, ``tool_use``, ``refusal``, ``pause_turn``, or the
  provider's own word when it has no equivalent (``unknown`` when none was given).
* Tool use follows the Anthropic shape on every provider: ``tools`` are
  ``{"name", "description", "input_schema"}`` dicts, a response's ``tool_calls`` are
  ``ToolCall``s, and ``LMResponse.content`` holds the assistant turn as Anthropic content
  blocks (text and ``tool_use``) ready to append to the conversation; tool results go back
  as a user message of ``tool_result`` blocks.
* ``count_tokens`` is ``memory.tokens.count_tokens``, a fast estimate (no tokenizer
  download); real clients report the provider's own counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from memory.tokens import count_tokens  # the one estimate, shared with memory (standard library)

__all__ = [
    "LM",
    "ChatMessage",
    "LMRequest",
    "LMResponse",
    "ToolCall",
    "Usage",
    "content_text",
    "count_tokens",
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


@dataclass(frozen=True)
class ToolCall:
    """One tool the model asked to run."""

    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def to_block(self) -> dict[str, Any]:
        return {"type": "tool_use", "id": self.id, "name": self.name, "input": dict(self.arguments)}


@dataclass
class LMResponse:
    """What one model call returned.

    ``content`` is the assistant turn as Anthropic content blocks; when not given it is built
    from ``text`` and ``tool_calls`` (so fakes need only say what the model "said").
    """

    text: str
    usage: Usage = field(default_factory=Usage)
    stop_reason: str = "end_turn"
    model: str = ""
    cost_usd: float = 0.0
    raw: Any = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    content: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.content:
            blocks: list[dict[str, Any]] = []
            if self.text:
                blocks.append({"type": "text", "text": self.text})
            blocks.extend(c.to_block() for c in self.tool_calls)
            self.content = blocks
        if self.tool_calls and self.stop_reason == "end_turn":
            self.stop_reason = "tool_use"


@dataclass
class LMRequest:
    """One request as a fake LM received it (for assertions in tests)."""

    messages: list[ChatMessage]
    system: str | None
    max_tokens: int | None
    tools: list[dict[str, Any]] | None = None

    @property
    def prompt(self) -> str:
        """The text of the last user message."""
        for m in reversed(self.messages):
            if m.get("role") == "user":
                return content_text(m.get("content"))
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
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> LMResponse: ...

    async def acomplete(
        self,
        messages: Sequence[ChatMessage],
        *,
        system: str | None = None,
        max_tokens: int | None = None,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> LMResponse: ...


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or the text of its content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for b in content:
            if not isinstance(b, dict):
                continue
            if b.get("type") == "text":
                parts.append(str(b.get("text", "")))
            elif b.get("type") == "tool_result":
                parts.append(content_text(b.get("content", "")))
        return "".join(parts)
    return "" if content is None else str(content)
