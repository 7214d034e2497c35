"""Checks the parent applies to what crosses the sandbox boundary, and proxy specs.

Rules this module keeps:

* Every text from the worker is cut to a bound before it is used (``cut``); a cell result of
  any other shape than the worker's own is rejected (``cell_streams`` returns None).
* ``function_spec`` describes a parent function for its worker-side proxy: name, docstring,
  parameters as text, never the function itself.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from memory.errors import ValidationError

__all__ = ["await_value", "cell_streams", "cut", "function_spec"]


def cut(text: Any, cap: int) -> str:
    text = text if isinstance(text, str) else repr(text)[:cap]
    return text if len(text) <= cap else text[:cap] + f"... [{len(text) - cap} characters cut]"


async def await_value(awaitable: Any) -> Any:
    return await awaitable


def function_spec(name: str, fn: Callable[..., Any]) -> dict[str, Any]:
    if not name.isidentifier():
        raise ValidationError(f"function name {name!r} is not a Python identifier")
    if not callable(fn):
        raise ValidationError(f"functions[{name!r}] is not callable")
    params: list[dict[str, Any]] | None
    try:
        params = [
            {
                "name": p.name,
                "kind": int(p.kind),
                "default": None if p.default is p.empty else repr(p.default),
                "annotation": None
                if p.annotation is p.empty
                else (p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", str(p.annotation))),
            }
            for p in inspect.signature(fn).parameters.values()
        ]
    except (TypeError, ValueError):
        params = None
    return {"name": name, "doc": inspect.getdoc(fn), "params": params}


def _stream(value: Any) -> tuple[str, str, int] | None:
    if isinstance(value, tuple) and len(value) == 3:
        head, tail, total = value
        if isinstance(head, str) and isinstance(tail, str) and type(total) is int and total >= 0:
            return head, tail, max(total, len(head) + len(tail))
    return None


def cell_streams(payload: Any) -> tuple[tuple[str, str, int], tuple[str, str, int]] | None:
    """stdout and stderr of a cell result, or None if it is not the shape the worker sends."""
    if not isinstance(payload, dict) or not isinstance(payload.get("error"), str | None):
        return None
    out, err = _stream(payload.get("stdout")), _stream(payload.get("stderr"))
    return None if out is None or err is None else (out, err)
