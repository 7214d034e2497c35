"""The parent's rules for what reaches the REPL worker and what comes back from it.

Rules this module keeps:

* The worker's environment is built from an allow-list plus a deny-list: secrets
  (``*_API_KEY``, ``*_TOKEN``, ``*SECRET*``, ``*PASSWORD*``, ``DATABASE_URL``, ``RLMEM_*``, ...)
  never reach it, whatever else the parent's environment holds.
* Nothing from the worker is unpickled: it speaks JSON (``worker.wire``).
* Output is cut with a visible marker ``... [N characters cut] ...`` that keeps head and tail;
  the worker's ``CappedStream`` (``worker.guard``) keeps only the first and last ``cap``
  characters of a stream, so a cell printing forever cannot exhaust memory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["cut_output", "cut_streams", "scrub_env"]

_KEEP_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
_SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH")
_SECRET_PREFIXES = ("RLMEM_", "AWS_", "ANTHROPIC_", "OPENAI_", "PG", "DATABASE_")


def scrub_env(environ: Mapping[str, str], home: str) -> dict[str, str]:
    """The worker's environment: a few harmless variables, HOME pointing at the scratch dir."""
    env: dict[str, str] = {}
    for name in _KEEP_ENV:
        value = environ.get(name)
        if value is None:
            continue
        upper = name.upper()
        if any(m in upper for m in _SECRET_MARKERS) or upper.startswith(_SECRET_PREFIXES):
            continue
        env[name] = value
    env.setdefault("PATH", os.defpath)
    env["HOME"] = home
    env["TMPDIR"] = home
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def cut_output(head: str, tail: str, total: int, budget: int) -> tuple[str, int]:
    """Fit a stream (first and last characters captured, ``total`` written) into ``budget``.

    Returns the text and the number of characters cut.
    """
    if total <= budget:
        return head + tail, 0  # the budget never exceeds the capture cap: all of it is here
    budget = max(budget, 0)
    keep_head = budget // 2
    keep_tail = budget - keep_head
    cut = total - keep_head - keep_tail
    start = head[:keep_head]
    end = tail[len(tail) - keep_tail :] if keep_tail else ""
    if len(end) < keep_tail:  # the tail buffer overlaps the head: take from the head's end
        end = (head + tail)[-keep_tail:]
    return f"{start}\n... [{cut} characters cut] ...\n{end}", cut


def cut_streams(
    out: tuple[str, str, int], err: tuple[str, str, int], budget: int
) -> tuple[str, str, int]:
    """Share ``budget`` characters between stdout and stderr; stderr keeps at least half."""
    out_total, err_total = out[2], err[2]
    if out_total + err_total <= budget:
        err_budget, out_budget = err_total, out_total
    else:
        err_budget = min(err_total, max(budget // 2, budget - out_total))
        out_budget = budget - err_budget
    out_text, out_cut = cut_output(*out, out_budget)
    err_text, err_cut = cut_output(*err, err_budget)
    return out_text, err_text, out_cut + err_cut
