"""From a typed operation to its schema and its argument checks, through pydantic.

Rules this module keeps:

* An operation is ``fn(ctx, arg: T = default, ...)`` with a Google-style docstring: the text
  before ``Args:`` is the description, each ``Args:`` entry describes one parameter. A pydantic
  model built from the signature (the context excluded) is the one schema: the JSON schema
  every surface shows (MCP, HTTP/OpenAPI, Letta, the model's tool list) and the checks every
  surface runs before the operation touches a store.
* Arguments from outside are untrusted: unknown names, missing ones, wrong types, NaN and
  infinities, integers out of range and malformed ids raise ``memory.errors.ValidationError``
  (a 400-class error) naming the argument and what to pass, never ``OverflowError`` or a
  bare ``ValueError``. Harmless spellings are accepted (``"5"`` for 5, ``"true"`` for true,
  one string for a one-item list); a boolean is not an integer.
* Parameter types are the annotated ones below (``K``, ``Id``, ``Text``, ``When``,
  ``Tags``, ...) or plain ``str``/``int``/``float``/``bool``/``Literal``/``dict``; anything
  pydantic cannot describe as JSON is refused when the schema is built.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
import typing
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

import pydantic
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, WithJsonSchema

from memory.errors import ValidationError
from memory.ops.values import DEFAULTS, parse_when

__all__ = [
    "MAX_ID",
    "BlockLimit",
    "Context",
    "GrepLimit",
    "HistoryLimit",
    "Id",
    "Ids",
    "Int",
    "K",
    "Line",
    "Role",
    "SessionLimit",
    "Tags",
    "Text",
    "Tokens",
    "When",
    "bind_positional",
    "check_arguments",
    "check_int",
    "function_schema",
    "parse_docstring",
]

MAX_ID = 2**62  # beyond any row id; keeps user integers inside SQL's 64-bit range


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be an integer, not true/false")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite integer")
    # Text (a path or query parameter) must spell an integer: "1.0" or "1e3" is refused.
    if isinstance(value, str) and not value.strip().lstrip("+-").isdigit():
        raise ValueError(f"must be an integer, got {value[:40]!r}")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must be a non-empty string")
    return value


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


# Integers in range (a bool is refused, a whole float accepted), one alias per limit.
_Int = BeforeValidator(_not_bool)
Int = Annotated[int, _Int]
K = Annotated[int, Field(ge=1, le=DEFAULTS.max_k), _Int]
GrepLimit = Annotated[int, Field(ge=1, le=DEFAULTS.max_grep_limit), _Int]
Context = Annotated[int, Field(ge=0, le=DEFAULTS.max_context), _Int]
SessionLimit = Annotated[int, Field(ge=0, le=DEFAULTS.max_sessions), _Int]
HistoryLimit = Annotated[int, Field(ge=1, le=DEFAULTS.max_history), _Int]
BlockLimit = Annotated[int, Field(ge=1, le=10_000_000), _Int]
Tokens = Annotated[int, Field(ge=0, le=2**31), _Int]
Line = Annotated[int, Field(ge=-1, le=10_000_000), _Int]
Id = Annotated[int, Field(ge=1, le=MAX_ID), BeforeValidator(_not_bool)]
Ids = Annotated[list[Id], BeforeValidator(lambda v: [v] if isinstance(v, int | str) else v)]
Text = Annotated[str, AfterValidator(_not_blank)]
# A writer's own identity for a message (an idempotency key, a record's uuid).
Key = Annotated[str, Field(min_length=1, max_length=200)]
def _when(value: Any) -> Any:
    try:
        return parse_when(value)
    except ValidationError as exc:
        raise ValueError(str(exc).removeprefix("time ")) from None


When = Annotated[
    datetime | None,
    BeforeValidator(_when),
    WithJsonSchema({"type": "string", "format": "date"}),
]
Tags = Annotated[list[str], BeforeValidator(_one_or_many)]
Role = Literal["user", "assistant", "system", "tool"]

_ARG_LINE = re.compile(r"^(\*{0,2}\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")
_SECTIONS = ("Args:", "Arguments:", "Returns:", "Return:", "Raises:", "Yields:", "Examples:",
             "Example:", "Note:")  # fmt: skip
_WORDS = (
    (", unable to parse string as an integer", ""), (", unable to interpret input", ""),
    (", unable to parse string as a number", ""), ("a valid integer", "an integer"),
    ("a valid number", "a number"), ("a valid boolean", "true or false"),
    ("a valid string", "a string"), ("a valid list", "a list"), ("a valid dictionary", "a JSON object"),
)  # fmt: skip
_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False, arbitrary_types_allowed=False)


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


def _params(fn: Callable[..., Any]) -> list[inspect.Parameter]:
    return list(inspect.signature(fn).parameters.values())[1:]


@functools.cache
def _model(fn: Callable[..., Any], names: tuple[str, ...] | None = None) -> type[pydantic.BaseModel]:
    """The pydantic model of ``fn``'s arguments (only ``names``, when given)."""
    description, arg_docs = parse_docstring(fn.__doc__)
    if not description:
        raise TypeError(f"operation {fn.__name__} has no docstring: its text is the description")
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except NameError as exc:
        raise TypeError(f"{fn.__name__}: unsupported parameter type (cannot resolve {exc.name!r})") from None
    fields: dict[str, Any] = {}
    for p in _params(fn):
        if names is not None and p.name not in names:
            continue
        if p.name not in hints:
            raise TypeError(f"operation {fn.__name__}: parameter {p.name!r} has no type hint")
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (hints[p.name], Field(default, description=arg_docs.get(p.name)))
    model = pydantic.create_model(f"{fn.__name__}_arguments", __config__=_CONFIG, **fields)
    try:
        model.model_json_schema()
    except pydantic.PydanticUserError as exc:
        raise TypeError(f"{fn.__name__}: unsupported parameter type for a schema: {exc}") from None
    except Exception as exc:  # pydantic's schema errors share no base class
        raise TypeError(f"{fn.__name__}: unsupported parameter type for a schema: {exc}") from None
    return model


def _clean(prop: dict[str, Any]) -> dict[str, Any]:
    """A property as a model reads it best: no titles, ``X | None`` shown as ``X``."""
    prop = {k: v for k, v in prop.items() if k != "title"}
    options = prop.pop("anyOf", None)
    if options is not None:
        real = [o for o in options if o.get("type") != "null"]
        if len(real) == 1:
            prop = {**{k: v for k, v in real[0].items() if k != "title"}, **prop}
        else:
            prop["anyOf"] = real
    if prop.get("default", 0) is None:
        del prop["default"]
    if "items" in prop:
        prop["items"] = _clean(prop["items"])
    return prop


def function_schema(
    fn: Callable[..., Any], *, name: str | None = None, names: Sequence[str] | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """``{"name", "description", "input_schema"}`` of an operation (Anthropic tool format)."""
    try:
        model = _model(fn, None if names is None else tuple(names))
    except pydantic.PydanticSchemaGenerationError as exc:
        raise TypeError(f"{fn.__name__}: unsupported parameter type for a tool: {exc}") from None
    raw = model.model_json_schema()
    props = {k: _clean(v) for k, v in raw.get("properties", {}).items()}
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if raw.get("required"):
        schema["required"] = list(raw["required"])
    desc = description if description is not None else parse_docstring(fn.__doc__)[0]
    return {"name": name or fn.__name__, "description": desc, "input_schema": schema}


def _message(tool: str, err: Any, valid: Sequence[str]) -> str:
    loc = ".".join(str(x) for x in err.get("loc", ()))
    kind = err.get("type", "")
    if kind == "missing":
        return f"{tool}: missing required argument {loc!r}"
    if kind == "extra_forbidden":
        return (f"{tool}: unknown argument(s) {loc!r}; valid arguments: "
                f"{', '.join(valid) or '(none)'}")  # fmt: skip
    msg = str(err.get("msg", "is invalid"))
    if kind == "value_error":  # our own message already says what was given
        return f"{tool}: argument {loc!r} {msg.removeprefix('Value error, ')}"
    msg = msg.replace("Input should be", "must be")
    for theirs, ours in _WORDS:
        msg = msg.replace(theirs, ours)
    if kind == "literal_error":
        msg = "must be one of " + msg.removeprefix("must be ").replace(" or ", ", ")
    got = repr(err.get("input"))
    got = got if len(got) <= 60 else got[:57] + "..."
    return f"{tool}: argument {loc!r} {msg}; got {got}"


def check_arguments(
    fn: Callable[..., Any], arguments: Any, *, names: Sequence[str] | None = None, tool: str | None = None,
) -> dict[str, Any]:
    """Checked and converted arguments for ``fn`` (context excluded) or ``ValidationError``."""
    tool = tool or fn.__name__
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise ValidationError(f"{tool}: arguments must be a JSON object, got {type(arguments).__name__}")
    model = _model(fn, None if names is None else tuple(names))
    try:
        checked = model.model_validate(arguments)
    except pydantic.ValidationError as exc:
        errors = exc.errors()
        extra = [e for e in errors if e["type"] == "extra_forbidden"]
        if extra:
            bad = ", ".join(repr(".".join(map(str, e["loc"]))) for e in extra)
            raise ValidationError(
                f"{tool}: unknown argument(s) {bad}; valid arguments: {', '.join(model.model_fields) or '(none)'}"
            ) from None
        raise ValidationError(
            "; ".join(_message(tool, e, list(model.model_fields)) for e in errors[:3])
        ) from None
    return {k: getattr(checked, k) for k in checked.model_fields_set | _required(model)}


def _required(model: type[pydantic.BaseModel]) -> set[str]:
    return {k for k, f in model.model_fields.items() if f.is_required()}


def bind_positional(
    tool: str, params: Sequence[str], args: Sequence[Any], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """Positional and keyword arguments of a call, as one arguments object."""
    if len(args) > len(params):
        raise ValidationError(f"{tool} takes at most {len(params)} positional arguments")
    both = set(params[: len(args)]) & set(kwargs)
    if both:
        raise ValidationError(f"{tool} got {sorted(both)[0]!r} both by position and by name")
    return dict(zip(params, args, strict=False)) | kwargs


@functools.cache
def _int_adapter(lo: int | None, hi: int | None) -> pydantic.TypeAdapter[int]:
    return pydantic.TypeAdapter(Annotated[int, Field(ge=lo, le=hi), _Int])


def check_int(value: Any, name: str, *, lo: int | None = None, hi: int | None = None) -> int:
    """One integer argument, checked like an operation's (``ValidationError`` naming ``name``)."""
    try:
        return _int_adapter(lo, hi).validate_python(value)
    except pydantic.ValidationError as exc:
        raise ValidationError(_message("", {**exc.errors()[0], "loc": (name,)}, []).removeprefix(": argument ")) from None
