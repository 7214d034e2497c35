"""Memory tools, defined once: the Agent, the REPL, Letta, the HTTP API and MCP all use these.

Rules this module keeps:

* Each tool is a plain function ``name(ctx: ToolContext, arg: T = default, ...)`` whose
  Google-style docstring is the description a model reads and whose signature is the schema
  (see ``agents.tools.spec``). Nothing else describes a tool.
* Tools reach memory only through the ``MemoryManager`` in the context; block edits are made
  as ``ctx.actor`` on the blocks of ``ctx.agent_id``. Recall searches see only that agent's
  messages unless the context is store-wide (``agent_scoped=False``: MCP, an HTTP request
  without an agent); archival memory is shared by the whole store.
* Tools parse strings (dates) at this edge and raise errors from ``memory.errors`` for bad
  input. ``call_tool`` checks the arguments first, so a model's malformed call never reaches
  the stores, and returns a JSON-serialisable result bounded by ``ctx.max_result_chars``.
* Long texts in results are cut to ``HIT_TEXT_CHARS`` with a pointer to the full record
  (``memory_peek`` for messages), so one search cannot flood a prompt.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from agents.tools.spec import bound, check_arguments, function_schema, jsonable
from memory.errors import ConfigError, NotFoundError, RLMLimitError, ValidationError

if TYPE_CHECKING:
    from memory.manager import MemoryManager
    from rlm_core.lm import LM

__all__ = [
    "HIT_TEXT_CHARS",
    "TOOLS",
    "ToolContext",
    "anthropic_tools",
    "archival_insert",
    "archival_search",
    "bound_tools",
    "call_tool",
    "conversation_search",
    "core_memory_append",
    "core_memory_replace",
    "deep_recall",
    "memory_grep",
    "memory_insert",
    "memory_peek",
    "memory_rethink",
    "memory_search",
    "tool_schema",
]

HIT_TEXT_CHARS = 1000
_MAX_K = 50


@dataclass
class ToolContext:
    """What a tool call runs against: the memory, whose blocks, and the models for deep_recall."""

    memory: MemoryManager
    agent_id: str = "default"
    session_id: str | None = None
    root: LM | None = None
    sub: LM | None = None
    limits: Any = None
    actor: str = "agent"
    max_result_chars: int = 16_000
    agent_scoped: bool = True

    def recall_filter(self) -> dict[str, Any]:
        """Recall filter of searches: this agent's messages only, unless the context is store-wide."""
        return {"agent_id": self.agent_id} if self.agent_scoped else {}


# --- helpers ------------------------------------------------------------------------------


def _cut(text: str, limit: int = HIT_TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more characters]"


def _hit(hit: Any) -> dict[str, Any]:
    d = jsonable(hit)
    if "text" in d:  # search hits carry the text; grep hits only a snippet
        d["text"] = _cut(str(d["text"]))
        if len(d["text"]) <= 300:  # a short text says all its snippet says
            d.pop("snippet", None)
    # Empty fields only cost prompt space.
    return {k: v for k, v in d.items() if v not in (None, "", [], {})}


def _check_k(k: int) -> int:
    if not 1 <= k <= _MAX_K:
        raise ValidationError(f"k must be between 1 and {_MAX_K}, got {k}")
    return k


def _when(value: str | None, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(
            f"{name} must be an ISO 8601 date or time such as 2024-05-01 or 2024-05-01T14:30:00Z, got {value!r}"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _block(wm: Any, label: str) -> dict[str, Any]:
    b = wm.get(label)
    value = str(getattr(b, "value", ""))
    return {"label": label, "value": value, "chars": len(value), "limit": getattr(b, "limit", None)}


# --- search tools -------------------------------------------------------------------------


def memory_search(
    ctx: ToolContext, query: str, k: int = 5, tier: Literal["all", "recall", "archival"] = "all"
) -> dict[str, Any]:
    """Search long-term memory (past conversations and stored documents) by meaning and keywords.

    Args:
        query: What to look for, in natural language or keywords.
        k: How many results to return (1-50).
        tier: "recall" for past messages, "archival" for stored documents and notes, "all" for both.
    """
    tiers = ("recall", "archival") if tier == "all" else (tier,)
    hits = ctx.memory.search(query, tiers=tiers, k=_check_k(k), mode="hybrid", **ctx.recall_filter())
    return {"query": query, "results": [_hit(h) for h in hits]}


def conversation_search(
    ctx: ToolContext,
    query: str,
    k: int = 5,
    session_id: str | None = None,
    role: Literal["user", "assistant", "system", "tool"] | None = None,
    since: str | None = None,
    until: str | None = None,
) -> dict[str, Any]:
    """Search the full log of past conversation messages, optionally within one session, role or time range.

    Args:
        query: What to look for, in natural language or keywords.
        k: How many messages to return (1-50).
        session_id: Only messages of this conversation session.
        role: Only messages with this role: user, assistant, system or tool.
        since: Only messages at or after this ISO 8601 date or time (e.g. 2024-05-01).
        until: Only messages before this ISO 8601 date or time.
    """
    hits = ctx.memory.search_recall(
        query,
        k=_check_k(k),
        mode="hybrid",
        agent_id=ctx.recall_filter().get("agent_id"),
        session_id=session_id,
        role=role,
        since=_when(since, "since"),
        until=_when(until, "until"),
    )
    return {"query": query, "results": [_hit(h) for h in hits]}


def archival_search(ctx: ToolContext, query: str, k: int = 5, tags: list[str] | None = None) -> dict[str, Any]:
    """Search archival memory: documents, notes and facts stored for the long term.

    Args:
        query: What to look for, in natural language or keywords.
        k: How many passages to return (1-50).
        tags: Only passages carrying at least one of these tags.
    """
    hits = ctx.memory.search_archival(query, k=_check_k(k), mode="hybrid", tags=tags or None)
    return {"query": query, "results": [_hit(h) for h in hits]}


def memory_grep(
    ctx: ToolContext,
    pattern: str,
    tier: Literal["recall", "archival", "all"] = "recall",
    ignore_case: bool = True,
    limit: int = 20,
) -> dict[str, Any]:
    """Find exact text in memory with a regular expression (names, numbers, error messages, quotes).

    Args:
        pattern: A Python regular expression, e.g. "invoice #\\d+" or "(?i)postgres".
        tier: "recall" for past messages, "archival" for stored documents, "all" for both.
        ignore_case: Match regardless of upper or lower case.
        limit: The most matches to return (1-200).
    """
    if not 1 <= limit <= 200:
        raise ValidationError(f"limit must be between 1 and 200, got {limit}")
    hits = ctx.memory.grep(pattern, tier=tier, ignore_case=ignore_case, limit=limit, **ctx.recall_filter())
    return {"pattern": pattern, "matches": [_hit(h) for h in hits]}


def memory_peek(ctx: ToolContext, message_id: int, before: int = 3, after: int = 3) -> dict[str, Any]:
    """Read one past message in full with the messages around it (use an id from a search result).

    Args:
        message_id: The id of a message from conversation_search or memory_search (tier recall).
        before: How many earlier messages of the same session to include (0-20).
        after: How many later messages of the same session to include (0-20).
    """
    if not (0 <= before <= 20 and 0 <= after <= 20):
        raise ValidationError(f"before and after must be between 0 and 20, got {before} and {after}")
    messages = ctx.memory.recall.around(message_id, before=before, after=after)
    if ctx.agent_scoped:  # another agent's message is as unknown as a missing one
        if not any(m.id == message_id and m.agent_id == ctx.agent_id for m in messages):
            raise NotFoundError(f"no message #{message_id} for agent {ctx.agent_id!r}")
        messages = [m for m in messages if m.agent_id == ctx.agent_id]
    out = []
    for m in messages:
        d = jsonable(m)
        d["content"] = _cut(str(d.get("content", "")), 4 * HIT_TEXT_CHARS)
        out.append({k: v for k, v in d.items() if v not in (None, "", [], {})})
    return {"message_id": message_id, "messages": out}


# --- write tools --------------------------------------------------------------------------


def archival_insert(ctx: ToolContext, text: str, tags: list[str] | None = None) -> dict[str, Any]:
    """Store a fact, note or document passage in archival memory so it can be found later.

    Args:
        text: The text to store; make it self-contained (who, what, when).
        tags: Optional labels for filtering later, e.g. ["project-x", "decision"].
    """
    if not text.strip():
        raise ValidationError("archival_insert: text is empty; give the text to store")
    chunk_id = ctx.memory.archival.insert(text, tags=tuple(tags or ()))
    return {"id": chunk_id, "stored_chars": len(text), "tags": list(tags or [])}


def core_memory_append(ctx: ToolContext, label: str, text: str) -> dict[str, Any]:
    """Append text to a working-memory block (always visible in your context), on a new line.

    Args:
        label: The block to edit, e.g. "human" or "persona".
        text: The text to add.
    """
    wm = ctx.memory.blocks(ctx.agent_id)
    wm.append(label, text, actor=ctx.actor)
    return _block(wm, label)


def core_memory_replace(ctx: ToolContext, label: str, old: str, new: str) -> dict[str, Any]:
    """Replace exact text in a working-memory block; use an empty new text to delete.

    Args:
        label: The block to edit, e.g. "human" or "persona".
        old: The exact text currently in the block.
        new: The text to put in its place.
    """
    wm = ctx.memory.blocks(ctx.agent_id)
    wm.replace(label, old, new, actor=ctx.actor)
    return _block(wm, label)


def memory_insert(ctx: ToolContext, label: str, text: str, line: int = -1) -> dict[str, Any]:
    """Insert text into a working-memory block at a given line (-1 appends at the end).

    Args:
        label: The block to edit, e.g. "human" or "persona".
        text: The text to insert.
        line: The 0-based line number to insert before; -1 for the end.
    """
    wm = ctx.memory.blocks(ctx.agent_id)
    wm.insert(label, text, line=line, actor=ctx.actor)
    return _block(wm, label)


def memory_rethink(ctx: ToolContext, label: str, new_value: str) -> dict[str, Any]:
    """Rewrite a working-memory block completely, e.g. to reorganise or condense it.

    Args:
        label: The block to rewrite, e.g. "human" or "persona".
        new_value: The complete new content of the block.
    """
    wm = ctx.memory.blocks(ctx.agent_id)
    wm.rethink(label, new_value, actor=ctx.actor)
    return _block(wm, label)


# --- recursive recall ---------------------------------------------------------------------


def deep_recall(ctx: ToolContext, question: str) -> dict[str, Any]:
    """Answer a question that needs many memories combined (timelines, counts, comparisons) by letting a model explore all of memory with code.

    Args:
        question: The question to answer from memory, as specific as possible.
    """
    if ctx.root is None:
        raise ConfigError(
            "deep_recall needs a root model: configure one (e.g. AnthropicLM with ANTHROPIC_API_KEY "
            "set, or root=... when building the tool context or server)"
        )
    if not question.strip():
        raise ValidationError("deep_recall: question is empty")
    from agents.ask import ask  # the RLM stack loads only when this tool is used

    try:
        result = ask(
            ctx.memory, question, root=ctx.root, sub=ctx.sub, limits=ctx.limits,
            agent_id=ctx.agent_id if ctx.agent_scoped else None,
        )
    except RLMLimitError as exc:
        return {
            "answer": exc.partial_answer,
            "complete": False,
            "stopped_by": exc.limit_name,
            "message": str(exc),
        }
    return {
        "answer": result.answer,
        "complete": True,
        "iterations": getattr(result, "iterations", None),
        "cost_usd": getattr(result, "cost_usd", None),
    }


# --- registry -----------------------------------------------------------------------------

TOOLS: dict[str, Callable[..., Any]] = {
    fn.__name__: fn
    for fn in (
        memory_search,
        conversation_search,
        archival_search,
        memory_grep,
        memory_peek,
        archival_insert,
        core_memory_append,
        core_memory_replace,
        memory_insert,
        memory_rethink,
        deep_recall,
    )
}


def _lookup(name: str) -> Callable[..., Any]:
    try:
        return TOOLS[name]
    except KeyError:
        raise ValidationError(f"unknown tool {name!r}; available tools: {', '.join(TOOLS)}") from None


@functools.cache
def _schema(name: str) -> dict[str, Any]:
    return function_schema(TOOLS[name])


def tool_schema(fn: Callable[..., Any] | str) -> dict[str, Any]:
    """``{"name", "description", "input_schema"}`` of a tool, given the function or its name."""
    if isinstance(fn, str):
        _lookup(fn)
        return _schema(fn)
    if TOOLS.get(fn.__name__) is fn:
        return _schema(fn.__name__)
    return function_schema(fn)


def anthropic_tools(names: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Tool definitions for the Anthropic Messages API (all tools, or those named)."""
    return [tool_schema(_lookup(n).__name__) for n in (TOOLS if names is None else names)]


def call_tool(name: str, ctx: ToolContext, arguments: Any = None) -> Any:
    """Run a tool by name with arguments from outside; checked first, result JSON-ready and bounded."""
    fn = _lookup(name)
    kwargs = check_arguments(fn, arguments)
    return bound(jsonable(fn(ctx, **kwargs)), ctx.max_result_chars)


def bound_tools(ctx: ToolContext, names: Sequence[str] | None = None) -> dict[str, Callable[..., Any]]:
    """The tools with ``ctx`` bound: plain callables for a REPL namespace, keeping name and docs."""
    out: dict[str, Callable[..., Any]] = {}
    for n in TOOLS if names is None else names:
        fn = _lookup(n)

        def call(*args: Any, _name: str = n, **kwargs: Any) -> Any:
            params = list(inspect.signature(TOOLS[_name]).parameters)[1:]
            if len(args) > len(params):
                raise ValidationError(f"{_name} takes at most {len(params)} positional arguments")
            merged = dict(zip(params, args, strict=False)) | kwargs
            return call_tool(_name, ctx, merged)

        call.__name__ = fn.__name__
        call.__doc__ = fn.__doc__
        sig = inspect.signature(fn)
        call.__signature__ = sig.replace(parameters=list(sig.parameters.values())[1:])  # type: ignore[attr-defined]
        out[n] = call
    return out
