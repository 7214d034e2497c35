"""Message keys: which rows of a batch are new, read inside the append's transaction.

Rules this module keeps: a key is unique per agent; of the rows of one batch that share a key,
the first is the one stored; rows without a key (``None``) are always new. The caller holds
the append lock (SQLite ``BEGIN IMMEDIATE``, the PostgreSQL advisory lock), so what these reads
see is what the insert will meet; the unique index and ``ON CONFLICT DO NOTHING`` remain the
guarantee.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from memory.recall.schema import TABLE

__all__ = ["present_keys", "unstored"]


def present_keys(conn: Connection, agent_id: str, keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` are stored for ``agent_id``."""
    found: set[str] = set()
    for a in range(0, len(keys), 500):
        chunk = keys[a : a + 500]
        marks = ", ".join(f":k{n}" for n in range(len(chunk)))
        params: dict[str, Any] = {f"k{n}": v for n, v in enumerate(chunk)}
        params["a"] = agent_id
        sql = f"SELECT msg_key FROM {TABLE} WHERE agent_id = :a AND msg_key IN ({marks})"
        found.update(conn.execute(text(sql), params).scalars())
    return found


def unstored(conn: Connection, rows: Sequence[tuple[Any, ...]], key_at: int) -> list[int]:
    """Indices of the rows to insert (``row[0]`` is the agent, ``row[key_at]`` the key)."""
    by_agent: dict[str, set[str]] = {}
    for r in rows:
        if r[key_at] is not None:
            by_agent.setdefault(r[0], set()).add(r[key_at])
    stored = {(a, k) for a, keys in by_agent.items() for k in present_keys(conn, a, sorted(keys))}
    keep: list[int] = []
    for n, r in enumerate(rows):
        if r[key_at] is not None:
            if (r[0], r[key_at]) in stored:
                continue
            stored.add((r[0], r[key_at]))
        keep.append(n)
    return keep
