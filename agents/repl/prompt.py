"""What the root model is told about memory: the function docs, the system-prompt section on
the memory names, and the memory summary of the first message.

Rules this module keeps:

* The system prompt says how to read memory (stable for every run, so it caches); the first
  message says what memory holds right now.
* The summary gives structure and sizes only: counts, time span, a bounded list of recent
  sessions, bounded archival sources, block sizes, plus the working-memory blocks themselves,
  each cut to a budget. Its length is bounded whatever memory holds: a 10M-token log gets the
  same few lines as a 1K-token one.
* Everything printed comes from the store; nothing here reads a message's content.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

from rlm_core.prompts import SYSTEM_PROMPT

__all__ = ["FUNCTION_DOCS", "MEMORY_SECTION", "MemoryShape", "memory_summary", "memory_system_prompt"]


class MemoryShape(Protocol):
    """What the summary reads: sizes of a memory as one agent sees it (``MemoryBinding``)."""

    memory: Any
    agent_id: str | None
    working: Any

    def time_span(self) -> tuple[datetime | None, datetime | None]: ...
    def message_count(self) -> int: ...
    def archival_count(self) -> int: ...
    def archival_sources(self, limit: int | None = None) -> list[tuple[str, int]]: ...


# One line per function; the engine prints each name with its signature before the line.
FUNCTION_DOCS: dict[str, str] = {
    "grep": "regex (Python re syntax) over every character of tier 'all' (default), 'recall' or "
    "'archival'; session_id/role/since/until ('2024-05-01' or datetime) filter recall; limit "
    "counts all tiers; hits have id, tier, session_id, created_at, role, snippet, match",
    "search": "hybrid ranking (full text + meaning) across tier 'recall', 'archival' or "
    "'all'; hits have id, tier, score, snippet, text, session_id or source",
    "recall_search": "hybrid search over messages only, with the recall filters",
    "archival_search": "hybrid search over archival chunks only (tags: any of them matches)",
    "peek": "the recall message with this id and its neighbours in the same session",
    "remember": "store text as a new archival chunk; returns its id (a logged write)",
    "note": "append text to a working-memory block within its limit, creating it if new "
    "(a logged write)",
    "_memory": "internal, serves recall/archival/working: use those instead",
}

MEMORY_SECTION = """\
Memory: this agent's persistent memory is in the REPL too, far too large to print; read it \
with code, in pieces:
- `working`: read-only mapping label -> text of the working-memory blocks (shown in the first \
message); `working.blocks()` gives sizes and limits.
- `recall`: every logged message, oldest first, as a lazy sequence: `len(recall)`, \
`recall[i]`, `recall[a:b]` (negative indices work), `for m in recall` (read page by page), \
`recall.get(id)`, `recall.sessions()`, `recall.session(session_id)`, `recall.text(a, b)` or \
`recall.text(session=...)` -> transcript lines "[#id 2024-05-01 10:00 user] content". A \
message has id, session_id, role, content, created_at (dict keys or attributes).
- `archival`: documents and stored notes as chunks: `len(archival)`, `for c in archival`, \
`archival.get(id)`, `archival.sources()`.
Find where to look with grep/search, read around the hits (peek, recall.session), and hand \
long pieces to llm_query_batched. remember() and note() are the only writes: use them only \
when the query asks to store something."""


def memory_system_prompt(template: str | None = None) -> str:
    """The engine's system prompt template with the memory section after the function list."""
    base = SYSTEM_PROMPT if template is None else template
    if "{functions}" not in base:
        return base + "\n\n" + MEMORY_SECTION
    return base.replace("{functions}", "{functions}\n\n" + MEMORY_SECTION, 1)


def _fmt_time(dt: datetime | None) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if dt is not None else "?"


def _cut(name: str, width: int) -> str:
    return name if len(name) <= width else name[: width - 3] + "..."


def memory_summary(
    binding: MemoryShape,
    *,
    max_sessions: int = 8,
    max_sources: int = 8,
    max_block_chars: int = 1200,
    max_blocks_chars: int = 2400,
) -> str:
    """The memory part of the first message: structure and sizes, plus the blocks (bounded)."""
    mem = binding.memory
    sessions = mem.recall.sessions(agent_id=binding.agent_id)
    count = binding.message_count()
    first, last = binding.time_span()
    who = f" of agent {binding.agent_id!r}" if binding.agent_id is not None else ""
    lines = [f"Memory{who}, as it stands now (sizes only; read it with code):"]
    lines.append(
        f"- recall: {count:,} messages in {len(sessions):,} sessions, "
        f"{_fmt_time(first)} .. {_fmt_time(last)} UTC"
    )
    if sessions:
        shown = sessions[-max_sessions:]
        lines.append(f"  the {len(shown)} most recent sessions, oldest first:")
        for s in shown:
            lines.append(
                f"  - {_cut(s.session_id, 60)!r}: {s.message_count:,} messages "
                f"#{s.first_id}..#{s.last_id}, {_fmt_time(s.first_at)} .. {_fmt_time(s.last_at)}"
            )
    sources = binding.archival_sources()
    chunks = binding.archival_count()
    lines.append(f"- archival: {chunks:,} chunks from {len(sources):,} sources")
    for src, n in sources[:max_sources]:
        lines.append(f"  - {_cut(src, 80)}: {n:,} chunks")
    if len(sources) > max_sources:
        lines.append(f"  - and {len(sources) - max_sources:,} more: archival.sources()")
    blocks = list(binding.working.list())
    sizes = (
        ", ".join(f"{_cut(b.label, 40)} {len(b.value)}/{b.limit}" for b in blocks[:30]) or "none"
    )
    if len(blocks) > 30:
        sizes += f", and {len(blocks) - 30} more: working.blocks()"
    lines.append(f"- working memory blocks (label chars/limit): {sizes}")
    budget = max_blocks_chars
    for b in blocks[:30]:
        cap = max(min(max_block_chars, budget), 0)
        if cap == 0:
            lines.append(f"<{_cut(b.label, 40)}> not shown: read working[{b.label!r}]")
            continue
        value = b.value
        if len(value) > cap:
            value = (
                value[:cap] + f"\n... ({len(b.value) - cap} more characters: working[{b.label!r}])"
            )
        budget -= min(len(b.value), cap)
        lines.append(f"<{_cut(b.label, 40)}>\n{value}\n</{_cut(b.label, 40)}>")
    return "\n".join(lines)
