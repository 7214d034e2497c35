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


_MESSAGE = ("id", "session_id", "agent_id", "role", "content", "created_at", "tool_name", "tokens")
_SESSION = ("session_id", "agent_id", "message_count", "first_id", "last_id", "first_at", "last_at")
_GREP_HIT = ("id", "tier", "session_id", "agent_id", "role", "created_at", "source", "snippet", "match")
_SEARCH_HIT = ("id", "tier", "score", "snippet", "text", "session_id", "agent_id", "role", "created_at",
               "source", "position", "tags")  # fmt: skip
_CHUNK = ("id", "text", "source", "position", "tags", "created_at")


def _fields(obj: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {n: getattr(obj, n) for n in names}


def message_dict(m: Any) -> dict[str, Any]:
    return _fields(m, _MESSAGE)


def session_dict(s: Any) -> dict[str, Any]:
    return _fields(s, _SESSION)


def grep_hit_dict(h: Any) -> dict[str, Any]:
    return _fields(h, _GREP_HIT)


def search_hit_dict(h: Any) -> dict[str, Any]:
    return {**_fields(h, _SEARCH_HIT), "score": float(h.score), "tags": list(h.tags)}


def chunk_dict(c: Any) -> dict[str, Any]:
    return {**_fields(c, _CHUNK), "tags": list(c.tags)}


def block_dict(b: Any) -> dict[str, Any]:
    return {
        "label": b.label,
        "value": b.value,
        "chars": len(b.value),
        "limit": b.limit,
        "description": b.description,
        "read_only": bool(b.read_only),
    }
