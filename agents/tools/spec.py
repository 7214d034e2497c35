"""From a plain typed function to a tool: description, JSON schema, argument checking, bounds.

Rules this module keeps:

* A tool is a function ``fn(ctx, arg: T = default, ...)`` with a Google-style docstring. The
  docstring's text before ``Args:`` is the description; each ``Args:`` entry describes one
  parameter. The JSON schema comes from the signature (type hints and defaults); the first
  parameter (the context) never appears in it.
* Supported parameter types: ``str``, ``int``, ``float``, ``bool``, ``list[str]``, ``Literal``
  of strings, ``dict[str, Any]`` (a JSON object), and any of them ``| None``. Anything else is refused when the schema is built,
  so a tool that cannot be described never reaches a model.
* Arguments from outside (a model, an HTTP body, an MCP client) are checked against the
  signature before the function runs: unknown names, missing required ones and values of the
  wrong type raise ``ValidationError`` naming the valid choices. Harmless spellings are
  coerced (``"5"`` to ``5``, ``"true"`` to ``True``, one string to a one-item list).
* Results are made JSON-serialisable and bounded in size (``bound``) before they leave.
"""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, Literal, Union

from memory.errors import ValidationError

__all__ = [
    "bound",
    "check_arguments",
    "function_schema",
    "jsonable",
    "parse_docstring",
]

_ARG_LINE = re.compile(r"^(\*{0,2}\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")
_SECTIONS = ("Args:", "Arguments:", "Returns:", "Return:", "Raises:", "Yields:", "Examples:", "Example:", "Note:")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into (description, {argument: description})."""
    text = inspect.cleandoc(doc or "")
    desc_lines: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped in _SECTIONS:
            section = stripped.rstrip(":").lower()
            current = None
            continue
        if section is None:
            desc_lines.append(line)
        elif section in ("args", "arguments"):
            m = _ARG_LINE.match(stripped)
            indent = len(line) - len(line.lstrip())
            if m and indent <= 4:
                current = m.group(1).lstrip("*")
                args[current] = m.group(3).strip()
            elif current and stripped:
                args[current] = f"{args[current]} {stripped}".strip()
    return "\n".join(desc_lines).strip(), args


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(members) == 1 and len(typing.get_args(tp)) == 2:
            return members[0], True
    return tp, False


def _type_schema(tp: Any, where: str) -> dict[str, Any]:
    inner, nullable = _unwrap_optional(tp)
    origin = typing.get_origin(inner)
    schema: dict[str, Any]
    if inner is str:
        schema = {"type": "string"}
    elif inner is bool:
        schema = {"type": "boolean"}
    elif inner is int:
        schema = {"type": "integer"}
    elif inner is float:
        schema = {"type": "number"}
    elif origin is list and typing.get_args(inner) in ((str,), ()):
        schema = {"type": "array", "items": {"type": "string"}}
    elif origin is Literal and all(isinstance(a, str) for a in typing.get_args(inner)):
        schema = {"type": "string", "enum": list(typing.get_args(inner))}
    elif origin is dict or inner is dict:
        schema = {"type": "object"}
    else:
        raise TypeError(f"{where}: unsupported parameter type {tp!r} for a tool")
    if nullable:
        schema["nullable"] = True
    return schema


def function_schema(fn: Callable[..., Any]) -> dict[str, Any]:
    """``{"name", "description", "input_schema"}`` of a tool (Anthropic tool format)."""
    description, arg_docs = parse_docstring(fn.__doc__)
    if not description:
        raise TypeError(f"tool {fn.__name__} has no docstring: its text is the description")
    hints = typing.get_type_hints(fn)
    params = list(inspect.signature(fn).parameters.values())[1:]
    properties: dict[str, Any] = {}
    required: list[str] = []
    for p in params:
        if p.name not in hints:
            raise TypeError(f"tool {fn.__name__}: parameter {p.name!r} has no type hint")
        prop = _type_schema(hints[p.name], f"{fn.__name__}({p.name})")
        nullable = prop.pop("nullable", False)
        if p.name in arg_docs:
            prop["description"] = arg_docs[p.name]
        if p.default is inspect.Parameter.empty:
            required.append(p.name)
        elif p.default is not None or not nullable:
            prop["default"] = p.default
        properties[p.name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return {"name": fn.__name__, "description": description, "input_schema": schema}


_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def _coerce(value: Any, tp: Any, tool: str, name: str) -> Any:
    inner, nullable = _unwrap_optional(tp)
    if value is None:
        if nullable:
            return None
        raise ValidationError(f"{tool}: argument {name!r} must not be null")
    origin = typing.get_origin(inner)
    bad = ValidationError(
        f"{tool}: argument {name!r} must be {_describe(inner)}, got {type(value).__name__} {_short(value)}"
    )
    if inner is str:
        if isinstance(value, str):
            return value
        raise bad
    if inner is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise bad
    if inner is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            return int(value)
        raise bad
    if inner is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if origin is list:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return list(value)
        raise bad
    if origin is dict or inner is dict:
        if isinstance(value, dict):
            return value
        raise bad
    if origin is Literal:
        choices = typing.get_args(inner)
        if value in choices:
            return value
        raise ValidationError(
            f"{tool}: argument {name!r} must be one of {', '.join(map(repr, choices))}; got {_short(value)}"
        )
    raise bad  # pragma: no cover - function_schema refuses other types up front


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is list:
        return "a list of strings"
    if origin is dict:
        return "a JSON object"
    if origin is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(tp)))
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(tp, str(tp))


def _short(value: Any, limit: int = 60) -> str:
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def check_arguments(fn: Callable[..., Any], arguments: Any) -> dict[str, Any]:
    """Check and coerce ``arguments`` for ``fn`` (context excluded); raise ``ValidationError``."""
    tool = fn.__name__
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise ValidationError(f"{tool}: arguments must be a JSON object, got {type(arguments).__name__}")
    hints = typing.get_type_hints(fn)
    params = {p.name: p for p in list(inspect.signature(fn).parameters.values())[1:]}
    unknown = sorted(set(arguments) - set(params))
    if unknown:
        raise ValidationError(
            f"{tool}: unknown argument(s) {', '.join(map(repr, unknown))}; "
            f"valid arguments: {', '.join(params) or '(none)'}"
        )
    out: dict[str, Any] = {}
    for name, p in params.items():
        if name in arguments:
            out[name] = _coerce(arguments[name], hints[name], tool, name)
        elif p.default is inspect.Parameter.empty:
            raise ValidationError(f"{tool}: missing required argument {name!r}")
    return out


def jsonable(value: Any) -> Any:
    """A JSON-serialisable copy of ``value`` (datetimes as ISO strings, objects via to_dict)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return jsonable(to_dict())
    return str(value)


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, default=str))


def bound(value: Any, max_chars: int) -> Any:
    """Shrink a JSON value until its serialised form fits ``max_chars``.

    Lists inside a dict lose items from the end (the least relevant results) and the dict gets
    ``"truncated": true``; a string is cut with a marker saying how much was left out.
    """
    if _size(value) <= max_chars:
        return value
    if isinstance(value, str):
        keep = max(0, max_chars - 40)
        return value[:keep] + f"... [{len(value) - keep} more characters]"
    if isinstance(value, dict):
        out = dict(value)
        lists = [k for k, v in out.items() if isinstance(v, list)]
        for key in lists:
            items = list(out[key])
            while items and _size(out) > max_chars:
                items.pop()
                out[key] = items
                out["truncated"] = True
        for key, v in list(out.items()):
            if _size(out) <= max_chars:
                break
            if isinstance(v, str) and len(v) > 200:
                out[key] = bound(v, max(200, max_chars - (_size(out) - len(v))))
                out["truncated"] = True
        return out if _size(out) <= max_chars else bound(json.dumps(out, default=str), max_chars)
    if isinstance(value, list):
        return bound({"results": value}, max_chars)
    return bound(json.dumps(value, default=str), max_chars)
