"""Every memory operation by name, and the ``View`` through which a surface shows one.

Rules this module keeps:

* ``OPERATIONS`` is the list of what memory can do; each entry is the one definition.
* A surface (the Agent's tools, the REPL, HTTP, MCP, Letta, the CLI) shows an operation
  through a ``View``: its own name, a subset of the parameters, some fixed, its own
  description when it must differ. A view never has defaults of its own: its schema is the
  operation's schema narrowed, so a default changed in ``DEFAULTS`` changes on every surface.
* ``View.call`` checks the arguments (``check_arguments``) before the operation runs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import memory.ops.blocks as blocks
import memory.ops.reading as reading
import memory.ops.writing as writing
from memory.errors import ValidationError
from memory.ops.schema import check_arguments, function_schema
from memory.ops.values import OpContext

__all__ = ["OPERATIONS", "View", "call", "operation", "view"]

OPERATIONS: dict[str, Callable[..., Any]] = {
    fn.__name__: fn
    for fn in (
        reading.search, reading.grep, reading.peek, reading.sessions,
        writing.log, writing.remember, writing.note, writing.forget,
        blocks.blocks_list, blocks.blocks_show, blocks.blocks_set, blocks.blocks_append,
        blocks.blocks_replace, blocks.blocks_insert, blocks.blocks_rethink, blocks.blocks_edit,
        blocks.blocks_delete, blocks.blocks_history,
    )
}  # fmt: skip


def operation(name: str) -> Callable[..., Any]:
    try:
        return OPERATIONS[name]
    except KeyError:
        raise ValidationError(
            f"unknown memory operation {name!r}; operations: {', '.join(OPERATIONS)}"
        ) from None


@dataclass(frozen=True)
class View:
    """An operation as one surface shows it (see the module docstring)."""

    name: str
    op: Callable[..., Any]
    params: tuple[str, ...] | None = None  # None: all of the operation's parameters
    fixed: Mapping[str, Any] = field(default_factory=dict)
    description: str | None = None

    def __post_init__(self) -> None:
        own = self.op_params()
        unknown = set(self.params or ()) | set(self.fixed)
        if unknown - set(own):
            raise TypeError(f"view {self.name}: {sorted(unknown - set(own))} are not parameters of {self.op.__name__}")

    def op_params(self) -> list[str]:
        return list(inspect.signature(self.op).parameters)[1:]

    @property
    def parameters(self) -> tuple[str, ...]:
        """The parameters this view takes, in the operation's order."""
        if self.params is not None:
            return tuple(p for p in self.op_params() if p in self.params)
        return tuple(p for p in self.op_params() if p not in self.fixed)

    def defaults(self) -> dict[str, Any]:
        """Each parameter's default, as the operation defines it."""
        sig = inspect.signature(self.op).parameters
        return {p: sig[p].default for p in self.parameters if sig[p].default is not inspect.Parameter.empty}

    def schema(self) -> dict[str, Any]:
        """``{"name", "description", "input_schema"}`` (Anthropic tool format)."""
        return function_schema(self.op, name=self.name, names=self.parameters, description=self.description)

    def check(self, arguments: Any) -> dict[str, Any]:
        return check_arguments(self.op, arguments, names=self.parameters, tool=self.name)

    def call(self, ctx: OpContext, arguments: Any = None) -> Any:
        """Check ``arguments`` (a JSON object from outside) and run the operation."""
        return self.op(ctx, **self.check(arguments), **self.fixed)


def view(name: str, op: str | Callable[..., Any], params: Sequence[str] | None = None, *,
         fixed: Mapping[str, Any] | None = None, description: str | None = None) -> View:
    """A ``View`` of an operation (given by name or function)."""
    fn = operation(op) if isinstance(op, str) else op
    return View(name, fn, None if params is None else tuple(params), dict(fixed or {}), description)


def call(name: str, ctx: OpContext, arguments: Any = None) -> Any:
    """Run the operation ``name`` with arguments from outside (checked first)."""
    return view(name, name).call(ctx, arguments)
