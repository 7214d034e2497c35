"""Tool results bounded in size before they reach a prompt or a client.

Rules this module keeps:

* ``bound`` shrinks a JSON value until its serialised form fits: lists lose items from the end
  (the least relevant results) and the reply says ``"truncated": true``; long strings are cut
  with a marker saying how much was left out. It never fails on a JSON value.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["bound"]


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, default=str))


def bound(value: Any, max_chars: int) -> Any:
    """Shrink a JSON value until its serialised form fits ``max_chars``."""
    if _size(value) <= max_chars:
        return value
    if isinstance(value, str):
        keep = max(0, max_chars - 40)
        return value[:keep] + f"... [{len(value) - keep} more characters]"
    if isinstance(value, dict):
        out = dict(value)
        for key in [k for k, v in out.items() if isinstance(v, list)]:
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
