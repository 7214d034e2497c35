"""What an agent's model sees on each call: the system text and the message buffer.

Rules this module keeps:

* The system text is, in order: the agent's system prompt, its working-memory blocks
  (``WorkingMemory.render()``), and memory statistics (message and chunk counts, sessions,
  time span, how many earlier messages left the prompt). Counts, never contents, of the tiers
  outside the prompt: the model reaches them with its tools. The counts are gathered once per
  step, incrementally (``StatsCache``), and advanced by what the step wrote, never re-scanned
  per model call.
* The buffer is rebuilt from recall messages alone, so a restarted process sees exactly what
  the old one saw. How an agent writes a step to recall (``MessageKind``) is what lets this
  module turn rows back into Anthropic content blocks: ``tool_call`` rows become ``tool_use``
  blocks, ``tool_result`` rows ``tool_result`` blocks, consecutive rows of one role merge.
* The result is always a valid conversation for the Messages API: it starts with a user turn,
  roles alternate, every ``tool_use`` has its ``tool_result`` (a step cut short by a crash gets
  a placeholder result), and a message that is a single text block is sent as a plain string.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from memory.tokens import count_tokens
from memory.types import Message

if TYPE_CHECKING:
    from memory.manager import MemoryManager

__all__ = [
    "INTERRUPTED_RESULT",
    "KIND_TEXT",
    "KIND_TOOL_CALL",
    "KIND_TOOL_RESULT",
    "MemoryStats",
    "buffer_tokens",
    "gather_stats",
    "memory_stats_text",
    "message_tokens",
    "render_system",
    "to_chat_messages",
    "tool_call_text",
]

KIND_TEXT = "text"
KIND_TOOL_CALL = "tool_call"
KIND_TOOL_RESULT = "tool_result"
INTERRUPTED_RESULT = "(no result: the step that made this call was interrupted)"
_CONTINUED = "(The conversation continues; earlier messages are summarised in the summary block.)"


def tool_call_text(name: str, arguments: Any) -> str:
    """How a tool call reads in recall (and in full-text search): ``name({json})``."""
    return f"{name}({json.dumps(arguments, ensure_ascii=False, sort_keys=True, default=str)})"


def message_tokens(m: Message) -> int:
    """Tokens a recall message takes in the prompt (a small per-message overhead included)."""
    base = m.tokens if m.tokens > 0 else count_tokens(m.content)
    return base + 4


def buffer_tokens(messages: Sequence[Message]) -> int:
    return sum(message_tokens(m) for m in messages)


def _add(out: list[dict[str, Any]], role: str, block: dict[str, Any]) -> None:
    if out and out[-1]["role"] == role:
        out[-1]["content"].append(block)
    else:
        out.append({"role": role, "content": [block]})


def _text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text if text.strip() else "(empty)"}


def to_chat_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Recall messages (oldest first) as a valid Messages API conversation."""
    out: list[dict[str, Any]] = []
    pending: list[str] = []  # tool_use ids still waiting for their result

    def close_pending() -> None:
        for cid in pending:
            _add(out, "user", {"type": "tool_result", "tool_use_id": cid,
                               "content": INTERRUPTED_RESULT, "is_error": True})
        pending.clear()

    for m in messages:
        kind = (m.metadata or {}).get("kind")
        call_id = (m.metadata or {}).get("tool_call_id")
        if m.role == "assistant" and kind == KIND_TOOL_CALL and call_id and m.tool_name:
            if out and out[-1]["role"] != "assistant":
                # A new assistant turn: calls of the previous turn still unanswered (a crash
                # between call and result) must be answered before it starts.
                close_pending()
            args = m.tool_args if isinstance(m.tool_args, dict) else {}
            _add(out, "assistant", {"type": "tool_use", "id": call_id, "name": m.tool_name,
                                    "input": args})
            pending.append(call_id)
            continue
        if m.role == "tool" and call_id in pending:
            pending.remove(call_id)
            block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id,
                                     "content": m.content or "(empty)"}
            if (m.metadata or {}).get("is_error"):
                block["is_error"] = True
            _add(out, "user", block)
            continue
        close_pending()
        if m.role == "assistant":
            _add(out, "assistant", _text_block(m.content))
        elif m.role == "user":
            _add(out, "user", _text_block(m.content))
        elif m.role == "tool":
            _add(out, "user", _text_block(f"[result of {m.tool_name or 'a tool'}] {m.content}"))
        else:
            _add(out, "user", _text_block(f"[{m.role}] {m.content}"))
    close_pending()
    if out and out[0]["role"] != "user":
        out.insert(0, {"role": "user", "content": [_text_block(_CONTINUED)]})
    for msg in out:
        c = msg["content"]
        if len(c) == 1 and c[0].get("type") == "text":
            msg["content"] = c[0]["text"]
    return out


def _fmt_time(dt: datetime | None) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if dt else "-"


@dataclass(frozen=True)
class MemoryStats:
    """The counts behind the statistics section, read once per step (they cost a scan)."""

    messages: int
    sessions: int
    first_at: datetime | None
    last_at: datetime | None
    chunks: int | None
    sources: int | None


class StatsCache:
    """``MemoryStats`` of one agent, kept up to date from the recall log incrementally.

    The first ``gather`` reads every session of the agent once; later ones read only the
    messages with ids above the last one seen (ids increase with insertion), so a step costs
    the same with a thousand or a million earlier messages. Archival sources are re-read only
    when the chunk count changed. Messages removed with ``forget`` stay counted until the
    next process (statistics are guidance for the model, not an audit).
    """

    def __init__(self, memory: MemoryManager, agent_id: str) -> None:
        self.memory = memory
        self.agent_id = agent_id
        self._last_id: int | None = None
        self._sessions: set[str] = set()
        self._messages = 0
        self._first: datetime | None = None
        self._last: datetime | None = None
        self._chunks: int | None = None
        self._sources: int | None = None

    def _see(self, first: datetime, last: datetime) -> None:
        self._first = first if self._first is None else min(self._first, first)
        self._last = last if self._last is None else max(self._last, last)

    def gather(self) -> MemoryStats:
        recall = self.memory.recall
        if self._last_id is None:
            infos = recall.sessions(agent_id=self.agent_id)
            self._sessions = {s.session_id for s in infos}
            self._messages = sum(s.message_count for s in infos)
            for s in infos:
                self._see(s.first_at, s.last_at)
            self._last_id = max((s.last_id for s in infos), default=0)
        while True:
            new = recall.range(self._last_id + 1, None, limit=1000, agent_id=self.agent_id)
            for m in new:
                self._sessions.add(m.session_id)
                self._see(m.created_at, m.created_at)
            self._messages += len(new)
            if new:
                self._last_id = new[-1].id
            if len(new) < 1000:
                break
        try:
            chunks = self.memory.archival.count()
            if chunks != self._chunks:
                self._chunks, self._sources = chunks, len(self.memory.archival.sources())
        except Exception:  # statistics must never stop a step
            self._chunks = self._sources = None
        return MemoryStats(self._messages, len(self._sessions), self._first, self._last,
                           self._chunks, self._sources)


def gather_stats(memory: MemoryManager, agent_id: str) -> MemoryStats:
    """The statistics of ``agent_id`` read afresh (``StatsCache`` keeps them up to date)."""
    return StatsCache(memory, agent_id).gather()


def memory_stats_text(stats: MemoryStats, *, in_prompt: int, session_id: str, written: int = 0) -> str:
    """The statistics section: what lies outside the prompt and how to reach it.

    ``written`` counts messages appended since ``stats`` was gathered.
    """
    total = stats.messages + written
    lines = [
        f"Now: {_fmt_time(datetime.now(UTC))}. Current session: {session_id}.",
        f"Recall log: {total} messages of yours in {stats.sessions} sessions "
        f"({_fmt_time(stats.first_at)} to {_fmt_time(stats.last_at if not written else datetime.now(UTC))}).",
    ]
    earlier = max(0, total - in_prompt)
    if earlier:
        lines.append(
            f"{earlier} earlier messages are no longer in this prompt (the summary block covers "
            "them); find their details with conversation_search, or deep_recall for questions "
            "that need many of them."
        )
    if stats.chunks is not None:
        lines.append(f"Archival memory: {stats.chunks} chunks from {stats.sources} sources "
                     "(archival_search to read, archival_insert to add).")
    return "\n".join(lines)


def render_system(system_prompt: str, blocks: str, stats: str) -> str:
    return (
        f"{system_prompt.strip()}\n\n"
        f"{blocks.strip()}\n\n"
        f"<memory_metadata>\n{stats.strip()}\n</memory_metadata>"
    )
