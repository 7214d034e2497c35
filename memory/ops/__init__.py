"""Every memory operation once: search, grep, peek, sessions, log, remember, note, forget and
the block operations, with one set of defaults and limits and one recall filter value.

Rules this package keeps:

* An operation is a typed function ``op(ctx: OpContext, ...)``; its docstring is the
  description and its signature, through pydantic, is the schema and the argument checks
  (``memory.ops.schema``). The REPL, the Agent's tools, HTTP, MCP, Letta and the CLI are
  adapters over these functions (``View``); none of them restates a default.
* Defaults and limits live in ``memory.ops.values.DEFAULTS``.
* Like ``memory``, this package imports no LLM code; names load lazily, so ``import
  memory.ops`` costs nothing until an operation is used (pydantic loads with the schemas).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from memory.lazy import lazy_exports

__all__ = [
    "DEFAULTS",
    "OPERATIONS",
    "Defaults",
    "ForgetResult",
    "OpContext",
    "RecallFilter",
    "View",
    "call",
    "check_arguments",
    "function_schema",
    "jsonable",
    "operation",
    "parse_when",
    "view",
]

_WHERE = {
    "DEFAULTS": "memory.ops.values",
    "Defaults": "memory.ops.values",
    "OpContext": "memory.ops.values",
    "RecallFilter": "memory.ops.values",
    "jsonable": "memory.ops.values",
    "parse_when": "memory.ops.values",
    "ForgetResult": "memory.ops.writing",
    "check_arguments": "memory.ops.schema",
    "function_schema": "memory.ops.schema",
    "OPERATIONS": "memory.ops.registry",
    "View": "memory.ops.registry",
    "call": "memory.ops.registry",
    "operation": "memory.ops.registry",
    "view": "memory.ops.registry",
}

if TYPE_CHECKING:
    from memory.ops.registry import OPERATIONS, View, call, operation, view
    from memory.ops.schema import check_arguments, function_schema
    from memory.ops.values import DEFAULTS, Defaults, OpContext, RecallFilter, jsonable, parse_when
    from memory.ops.writing import ForgetResult

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)
