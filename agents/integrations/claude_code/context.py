"""What a Claude Code session starts with: a compact, bounded memory context.

Rules this module keeps:

* The context holds the agent's working-memory blocks, then the last ``sessions`` sessions of
  *this project* (messages whose ``metadata.cwd`` is the session's ``cwd``; the session being
  started is left out), each as its opening prompt, what was decided or found, and what was
  left open, then one line saying how to search further (other projects included).
* It is bounded: at most ``max_tokens`` estimated tokens (``ceil(chars / 4)``, the recall log's
  estimate); each part is cut to its share, the blocks first, and the whole is cut last.
* "Decided" and "left open" are sentences of the session's assistant text that say so
  (``DECIDED``/``OPEN`` word lists), newest first. No model is called: the hook must be fast,
  and the full sessions stay one search away.
* It reads SQL only (no embedding model, no Chroma).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from memory.recall.schema import TABLE

if TYPE_CHECKING:
    from memory.manager import MemoryManager
    from memory.types import Message

__all__ = ["DECIDED", "OPEN", "SessionContext", "build_context"]

DECIDED = re.compile(r"\b(decided|decide|chose|agreed|found it|the fix|fixed|root cause|because|we will|we'll|"
                     r"instead|turned out|conclusion)\b", re.I)
OPEN = re.compile(r"\b(still open|todo|to do|left open|next step|not yet|remaining|follow[- ]up|open question|"
                  r"needs? (?:the )?same|later)\b", re.I)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_READ_BACK = 400  # messages read per session, newest first


@dataclass
class SessionContext:
    """The context text and what went into it."""

    text: str
    tokens: int
    sessions: list[str]
    blocks: list[str]


def _tokens(s: str) -> int:
    return (len(s) + 3) // 4


def _cut(s: str, chars: int) -> str:
    s = " ".join(s.split())
    return s if len(s) <= chars else s[: max(0, chars - 1)].rstrip() + "…"


def _like(value: str) -> str:
    # the metadata column holds compact JSON, so the pair appears exactly like this
    pair = json.dumps({"cwd": value}, separators=(",", ":"))[1:-1]
    return "%" + pair.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def project_sessions(memory: MemoryManager, cwd: str, *, agent_id: str, exclude: str | None, limit: int) -> list[str]:
    """The sessions with messages from ``cwd``, most recently active first."""
    sql = (
        f"SELECT session_id, max(id) AS last FROM {TABLE} WHERE agent_id = :a AND metadata LIKE :p ESCAPE '\\'"
        " AND session_id <> :x GROUP BY session_id ORDER BY last DESC LIMIT :n"
    )
    with memory.recall.db.read() as conn:
        rows = conn.execute(text(sql), {"a": agent_id, "p": _like(cwd), "x": exclude or "", "n": limit}).all()
    return [str(r[0]) for r in rows]


def _sentences(msgs: list[Message], rx: re.Pattern[str], n: int) -> list[str]:
    out: list[str] = []
    for m in reversed(msgs):
        if m.role != "assistant":
            continue
        for s in _SENTENCE.split(m.content):
            if rx.search(s) and s.strip() and s.strip() not in out:
                out.append(s.strip())
                if len(out) >= n:
                    return out
    return out


def _session_part(memory: MemoryManager, sid: str, agent_id: str, chars: int) -> str:
    msgs = [m for m in memory.recall.session(sid, agent_id=agent_id, limit=_READ_BACK) if m.role != "tool"]
    if not msgs:
        return ""
    first = next((m for m in msgs if m.role == "user" and m.metadata.get("kind", "message") == "message"), msgs[0])
    when = msgs[-1].created_at.strftime("%Y-%m-%d %H:%M")
    lines = [f"- session {sid[:8]} (last active {when} UTC): {_cut(first.content, chars // 3)}"]
    summary = next((m for m in reversed(msgs) if m.metadata.get("kind") == "compact_summary"), None)
    if summary is not None:
        lines.append(f"  summary: {_cut(summary.content, chars // 3)}")
    for label, rx in (("decided/found", DECIDED), ("left open", OPEN)):
        found = _sentences(msgs, rx, 3)
        if found:
            lines.append(f"  {label}: " + _cut(" | ".join(found), chars // 3))
    return _cut_lines("\n".join(lines), chars)


def _cut_lines(s: str, chars: int) -> str:
    return s if len(s) <= chars else s[: max(0, chars - 1)].rstrip() + "…"


def build_context(
    memory: MemoryManager, cwd: str | None, *, agent_id: str = "default", session_id: str | None = None,
    max_tokens: int = 1200, sessions: int = 3,
) -> SessionContext:
    """The SessionStart context for a session in ``cwd``; see the module rules."""
    budget = max(200, int(max_tokens)) * 4
    parts: list[str] = ["# Memory from earlier sessions (rlm-memory)"]
    used_blocks: list[str] = []
    blocks: list[Any] = memory.blocks(agent_id).list()
    if blocks:
        share = budget // 3 // max(1, len(blocks))
        parts.append("## Working memory")
        for b in blocks:
            if b.value.strip():
                parts.append(f"[{b.label}] {_cut(b.value, max(80, share))}")
                used_blocks.append(b.label)
    found = project_sessions(memory, cwd, agent_id=agent_id, exclude=session_id, limit=sessions) if cwd else []
    if found:
        parts.append(f"## Recent sessions in {cwd}")
        left = budget - len("\n".join(parts)) - 300
        for sid in found:
            part = _session_part(memory, sid, agent_id, max(200, left // len(found)))
            if part:
                parts.append(part)
    parts.append(
        "Full transcripts of every session (all projects) are in memory: use the memory_search, "
        "memory_grep and deep_recall tools for what was said, decided or tried."
    )
    out = _cut_lines("\n".join(parts), budget)
    return SessionContext(out, _tokens(out), found, used_blocks)
