"""The memory tools: memory's operations as a model calls them (Agent, Letta, HTTP, MCP).

Rules this module keeps:

* A tool is a ``View`` of one operation of ``memory.ops`` (its Letta-style name, the
  parameters a model sees, a few fixed) plus how its result is shaped for a prompt. The
  description, schema, defaults and argument checks are the operation's; nothing here
  restates them. ``deep_recall`` is the one tool that is not a memory operation (it runs
  the RLM); it is a typed function described the same way.
* ``call_tool`` checks the arguments first, so a model's malformed call never reaches the
  stores, and returns a JSON-serialisable result bounded by ``ctx.max_result_chars``.
* Long texts in results are cut to ``HIT_TEXT_CHARS`` with a pointer to the full record
  (``memory_peek`` for messages), and empty fields are dropped: one search cannot flood a
  prompt.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agents.tools.bound import bound
from memory.errors import ConfigError, RLMLimitError, ValidationError
from memory.ops.registry import View, view
from memory.ops.schema import Text, bind_positional
from memory.ops.values import OpContext, jsonable

if TYPE_CHECKING:
    from rlm_core.lm import LM

__all__ = [
    "HIT_TEXT_CHARS",
    "TOOLS",
    "Tool",
    "ToolContext",
    "anthropic_tools",
    "bound_tools",
    "call_tool",
    "deep_recall",
    "tool_schema",
]

HIT_TEXT_CHARS = 1000


@dataclass
class ToolContext(OpContext):
    """An ``OpContext`` plus the models ``deep_recall`` runs and the result budget."""

    root: LM | None = None
    sub: LM | None = None
    limits: Any = None
    max_result_chars: int = 16_000


# --- result shapes ------------------------------------------------------------------------


def _cut(text: str, limit: int = HIT_TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more characters]"


def _compact(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v not in (None, "", [], {})}  # empty fields cost prompt space


def _hit(hit: Any) -> dict[str, Any]:
    d = jsonable(hit)
    if "text" in d:  # search hits carry the text; grep hits only a snippet
        d["text"] = _cut(str(d["text"]))
        if len(d["text"]) <= 300:  # a short text says all its snippet says
            d.pop("snippet", None)
    return _compact(d)


def _message(m: Any) -> dict[str, Any]:
    d = jsonable(m)
    d["content"] = _cut(str(d.get("content", "")), 4 * HIT_TEXT_CHARS)
    return _compact(d)


def _block(b: Any) -> dict[str, Any]:
    return {"label": b.label, "value": b.value, "chars": len(b.value), "limit": b.limit}


def _hits(key: str, arg: str) -> Callable[[dict[str, Any], Any], Any]:
    return lambda args, hits: {key: args[arg], "results" if key == "query" else "matches": [_hit(h) for h in hits]}


# --- recursive recall ---------------------------------------------------------------------


def deep_recall(ctx: ToolContext, question: Text) -> dict[str, Any]:
    """Answer a question that needs many memories combined (timelines, counts, comparisons) by letting a model explore all of memory with code.

    Args:
        question: The question to answer from memory, as specific as possible.
    """
    if ctx.root is None:
        raise ConfigError(
            "deep_recall needs a root model: configure one (e.g. AnthropicLM with ANTHROPIC_API_KEY "
            "set, --base-url for a local server, or root=... when building the tool context or server)"
        )
    from agents.ask import ask  # the RLM stack loads only when this tool is used

    try:
        result = ask(
            ctx.memory, question, root=ctx.root, sub=ctx.sub, limits=ctx.limits,
            agent_id=ctx.agent_id if ctx.agent_scoped else None,
        )  # fmt: skip
    except RLMLimitError as exc:
        return {"answer": exc.partial_answer, "complete": False, "stopped_by": exc.limit_name,
                "message": str(exc)}  # fmt: skip
    return {"answer": result.answer, "complete": True, "iterations": getattr(result, "iterations", None),
            "cost_usd": getattr(result, "cost_usd", None)}  # fmt: skip


# --- the tools ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Tool:
    """One tool: the view of an operation and the shape of its result."""

    view: View
    shape: Callable[[dict[str, Any], Any], Any]

    @property
    def name(self) -> str:
        return self.view.name

    @property
    def __doc__(self) -> str | None:  # type: ignore[override]
        return self.view.description or self.view.op.__doc__

    def run(self, ctx: Any, arguments: Any = None) -> Any:
        kwargs = self.view.check(arguments)
        return self.shape(kwargs, self.view.op(ctx, **kwargs, **self.view.fixed))


def _tool(name: str, op: Any, params: Sequence[str] | None, shape: Callable[[dict[str, Any], Any], Any],
          **kw: Any) -> Tool:
    return Tool(view(name, op, params, **kw), shape)


_TOOL_LIST = (
    _tool("memory_search", "search", ("query", "k", "tier"), _hits("query", "query")),
    _tool("conversation_search", "search", ("query", "k", "session_id", "role", "since", "until"),
          _hits("query", "query"), fixed={"tier": "recall"},
          description="Search the full log of past conversation messages, optionally within one "
          "session, role or time range."),
    _tool("archival_search", "search", ("query", "k", "tags"), _hits("query", "query"),
          fixed={"tier": "archival"},
          description="Search archival memory: documents, notes and facts stored for the long term."),
    _tool("memory_grep", "grep", ("pattern", "tier", "ignore_case", "literal", "limit"),
          _hits("pattern", "pattern")),
    _tool("memory_peek", "peek", None,
          lambda a, ms: {"message_id": a["message_id"], "messages": [_message(m) for m in ms]}),
    _tool("archival_insert", "remember", ("text", "tags"),
          lambda a, i: {"id": i, "stored_chars": len(a["text"]), "tags": list(a.get("tags") or [])}),
    _tool("core_memory_append", "blocks_append", None, lambda a, b: _block(b)),
    _tool("core_memory_replace", "blocks_replace", None, lambda a, b: _block(b)),
    _tool("memory_insert", "blocks_insert", None, lambda a, b: _block(b)),
    _tool("memory_rethink", "blocks_rethink", None, lambda a, b: _block(b)),
    _tool("deep_recall", deep_recall, None, lambda a, r: r),
    # Not offered to the Agent by default (it logs its own turns), but to MCP and HTTP clients.
    _tool("memory_log", "log", None, lambda a, m: _message(m)),
    _tool("memory_sessions", "sessions", None, lambda a, ss: {"sessions": [jsonable(s) for s in ss]}),
    _tool("memory_blocks", "blocks_list", None, lambda a, bs: {"blocks": [_block(b) for b in bs]}),
    _tool("core_memory_set", "blocks_set", None, lambda a, b: _block(b)),
)  # fmt: skip

TOOLS: dict[str, Tool] = {t.name: t for t in _TOOL_LIST}


def _lookup(name: str) -> Tool:
    try:
        return TOOLS[name]
    except KeyError:
        raise ValidationError(f"unknown tool {name!r}; available tools: {', '.join(TOOLS)}") from None


def tool_schema(tool: Tool | str) -> dict[str, Any]:
    """``{"name", "description", "input_schema"}`` of a tool, given the tool or its name."""
    return (_lookup(tool) if isinstance(tool, str) else tool).view.schema()


def anthropic_tools(names: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Tool definitions for the Anthropic Messages API (all tools, or those named)."""
    return [tool_schema(_lookup(n)) for n in (TOOLS if names is None else names)]


def call_tool(name: str, ctx: ToolContext, arguments: Any = None) -> Any:
    """Run a tool by name with arguments from outside; checked first, result JSON-ready and bounded."""
    return bound(jsonable(_lookup(name).run(ctx, arguments)), ctx.max_result_chars)


def bound_tools(ctx: ToolContext, names: Sequence[str] | None = None) -> dict[str, Callable[..., Any]]:
    """The tools with ``ctx`` bound: plain callables for a REPL namespace, keeping name and docs."""
    out: dict[str, Callable[..., Any]] = {}
    for n in TOOLS if names is None else names:
        tool = _lookup(n)
        params = tool.view.parameters

        def call(*args: Any, _name: str = n, _params: tuple[str, ...] = params, **kwargs: Any) -> Any:
            return call_tool(_name, ctx, bind_positional(_name, _params, args, kwargs))

        call.__name__ = n
        call.__doc__ = tool.__doc__
        sig = inspect.signature(tool.view.op)
        call.__signature__ = sig.replace(  # type: ignore[attr-defined]
            parameters=[p for p in sig.parameters.values() if p.name in params]
        )
        out[n] = call
    return out
