"""Memory objects as the plain data that crosses into the REPL worker.

Rules this module keeps:

* Output is dicts of plain values only (str, int, float, bool, None, datetime, lists): the
  worker needs nothing of this package to read them, and the model reads them as dicts.
* Field names are those of ``memory.types`` (``id``, ``session_id``, ``created_at``, ...), so
  what the model sees matches the documentation of the tiers.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "block_dict",
    "chunk_dict",
    "grep_hit_dict",
    "message_dict",
    "search_hit_dict",
    "session_dict",
]


def message_dict(m: Any) -> dict[str, Any]:
    return {
        "id": m.id,
        "session_id": m.session_id,
        "agent_id": m.agent_id,
        "role": m.role,
        "content": m.content,
        "created_at": m.created_at,
        "tool_name": m.tool_name,
        "tokens": m.tokens,
    }


def session_dict(s: Any) -> dict[str, Any]:
    return {
        "session_id": s.session_id,
        "agent_id": s.agent_id,
        "message_count": s.message_count,
        "first_id": s.first_id,
        "last_id": s.last_id,
        "first_at": s.first_at,
        "last_at": s.last_at,
    }


def grep_hit_dict(h: Any) -> dict[str, Any]:
    return {
        "id": h.id,
        "tier": h.tier,
        "session_id": h.session_id,
        "agent_id": h.agent_id,
        "role": h.role,
        "created_at": h.created_at,
        "source": h.source,
        "snippet": h.snippet,
        "match": h.match,
    }


def search_hit_dict(h: Any) -> dict[str, Any]:
    return {
        "id": h.id,
        "tier": h.tier,
        "score": float(h.score),
        "snippet": h.snippet,
        "text": h.text,
        "session_id": h.session_id,
        "agent_id": h.agent_id,
        "role": h.role,
        "created_at": h.created_at,
        "source": h.source,
        "position": h.position,
        "tags": list(h.tags),
    }


def chunk_dict(c: Any) -> dict[str, Any]:
    return {
        "id": c.id,
        "text": c.text,
        "source": c.source,
        "position": c.position,
        "tags": list(c.tags),
        "created_at": c.created_at,
    }


def block_dict(b: Any) -> dict[str, Any]:
    return {
        "label": b.label,
        "value": b.value,
        "chars": len(b.value),
        "limit": b.limit,
        "description": b.description,
        "read_only": bool(b.read_only),
    }
