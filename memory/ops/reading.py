"""The read operations: search, grep, peek, sessions.

Rules this module keeps:

* Each operation is defined once, typed, with its docstring as the description every surface
  shows; defaults and limits come from ``DEFAULTS``. Adapters never restate them.
* Operations return the tiers' own values (``SearchHit``, ``GrepHit``, ``Message``,
  ``SessionInfo``); turning them into JSON, REPL dicts or printed lines is the adapters' job.
* Recall reads are narrowed by ``OpContext.recall_filter`` (one agent unless the context is
  store-wide); archival memory is shared by the whole store.
* A limit is a limit of the whole reply: ``grep(tier="all", limit=3)`` returns at most 3.
"""

from __future__ import annotations

import time
from typing import Literal

from memory.errors import NotFoundError
from memory.ops.schema import Context, GrepLimit, Id, K, Role, SessionLimit, Tags, Text, When
from memory.ops.values import DEFAULTS as D
from memory.ops.values import OpContext, TierName
from memory.types import GrepHit, Message, SearchHit, SessionInfo

__all__ = ["TIERS", "grep", "peek", "search", "sessions", "tiers_of"]

TIERS: tuple[str, ...] = ("all", "recall", "archival")


def tiers_of(tier: str) -> tuple[str, ...]:
    """The stores a tier name covers (``all``: both)."""
    return ("recall", "archival") if tier == "all" else (tier,)


def search(
    ctx: OpContext,
    query: Text,
    k: K = D.k,
    tier: TierName = D.search_tier,
    mode: Literal["hybrid", "text", "vector"] = "hybrid",
    session_id: str | None = None,
    role: Role | None = None,
    since: When = None,
    until: When = None,
    tags: Tags | None = None,
) -> list[SearchHit]:
    """Search memory (past conversations and stored documents) by meaning and keywords.

    Args:
        query: What to look for, in natural language or keywords.
        k: How many results to return.
        tier: "recall" for past messages, "archival" for stored documents and notes, "all" for both.
        mode: "hybrid" (keywords and meaning), "text" (keywords only) or "vector" (meaning only).
        session_id: Only messages of this conversation session (recall).
        role: Only messages with this role: user, assistant, system or tool (recall).
        since: Only items at or after this ISO 8601 date or time (e.g. 2024-05-01).
        until: Only items at or before this ISO 8601 date or time.
        tags: Only archival passages carrying at least one of these tags.
    """
    mem = ctx.memory
    rf = ctx.recall_filter(session_id=session_id, role=role, since=since, until=until)
    if tier == "recall":
        return mem.search_recall(query, k=k, mode=mode, where=rf)
    if tier == "archival":
        return mem.search_archival(query, k=k, mode=mode, since=rf.since, until=rf.until, tags=tags or None)
    return mem.search(query, tiers=tiers_of(tier), k=k, mode=mode, where=rf, tags=tags or None)


def grep(
    ctx: OpContext,
    pattern: Text,
    tier: TierName = D.grep_tier,
    ignore_case: bool = D.ignore_case,
    literal: bool = False,
    limit: GrepLimit = D.grep_limit,
    session_id: str | None = None,
    role: Role | None = None,
    since: When = None,
    until: When = None,
) -> list[GrepHit]:
    """Find exact text in memory with a regular expression (names, numbers, error messages, quotes).

    Args:
        pattern: A Python regular expression, e.g. "invoice #\\d+" or "(?i)postgres"; plain text with literal=true.
        tier: "recall" for past messages, "archival" for stored documents, "all" for both.
        ignore_case: Match regardless of upper or lower case.
        literal: Treat the pattern as plain text, not a regular expression.
        limit: The most matches to return, over all tiers together.
        session_id: Only messages of this conversation session (recall).
        role: Only messages with this role (recall).
        since: Only messages at or after this ISO 8601 date or time (recall).
        until: Only messages at or before this ISO 8601 date or time (recall).
    """
    rf = ctx.recall_filter(session_id=session_id, role=role, since=since, until=until)
    hits: list[GrepHit] = []
    started = time.monotonic()
    if tier in ("recall", "all"):
        hits += ctx.memory.recall.grep(
            pattern, ignore_case=ignore_case, literal=literal, limit=limit,
            timeout_s=ctx.grep_timeout_s, where=rf,
        )  # fmt: skip
    if tier in ("archival", "all") and len(hits) < limit:
        # One deadline for the whole call: what recall's leg left of it.
        left = None if ctx.grep_timeout_s is None else max(0.0, ctx.grep_timeout_s - (time.monotonic() - started))
        hits += ctx.memory.archival.grep(
            pattern, ignore_case=ignore_case, literal=literal, limit=limit - len(hits), timeout_s=left
        )
    return hits[:limit]


def message(ctx: OpContext, message_id: int) -> Message:
    """The message with this id, if the context may read it."""
    m = ctx.memory.recall.get(message_id)
    if ctx.agent_scoped and m.agent_id != ctx.agent_id:
        raise NotFoundError(f"no message #{message_id} for agent {ctx.agent_id!r}")
    return m


def peek(
    ctx: OpContext,
    message_id: Id,
    before: Context = D.context,
    after: Context = D.context,
) -> list[Message]:
    """Read one past message in full with the messages around it in its session.

    Args:
        message_id: The id of a message from a search or grep result (tier recall).
        before: How many earlier messages of the same session to include.
        after: How many later messages of the same session to include.
    """
    m = message(ctx, message_id)
    around = ctx.memory.recall.around(m.id, before=before, after=after)
    # A session id another agent also used must not show that agent's messages.
    return [x for x in around if not ctx.agent_scoped or x.agent_id == ctx.agent_id]


def sessions(
    ctx: OpContext,
    limit: SessionLimit | None = None,
) -> list[SessionInfo]:
    """List the conversation sessions with their time spans and message counts, oldest first.

    Args:
        limit: Only the most recent this many sessions.
    """
    found = ctx.memory.recall.sessions(agent_id=ctx.recall_filter().agent_id)
    if limit is None:
        return list(found)
    return list(found[-limit:]) if limit else []
