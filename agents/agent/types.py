"""The value types of an agent step, and the agent's defaults.

Rules this module keeps:

* ``Reply`` and ``ToolCallRecord`` are plain data with ``to_dict()`` for JSON output.
* ``_LMOp`` / ``_ToolOp`` are what the step generator in ``agents.agent.core`` yields to its
  driver (``step`` or ``astep``); they never leave that module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from memory.types import Message
from rlm_core.lm.types import Usage

__all__ = ["AGENT_TOOLS", "DEFAULT_SYSTEM_PROMPT", "Reply", "ToolCallRecord"]

AGENT_TOOLS: tuple[str, ...] = (
    "core_memory_append",
    "core_memory_replace",
    "memory_insert",
    "memory_rethink",
    "archival_insert",
    "archival_search",
    "conversation_search",
    "memory_search",
    "memory_peek",
    "deep_recall",
)

DEFAULT_SYSTEM_PROMPT = """\
You are a helpful assistant with long-term memory that persists across conversations.
Your memory has three tiers:
- Memory blocks (below, always in view): facts about yourself (persona), the user (human), and
  a running summary of older conversation. Keep them current with core_memory_append,
  core_memory_replace, memory_insert and memory_rethink when you learn something lasting.
- The recall log: every message ever exchanged, searchable with conversation_search,
  memory_search and memory_peek, even after it has left this prompt.
- Archival memory: documents and notes, read with archival_search, written with archival_insert.
For questions that need many memories combined (timelines, counts, comparisons), use
deep_recall. Answer the user directly once you have what you need."""

_ROUND_LIMIT_NOTE = (
    "tool round limit reached for this step: no more tools will run; answer the user now "
    "with what you have"
)


@dataclass(frozen=True)
class ToolCallRecord:
    """One tool call made during a step, with its result."""

    id: str
    name: str
    arguments: dict[str, Any]
    result: str
    is_error: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments,
                "result": self.result, "is_error": self.is_error}


@dataclass
class Reply:
    """What one step produced. ``messages`` are the recall rows it wrote, in order."""

    text: str
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    summarised: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "tool_calls": [t.to_dict() for t in self.tool_calls],
                "message_ids": [m.id for m in self.messages], "usage": self.usage.to_dict(),
                "cost_usd": self.cost_usd, "summarised": self.summarised}


@dataclass(frozen=True)
class _LMOp:
    messages: list[dict[str, Any]]
    system: str
    tools: list[dict[str, Any]] | None
    max_tokens: int | None


@dataclass(frozen=True)
class _ToolOp:
    call_id: str
    name: str
    arguments: dict[str, Any]


_Op = _LMOp | _ToolOp


def tools_kw(op: _LMOp) -> dict[str, Any]:
    # Only pass ``tools`` when there are some, so LMs without tool support still summarise.
    return {"tools": op.tools} if op.tools else {}
