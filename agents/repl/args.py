"""Checks of the arguments model code passes to the memory functions (untrusted input).

Rules this module keeps:

* Every value from the REPL worker is plain data of unknown shape; each check accepts exactly
  the documented types and ranges and otherwise raises ``ValidationError`` with a message
  saying what to pass instead. Nothing here touches a store.
* Times without a zone are UTC, as everywhere in rlm-memory.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from memory.errors import ValidationError

__all__ = [
    "TIERS",
    "check_int",
    "check_opt_str",
    "check_tags",
    "check_text",
    "check_tiers",
    "check_when",
    "plain_signature",
]

TIERS = ("recall", "archival", "all")


def check_int(value: Any, name: str, *, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{name} must be an integer, got {type(value).__name__}")
    if lo is not None and value < lo:
        raise ValidationError(f"{name} must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise ValidationError(f"{name} must be <= {hi}, got {value}")
    return value


def check_opt_str(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{name} must be a non-empty string or None, got {value!r:.80}")
    return value


def check_text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{name} must be a non-empty string, got {value!r:.80}")
    return value


def check_when(value: Any, name: str) -> datetime | None:
    """A time filter from the model: None, a datetime, or an ISO date/time string (UTC)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError(
                f"{name} must be an ISO date like '2024-05-01' or '2024-05-01T10:00', "
                f"or a datetime; got {value!r:.80}"
            ) from None
    else:
        raise ValidationError(
            f"{name} must be a datetime or an ISO date string, got {type(value).__name__}"
        )
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def check_tiers(value: Any) -> tuple[str, ...]:
    if value not in TIERS:
        raise ValidationError(
            f"tier must be one of {', '.join(map(repr, TIERS))}, got {value!r:.80}"
        )
    return ("recall", "archival") if value == "all" else (str(value),)


def check_tags(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list | tuple | set | frozenset) or not all(
        isinstance(t, str) for t in value
    ):
        raise ValidationError("tags must be a string or a list of strings")
    return tuple(value)


def plain_signature(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A wrapper of ``fn`` whose signature shows names and defaults only (as the model reads it)."""
    sig = inspect.signature(fn)
    params = [p.replace(annotation=inspect.Parameter.empty) for p in sig.parameters.values()]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    wrapper.__name__ = wrapper.__qualname__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    wrapper.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=params, return_annotation=inspect.Signature.empty
    )
    return wrapper
