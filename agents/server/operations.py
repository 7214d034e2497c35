"""The routes of the HTTP API: memory's operations (``memory.ops``) by method and path.

Rules this module keeps:

* A route is a ``View`` of one operation (the tool's view where a tool exists) plus the shape
  of its JSON reply; the view's schema validates requests and generates the OpenAPI
  description (``agents.server.openapi``). Nothing here restates a default or a check.
* Routes never touch HTTP: they take the merged arguments (path, query, body) and return
  JSON-ready values; ``agents.server.http`` maps them to statuses and errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agents.tools import builtin as T
from memory.ops.registry import View, view
from memory.ops.schema import parse_docstring
from memory.ops.values import jsonable

__all__ = ["OPERATIONS", "Operation"]


def stats(ctx: T.ToolContext) -> dict[str, Any]:
    """Counts and sizes of every tier."""
    return jsonable(ctx.memory.stats(ctx.agent_id if ctx.agent_scoped else None))  # type: ignore[no-any-return]


def _items(key: str, arg: str | None = None) -> Callable[[dict[str, Any], Any], Any]:
    def shape(args: dict[str, Any], items: Any) -> Any:
        out = {key: [jsonable(i) for i in items]}
        return {arg: args[arg], **out} if arg else out

    return shape


def _same(args: dict[str, Any], result: Any) -> Any:
    return jsonable(result)


@dataclass(frozen=True)
class Operation:
    """One route: method, path, the view it runs and the shape of its reply."""

    method: str
    path: str
    view: View
    shape: Callable[[dict[str, Any], Any], Any] = _same
    status: int = 200
    tag: str = "memory"
    operation_id: str | None = None

    @property
    def summary(self) -> str:
        return parse_docstring(self.view.description or self.view.op.__doc__)[0].split("\n")[0]

    def run(self, ctx: Any, arguments: dict[str, Any]) -> Any:
        """Check the request's arguments, run the operation, shape the reply."""
        kwargs = self.view.check(arguments)
        return self.shape(kwargs, self.view.op(ctx, **kwargs, **self.view.fixed))


def _tool(method: str, path: str, name: str, **kw: Any) -> Operation:
    tool = T.TOOLS[name]
    return Operation(method, path, tool.view, tool.shape, **kw)


OPERATIONS: tuple[Operation, ...] = (
    Operation("POST", "/search", view("search", "search"), _items("results", "query")),
    Operation("POST", "/grep", view("grep", "grep"), _items("matches", "pattern")),
    _tool("GET", "/messages/{message_id}", "memory_peek"),
    Operation("POST", "/messages", view("append_message", "log"), status=201),
    Operation("GET", "/sessions", view("sessions", "sessions"), _items("sessions")),
    Operation("POST", "/forget", view("forget", "forget")),
    Operation("POST", "/archival", view("insert_archival", "remember"),
              lambda a, i: {"id": i}, status=201),
    Operation("GET", "/blocks", view("list_blocks", "blocks_list"), _items("blocks"), tag="blocks"),
    Operation("GET", "/blocks/{label}", view("get_block", "blocks_show"), tag="blocks"),
    Operation("PUT", "/blocks/{label}", view("put_block", "blocks_set"), tag="blocks"),
    _tool("POST", "/blocks/{label}/append", "core_memory_append", tag="blocks"),
    _tool("POST", "/blocks/{label}/replace", "core_memory_replace", tag="blocks"),
    _tool("POST", "/blocks/{label}/insert", "memory_insert", tag="blocks"),
    _tool("POST", "/blocks/{label}/rethink", "memory_rethink", tag="blocks"),
    Operation("POST", "/blocks/{label}/edit", view("edit_block", "blocks_edit"), tag="blocks"),
    Operation("GET", "/blocks/{label}/history", view("block_history", "blocks_history"),
              _items("edits"), tag="blocks"),
    _tool("POST", "/ask", "deep_recall", tag="ask", operation_id="ask"),
    Operation("GET", "/stats", view("stats", stats)),
)  # fmt: skip
