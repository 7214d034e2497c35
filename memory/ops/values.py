"""The values every memory operation shares: defaults and limits, the recall filter, the
context an operation runs in, and the few conversions every surface needs.

Rules this module keeps:

* A default or a limit is written here once (``DEFAULTS``); operations, schemas, the CLI's
  flags and every adapter read it from here, so a change is one line and every surface follows.
* The recall filter is ``memory.text.query.RecallFilter`` (one value, ISO dates parsed once
  by ``parse_when``, the one reader of date/time strings); ``OpContext.recall_filter`` adds
  the context's agent scope to it.
* ``jsonable`` is the one conversion to JSON-ready data (``to_dict()``, dataclasses, datetimes,
  paths, collections); nothing here touches a store or imports one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, Literal

from memory.text.query import RecallFilter, parse_when

if TYPE_CHECKING:
    from memory.manager import MemoryManager

__all__ = ["DEFAULTS", "Defaults", "OpContext", "RecallFilter", "TierName", "jsonable", "parse_when"]

TierName = Literal["all", "recall", "archival"]


@dataclass(frozen=True)
class Defaults:
    """Defaults and limits of the memory operations (one value, read by every surface).

    ``k`` 10 hits and ``grep_limit`` 100 matches were what most surfaces already used; the
    caps (1000) keep one reply bounded for a program reading memory page by page, while
    tool results are cut to a character budget by the adapters anyway.
    """

    k: int = 10
    max_k: int = 1000
    grep_limit: int = 100
    max_grep_limit: int = 1000
    # Both searches cover every tier unless told otherwise: text is found wherever it is.
    search_tier: TierName = "all"
    grep_tier: TierName = "all"
    # Case matters, as in Python's re and grep(1); (?i) or ignore_case=True turns it off.
    ignore_case: bool = False
    context: int = 3
    max_context: int = 100
    max_sessions: int = 10_000
    history: int = 100
    max_history: int = 10_000
    block_limit: int = 5000
    max_forget: int = 100_000
    grep_timeout_s: float = 60.0


DEFAULTS = Defaults()


@dataclass
class OpContext:
    """What an operation runs against: the store, whose blocks, who writes, how wide reads go.

    ``agent_scoped=False`` (MCP, an HTTP request without an agent) makes recall reads cover
    every agent of the store; writes and blocks always belong to ``agent_id``.
    """

    memory: MemoryManager
    agent_id: str = "default"
    session_id: str | None = None
    actor: str = "agent"
    agent_scoped: bool = True
    grep_timeout_s: float | None = DEFAULTS.grep_timeout_s

    def recall_filter(self, **filters: Any) -> RecallFilter:
        """The recall filter of a read: this agent's messages (when scoped) plus ``filters``."""
        return RecallFilter(agent_id=self.agent_id if self.agent_scoped else None, **filters)


def jsonable(value: Any) -> Any:
    """A JSON-serialisable copy of ``value`` (datetimes as ISO strings, objects via to_dict)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return jsonable(to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    return str(value)
