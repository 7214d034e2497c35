"""grep over a tier's text (the recall log's, through ``RecallLog.grep``).

Rules this module keeps:

* Rows stream as ``(id, content)`` in id order, in batches sized to hold about
  ``batch_chars`` characters (the row count adapts, 64 to 8192 rows), so memory stays
  bounded whatever the message sizes. A literal every match must contain is tested in SQL
  first. Patterns without anchors or lookarounds run once over each batch joined by
  newlines, and each hit is confirmed on its own message; others run message by message. ``timeout_s`` bounds the
  whole call (the ``regex`` engine checks it while matching, so catastrophic backtracking
  stops too): past it, ``QueryError``.
"""

from __future__ import annotations

import bisect
import time
import warnings
from collections.abc import Callable, Sequence
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

from sqlalchemy import text

from memory.db import Database
from memory.errors import QueryError
from memory.text.fts import SNIPPET_CHARS, FtsSource
from memory.text.patterns import compile_pattern, required_literal
from memory.text.query import Filters

__all__ = ["grep_ids"]


def _like_escape(s: str) -> str:
    return "%" + s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


_UNSAFE_OPS = {sre_parse.AT, sre_parse.ASSERT, sre_parse.ASSERT_NOT, sre_parse.GROUPREF}


def _blob_safe(pattern: str) -> bool:
    """True when a match inside one message never depends on what is outside it: no anchors
    except word boundaries (a newline is a non-word character, like a string edge), no
    lookarounds, no back-references to be safe."""
    try:
        with warnings.catch_warnings():
            # re warns about syntax the regex package reads differently (nested sets):
            # then the parse is not trusted.
            warnings.simplefilter("error")
            parsed = sre_parse.parse(pattern)
    except Exception:
        return False

    def walk(seq: Any) -> bool:
        for op, arg in seq:
            if op in _UNSAFE_OPS:
                if op is sre_parse.AT and arg in (sre_parse.AT_BOUNDARY, sre_parse.AT_NON_BOUNDARY):
                    continue
                return False
            for sub in arg if isinstance(arg, list | tuple) else ():
                if isinstance(sub, sre_parse.SubPattern) and not walk(sub):
                    return False
                if isinstance(sub, list | tuple):
                    for s in sub:
                        if isinstance(s, sre_parse.SubPattern) and not walk(s):
                            return False
        return True

    return walk(parsed)


def _snippet(content: str, start: int, end: int) -> str:
    a = max(0, start - SNIPPET_CHARS)
    b = min(len(content), end + SNIPPET_CHARS)
    return ("…" if a else "") + content[a:b] + ("…" if b < len(content) else "")


def grep_ids(
    db: Database,
    pattern: str,
    filters: Filters,
    *,
    source: FtsSource,
    ignore_case: bool,
    literal: bool,
    limit: int,
    timeout_s: float | None,
    batch_chars: int = 16_000_000,
) -> list[tuple[int, str, str]]:
    """``(id, snippet, matched text)`` in id order, at most ``limit``, one per row of
    ``source`` (whose filter SQL uses its alias)."""
    a, col = source.alias, source.column
    rx = compile_pattern(pattern, ignore_case=ignore_case, literal=literal)
    if limit <= 0:
        return []
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    params: dict[str, Any] = dict(filters.params)
    pre = ""
    lit = required_literal(pattern, ignore_case=ignore_case, literal=literal)
    if lit is not None:
        s, ic = lit
        if ic:
            op = "ILIKE" if db.dialect == "postgresql" else "LIKE"
            pre = f" AND {a}.{col} {op} :lit ESCAPE '\\'"
            params["lit"] = _like_escape(s)
        else:
            fn = "strpos" if db.dialect == "postgresql" else "instr"
            pre = f" AND {fn}({a}.{col}, :lit) > 0"
            params["lit"] = s
    sql = text(
        f"SELECT {a}.id, {a}.{col} FROM {source.table} {a} WHERE {a}.id > :after{filters.sql()}{pre}"
        f" ORDER BY {a}.id LIMIT :batch"
    )
    blob = literal or _blob_safe(rx.pattern)

    def remaining() -> float | None:
        if deadline is None:
            return None
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    hits: list[tuple[int, str, str]] = []
    after = 0
    batch = 64
    search: Callable[..., Any] = rx.search
    try:
        while len(hits) < limit:
            with db.read() as conn:
                rows = conn.execute(sql, {**params, "after": after, "batch": batch}).all()
            if not rows:
                break
            chars = sum(len(r[1]) for r in rows)
            after = int(rows[-1][0])
            if blob:
                _grep_blob(rows, search, remaining, hits, limit)
            else:
                for rid, content in rows:
                    m = search(content, timeout=remaining())
                    if m is not None:
                        hits.append((int(rid), _snippet(content, m.start(), m.end()), m.group()))
                        if len(hits) >= limit:
                            break
            if len(rows) < batch:
                break
            # Aim the next batch at batch_chars, given this batch's average message size.
            batch = max(64, min(8192, batch_chars * len(rows) // max(1, chars)))
    except TimeoutError:
        raise QueryError(
            f"grep for {pattern!r} ran past timeout_s={timeout_s}: the pattern may backtrack "
            "catastrophically (nested repeats such as (a+)+); simplify it, narrow the filters, "
            "or raise timeout_s"
        ) from None
    return hits


def _grep_blob(
    rows: Sequence[Any],
    search: Callable[..., Any],
    remaining: Callable[[], float | None],
    hits: list[tuple[int, str, str]],
    limit: int,
) -> None:
    contents = [r[1] for r in rows]
    blob = "\n".join(contents)
    starts: list[int] = []
    pos = 0
    for c in contents:
        starts.append(pos)
        pos += len(c) + 1
    pos = 0
    n = len(contents)
    while pos <= len(blob) and len(hits) < limit:
        m = search(blob, pos, timeout=remaining())
        if m is None:
            return
        i = bisect.bisect_right(starts, m.start()) - 1
        content = contents[i]
        base = starts[i]
        if m.end() <= base + len(content):
            hits.append((int(rows[i][0]), _snippet(content, m.start() - base, m.end() - base), m.group()))
        else:
            # The match ran past the message's end: decide on the message alone.
            m2 = search(content, timeout=remaining())
            if m2 is not None:
                hits.append((int(rows[i][0]), _snippet(content, m2.start(), m2.end()), m2.group()))
        if i + 1 >= n:
            return
        pos = starts[i + 1]
