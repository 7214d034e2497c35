"""The operations of the HTTP API: typed functions like the tools, and the route table.

Rules this module keeps:

* An operation is a function ``op(ctx: ToolContext, arg: T = default, ...)`` with a Google-style
  docstring, exactly like a tool (many operations *are* tools from ``agents.tools.builtin``). Its
  signature validates requests and generates the OpenAPI description (``agents.server.openapi``).
* Operations never touch HTTP: they take checked Python values and return JSON-ready values;
  ``agents.server.http`` maps them to routes, statuses and errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from agents.tools import builtin as T
from agents.tools.spec import jsonable, parse_docstring
from memory import errors as E

__all__ = ["OPERATIONS", "Operation"]


# --- operations that are not tools --------------------------------------------------------


def search(
    ctx: T.ToolContext,
    query: str,
    k: int = 10,
    tier: Literal["all", "recall", "archival"] = "all",
    mode: Literal["hybrid", "text", "vector"] = "hybrid",
) -> dict[str, Any]:
    """Search memory: hybrid (keywords + meaning), text only or vector only, in one tier or both.

    Args:
        query: What to look for.
        k: How many results (1-50).
        tier: recall (messages), archival (documents) or all.
        mode: hybrid, text or vector ranking.
    """
    if not 1 <= k <= 50:
        raise E.ValidationError(f"k must be between 1 and 50, got {k}")
    tiers = ("recall", "archival") if tier == "all" else (tier,)
    hits = ctx.memory.search(query, tiers=tiers, k=k, mode=mode, **ctx.recall_filter())
    return {"query": query, "results": [jsonable(h) for h in hits]}


def grep(
    ctx: T.ToolContext,
    pattern: str,
    tier: Literal["recall", "archival", "all"] = "recall",
    ignore_case: bool = False,
    literal: bool = False,
    limit: int = 100,
) -> dict[str, Any]:
    """Regular-expression (or literal) search over message or chunk text.

    Args:
        pattern: A Python regular expression, or plain text with literal=true.
        tier: recall, archival or all.
        ignore_case: Match regardless of case.
        literal: Treat the pattern as plain text.
        limit: The most matches to return (1-1000).
    """
    if not 1 <= limit <= 1000:
        raise E.ValidationError(f"limit must be between 1 and 1000, got {limit}")
    hits = ctx.memory.grep(
        pattern, tier=tier, ignore_case=ignore_case, literal=literal, limit=limit, **ctx.recall_filter()
    )
    return {"pattern": pattern, "matches": [jsonable(h) for h in hits]}


def sessions(ctx: T.ToolContext) -> dict[str, Any]:
    """List the conversation sessions of the agent with their time spans and message counts."""
    return {"sessions": [jsonable(s) for s in ctx.memory.recall.sessions(agent_id=ctx.agent_id)]}


def append_message(
    ctx: T.ToolContext,
    content: str,
    role: Literal["user", "assistant", "system", "tool"] = "user",
    session_id: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Append one message to the recall log; it is durable when the response arrives.

    Args:
        content: The message text.
        role: user, assistant, system or tool.
        session_id: The conversation session (default: the server's session).
        metadata: Any JSON object to keep with the message.
    """
    msg = ctx.memory.recall.append(
        content,
        role=role,
        agent_id=ctx.agent_id,
        session_id=session_id or ctx.session_id or "default",
        metadata=metadata,
    )
    return jsonable(msg)  # type: ignore[no-any-return]


def insert_archival(
    ctx: T.ToolContext,
    text: str,
    tags: list[str] | None = None,
    source: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Store a passage in archival memory.

    Args:
        text: The passage.
        tags: Labels for filtering.
        source: Where the passage comes from (file name, URL).
        metadata: Any JSON object to keep with the passage.
    """
    if not text.strip():
        raise E.ValidationError("text is empty")
    chunk_id = ctx.memory.archival.insert(text, tags=tuple(tags or ()), metadata=metadata, source=source)
    return {"id": chunk_id}


def list_blocks(ctx: T.ToolContext) -> dict[str, Any]:
    """List the agent's working-memory blocks."""
    return {"blocks": [_block_dict(b) for b in ctx.memory.blocks(ctx.agent_id).list()]}


def get_block(ctx: T.ToolContext, label: str) -> dict[str, Any]:
    """Read one working-memory block.

    Args:
        label: The block label.
    """
    return _block_dict(ctx.memory.blocks(ctx.agent_id).get(label))


def put_block(
    ctx: T.ToolContext,
    label: str,
    value: str,
    limit: int | None = None,
    description: str | None = None,
    read_only: bool | None = None,
) -> dict[str, Any]:
    """Create a block, or set the value of an existing one.

    Args:
        label: The block label.
        value: The whole new value.
        limit: Character limit (new blocks only; default: the store's default).
        description: What the block is for (new blocks only).
        read_only: Whether models may edit it (new blocks only).
    """
    wm = ctx.memory.blocks(ctx.agent_id)
    try:
        wm.get(label)
    except E.NotFoundError:
        extra = {k: v for k, v in (("limit", limit), ("description", description), ("read_only", read_only)) if v is not None}
        wm.create(label, value, **extra)
    else:
        wm.set(label, value)
    return _block_dict(wm.get(label))


def stats(ctx: T.ToolContext) -> dict[str, Any]:
    """Counts and sizes of every tier."""
    return jsonable(ctx.memory.stats(ctx.agent_id if ctx.agent_scoped else None))  # type: ignore[no-any-return]


def _block_dict(b: Any) -> dict[str, Any]:
    d = jsonable(b)
    return d if isinstance(d, dict) else {"value": d}


# --- the route table ----------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    fn: Callable[..., Any]
    status: int = 200
    tag: str = "memory"

    @property
    def summary(self) -> str:
        return parse_docstring(self.fn.__doc__)[0].split("\n")[0]


OPERATIONS: tuple[Operation, ...] = (
    Operation("POST", "/search", search),
    Operation("POST", "/grep", grep),
    Operation("GET", "/messages/{message_id}", T.memory_peek),
    Operation("POST", "/messages", append_message, 201),
    Operation("GET", "/sessions", sessions),
    Operation("POST", "/archival", insert_archival, 201),
    Operation("GET", "/blocks", list_blocks, tag="blocks"),
    Operation("GET", "/blocks/{label}", get_block, tag="blocks"),
    Operation("PUT", "/blocks/{label}", put_block, tag="blocks"),
    Operation("POST", "/blocks/{label}/append", T.core_memory_append, tag="blocks"),
    Operation("POST", "/blocks/{label}/replace", T.core_memory_replace, tag="blocks"),
    Operation("POST", "/blocks/{label}/insert", T.memory_insert, tag="blocks"),
    Operation("POST", "/blocks/{label}/rethink", T.memory_rethink, tag="blocks"),
    Operation("POST", "/ask", T.deep_recall, tag="ask"),
    Operation("GET", "/stats", stats),
)
