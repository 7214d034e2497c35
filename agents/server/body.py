"""Request bodies of the HTTP API, parsed strictly at the edge.

Rules this module keeps:

* A body is a JSON object or empty. ``NaN``, ``Infinity`` and ``-Infinity`` (which Python's
  decoder accepts and JSON does not), a field named twice, an integer outside the signed
  64-bit range (which no store column holds), a number too large for a double and nesting too deep for the decoder are all a
  ``ValidationError`` (HTTP 400), raised before anything runs, so nothing is half-stored.
"""

from __future__ import annotations

import json
import math
from typing import Any

from memory import errors as E

__all__ = ["INT_RANGE", "parse_json_body"]

INT_RANGE = (-(2**63), 2**63 - 1)


def _reject_constant(name: str) -> Any:
    raise E.ValidationError(f"the request body contains {name}, which JSON does not allow: send a number or null")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise E.ValidationError(f"the request body names the field {k!r} twice")
        out[k] = v
    return out


def _checked_int(digits: str) -> int:
    value = int(digits)
    if not INT_RANGE[0] <= value <= INT_RANGE[1]:
        raise E.ValidationError(f"the integer {digits[:30]}{'...' if len(digits) > 30 else ''} is out of range "
                                "(a signed 64-bit integer)")
    return value


def _checked_float(digits: str) -> float:
    value = float(digits)
    if not math.isfinite(value):  # 1e999 reads as inf
        raise E.ValidationError(f"the number {digits[:30]} is out of range (a finite double)")
    return value


def parse_json_body(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, parsed strictly (see the module rules); {} when empty."""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates,
                          parse_int=_checked_int, parse_float=_checked_float)
    except E.ValidationError:
        raise
    except RecursionError:
        raise E.ValidationError("the request body is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an int of too many digits
        raise E.ValidationError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise E.ValidationError("the request body must be a JSON object")
    return body
