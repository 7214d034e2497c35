"""grep patterns: compiled with a bound on their size, and the literal SQL can prefilter by.

Rules this module keeps:

* grep patterns use the ``regex`` package (Python ``re`` syntax, plus a timeout). A literal run
  that every match must contain is pushed down to SQL as a prefilter, so most rows never reach
  Python. Counted repeats that would unroll past ``MAX_UNROLLED`` steps are refused before
  compiling (the regex package unrolls them while holding the GIL).
* Nothing here raises anything but ``ValidationError``/``QueryError``.
"""

from __future__ import annotations

import re
import warnings
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

import regex

from memory.errors import QueryError
from memory.text.query import check_text

__all__ = ["MAX_UNROLLED", "compile_pattern", "required_literal"]

MAX_UNROLLED = 100_000  # steps a grep pattern's counted repeats may unroll to (~0.2 s, ~40 MB)
_ODD_FOLD = frozenset("iIsSkK")


def compile_pattern(pattern: object, *, ignore_case: bool, literal: bool) -> regex.Pattern[str]:
    p = check_text(pattern, "pattern")
    if p == "":
        raise QueryError("empty pattern: give a regular expression or a literal string")
    if literal:
        p = regex.escape(p)
    flags = regex.VERSION0 | (regex.IGNORECASE if ignore_case else 0)
    if not literal and _unrolled_size(p) > max(MAX_UNROLLED, len(p)):
        raise QueryError(
            f"pattern {pattern!r:.80} repeats too much: its counted repeats ({{n}}, {{n,m}}) "
            f"unroll to more than {MAX_UNROLLED:,} steps; use + or * or a smaller count"
        )
    try:
        return regex.compile(p, flags)
    except (regex.error, ValueError, OverflowError, RecursionError) as exc:
        raise QueryError(
            f"invalid regular expression {pattern!r}: {exc}; to search for the text as given, "
            "pass literal=True (rlmem grep -F, memory_grep literal: true)"
        ) from None


def _unrolled_size(pattern: str) -> int:
    """How many steps the pattern's counted repeats unroll to (an upper bound).

    The regex package compiles ``x{n}`` (and the ``n`` of ``x{n,m}``) as n copies of ``x``,
    holding the GIL: ``a{4294967294}`` never finishes compiling, and nested counts multiply
    (``(?:(?:(?:a{100}){100}){100}){100}`` wants tens of GB). Patterns ``re`` cannot parse
    (regex-only syntax) are bounded by the product of every count written in them.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = sre_parse.parse(pattern)
    except (re.error, ValueError, OverflowError, RecursionError, TypeError):
        total = 1
        for n in re.findall(r"\{\s*(\d{1,12})", pattern):
            total *= max(1, int(n))
            if total > MAX_UNROLLED:
                break
        return total

    def size(items: Any, depth: int) -> int:
        n = 0
        for op, arg in items:
            if op in (sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT, sre_parse.POSSESSIVE_REPEAT):
                n += max(1, arg[0]) * size(arg[2], depth + 1)
            elif op is sre_parse.SUBPATTERN:
                n += size(arg[-1], depth + 1)
            elif op is sre_parse.BRANCH:
                n += sum(size(b, depth + 1) for b in arg[1])
            elif op in (sre_parse.ASSERT, sre_parse.ASSERT_NOT):
                n += size(arg[1], depth + 1)
            elif op is sre_parse.GROUPREF_EXISTS:
                n += sum(size(b, depth + 1) for b in arg[1:] if b is not None)
            elif op is sre_parse.ATOMIC_GROUP:
                n += size(arg, depth + 1)
            else:
                n += 1
            if n > MAX_UNROLLED:
                return n
        return n

    return size(parsed, 0)


def required_literal(pattern: str, *, ignore_case: bool, literal: bool) -> tuple[str, bool] | None:
    """A substring every match must contain, and whether it must be matched ignoring case.

    None when no safe one exists (then every row goes through the regex). Only top-level
    literal runs of the parsed pattern are used: each of them is part of every match.
    """
    ic = ignore_case
    ops: list[tuple[Any, Any]]
    if literal:
        ops = [(sre_parse.LITERAL, ord(c)) for c in pattern]
    else:
        try:
            with warnings.catch_warnings():
                # re warns about syntax the regex package reads differently (nested sets):
                # then the parse is not trusted.
                warnings.simplefilter("error")
                parsed = sre_parse.parse(pattern)
        except Exception:  # syntax only the regex package knows
            return None
        if parsed.state.flags & sre_parse.SRE_FLAG_VERBOSE:
            return None
        ic = ic or bool(parsed.state.flags & sre_parse.SRE_FLAG_IGNORECASE)
        ops = list(parsed)
    best = ""
    run: list[str] = []
    for op, arg in [*ops, (None, None)]:
        ch = chr(arg) if op is sre_parse.LITERAL and isinstance(arg, int) else None
        # Ignoring case, Python also matches i/s/k with the non-ASCII ı, ſ and the Kelvin
        # sign, and SQL folds ASCII only: such characters end a run.
        # NUL ends a run too: PostgreSQL refuses it even as a query parameter.
        if ch is not None and ch != "\x00" and not (ic and (ch in _ODD_FOLD or not ch.isascii())):
            run.append(ch)
            continue
        if len(run) > len(best):
            best = "".join(run)
        run = []
    if len(best) < 2:
        return None
    return best, ic
