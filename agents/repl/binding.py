"""Memory bound into the REPL: the parent-side functions, the worker prelude and the docs.

Rules this module keeps:

* ``MemoryBinding`` is the only place that turns a ``MemoryManager`` into what the sandbox is
  handed: ``functions`` (parent-side callables; the worker gets proxies), ``prelude`` (worker
  source that builds ``working``, ``recall``, ``archival`` over the one private proxy
  ``_memory`` and wraps the public functions so their results print readably) and
  ``function_docs`` (one line per name for the system prompt).
* Every argument from the model is untrusted plain data and is checked here, at the edge;
  failures are ``memory.errors`` errors whose message says what to pass instead.
* Results cross as plain dicts and lists of plain values (str, int, float, datetime). One call
  returns at most ``MAX_PAGE`` messages or ``MAX_HITS`` hits, so no reply is unbounded.
* Reads are scoped to ``agent_id`` when one is given. The only writes are ``remember``
  (an archival chunk with ``source=actor`` and ``metadata["written_by"] = actor``) and
  ``note`` (a block append recorded with ``actor``); each is appended to ``writes`` and logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agents.repl.args import (
    check_int,
    check_opt_str,
    check_tags,
    check_text,
    check_tiers,
    check_when,
    plain_signature,
)
from agents.repl.convert import (
    block_dict,
    chunk_dict,
    grep_hit_dict,
    message_dict,
    search_hit_dict,
    session_dict,
)
from agents.repl.prelude import prelude_source
from memory.errors import NotFoundError, ValidationError

if TYPE_CHECKING:
    from memory.manager import MemoryManager

__all__ = ["MAX_HITS", "MAX_PAGE", "PUBLIC_FUNCTIONS", "MemoryBinding", "bind_memory"]

log = logging.getLogger("rlmem.repl")

MAX_PAGE = 1000
MAX_HITS = 1000
PUBLIC_FUNCTIONS = (
    "grep",
    "search",
    "recall_search",
    "archival_search",
    "peek",
    "remember",
    "note",
)
_OPS = frozenset(
    {
        "recall_len", "recall_slice", "recall_get", "recall_sessions", "recall_session",
        "recall_info", "archival_len", "archival_page", "archival_get", "archival_sources",
        "working",
    }
)  # fmt: skip

# --- the binding ----------------------------------------------------------------------------


class MemoryBinding:
    """A ``MemoryManager`` as the REPL sees it: functions, prelude and docs."""

    def __init__(
        self,
        memory: MemoryManager,
        *,
        agent_id: str | None = None,
        actor: str = "rlm",
        grep_timeout_s: float | None = 60.0,
    ) -> None:
        self.memory = memory
        self.agent_id = agent_id
        self.actor = actor
        self.grep_timeout_s = grep_timeout_s
        self.writes: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._positions = _Positions(memory.recall, self._scope())
        self.working = memory.working if agent_id is None else memory.blocks(agent_id)
        self._chunk_cursors: dict[int, Iterator[Any]] = {}

    def _scope(self) -> dict[str, Any]:
        return {"agent_id": self.agent_id} if self.agent_id is not None else {}

    # --- what the sandbox is handed -------------------------------------------------------

    @property
    def functions(self) -> dict[str, Callable[..., Any]]:
        """Parent-side callables by their worker name: the public functions and ``_memory``."""
        fns = {name: plain_signature(getattr(self, name)) for name in PUBLIC_FUNCTIONS}
        fns["_memory"] = plain_signature(self._memory)
        return fns

    @property
    def prelude(self) -> str:
        """Worker source defining ``working``, ``recall``, ``archival`` and the wrappers."""
        return prelude_source(PUBLIC_FUNCTIONS)

    @property
    def function_docs(self) -> dict[str, str]:
        from agents.repl.prompt import FUNCTION_DOCS

        return dict(FUNCTION_DOCS)

    def summary(self, **bounds: int) -> str:
        """Structure and sizes of memory for the first prompt (see ``memory_prompt``)."""
        from agents.repl.prompt import memory_summary

        return memory_summary(self, **bounds)

    # --- the views' private entry point ---------------------------------------------------

    def _memory(self, op: Any, *args: Any) -> Any:
        """Internal: serves recall/archival/working; call those instead."""
        if not isinstance(op, str) or op not in _OPS:
            raise ValidationError(
                f"unknown memory operation {op!r:.60}; use recall, archival and working"
            )
        return getattr(self, f"_op_{op}")(*args)

    def _op_recall_len(self) -> int:
        return self._positions.count()

    def _op_recall_slice(self, start: Any = None, stop: Any = None) -> dict[str, Any]:
        """``recall[start:stop]`` with Python's slice rules; at most ``MAX_PAGE`` messages."""
        a = None if start is None else check_int(start, "start")
        b = None if stop is None else check_int(stop, "stop")
        total = self._positions.count()
        lo, hi, _ = slice(a, b).indices(total)
        hi = max(lo, hi)
        msgs = self._positions.fetch(lo, min(hi, lo + MAX_PAGE), total)
        return {
            "total": total,
            "start": lo,
            "stop": hi,
            "messages": [message_dict(m) for m in msgs],
        }

    def _op_recall_get(self, id: Any) -> dict[str, Any]:
        return message_dict(self._message(id))

    def _op_recall_sessions(self, limit: Any = None) -> list[dict[str, Any]]:
        sessions = self.memory.recall.sessions(agent_id=self.agent_id)
        n = 10_000 if limit is None else check_int(limit, "limit", lo=0, hi=10_000)
        return [session_dict(s) for s in (sessions[-n:] if n else [])]

    def _op_recall_session(self, session_id: Any, limit: Any = None) -> list[dict[str, Any]]:
        sid = check_opt_str(session_id, "session_id")
        if sid is None:
            raise ValidationError("session_id is required: take one from recall.sessions()")
        cap = MAX_PAGE * 50
        n = cap if limit is None else check_int(limit, "limit", lo=0, hi=cap)
        msgs = self.memory.recall.session(sid, agent_id=self.agent_id, limit=n) if n else []
        if n and not msgs:
            raise NotFoundError(f"no session {sid!r}: list them with recall.sessions()")
        return [message_dict(m) for m in msgs]

    def _op_recall_info(self) -> dict[str, Any]:
        first, last = self.time_span()
        return {
            "messages": self._positions.count(),
            "sessions": len(self.memory.recall.sessions(agent_id=self.agent_id)),
            "first_at": first,
            "last_at": last,
        }

    def _op_archival_len(self) -> int:
        return int(self.memory.archival.count())

    def _op_archival_page(self, after_id: Any, n: Any) -> list[dict[str, Any]]:
        after = check_int(after_id, "after_id", lo=0)
        size = check_int(n, "n", lo=1, hi=MAX_PAGE)
        with self._lock:
            # Sequential iteration continues the cursor that stopped at ``after``.
            it = self._chunk_cursors.pop(after, None)
        if it is None:
            it = (c for c in self.memory.archival.iter_chunks(batch=size) if c.id > after)
        page = []
        for c in it:
            page.append(chunk_dict(c))
            if len(page) >= size:
                with self._lock:
                    if len(self._chunk_cursors) > 16:
                        self._chunk_cursors.clear()
                    self._chunk_cursors[c.id] = it
                break
        return page

    def _op_archival_get(self, id: Any) -> dict[str, Any]:
        return chunk_dict(self.memory.archival.get(check_int(id, "id")))

    def _op_archival_sources(self, limit: Any = None) -> list[tuple[str, int]]:
        rows = sorted(self.memory.archival.sources(), key=lambda r: (-r[1], str(r[0])))
        if limit is not None:
            rows = rows[: check_int(limit, "limit", lo=0)]
        return [(str(s), int(n)) for s, n in rows]

    def _op_working(self) -> list[dict[str, Any]]:
        return [block_dict(b) for b in self.working.list()]

    def time_span(self) -> tuple[datetime | None, datetime | None]:
        span = self.memory.recall.time_span(**self._scope())
        return (span[0], span[1]) if span else (None, None)

    def _message(self, id: Any) -> Any:
        m = self.memory.recall.get(check_int(id, "id"))
        if self.agent_id is not None and m.agent_id != self.agent_id:
            raise NotFoundError(f"no message #{id} for agent {self.agent_id!r}")
        return m

    # --- the public functions (what the model calls by name) -------------------------------

    def grep(
        self,
        pattern: Any,
        tier: Any = "recall",
        ignore_case: Any = False,
        session: Any = None,
        role: Any = None,
        since: Any = None,
        until: Any = None,
        limit: Any = 100,
    ) -> list[dict[str, Any]]:
        """Regular-expression search over every character of a tier."""
        tiers = check_tiers(tier)
        n = check_int(limit, "limit", lo=1, hi=MAX_HITS)
        started = time.monotonic()
        hits: list[Any] = []
        if "recall" in tiers:
            hits += self.memory.recall.grep(
                pattern,
                ignore_case=bool(ignore_case),
                limit=n,
                agent_id=self.agent_id,
                session_id=check_opt_str(session, "session"),
                role=check_opt_str(role, "role"),
                since=check_when(since, "since"),
                until=check_when(until, "until"),
                timeout_s=self.grep_timeout_s,
            )
        if "archival" in tiers and len(hits) < n:
            hits += self.memory.archival.grep(
                pattern, ignore_case=bool(ignore_case), limit=n - len(hits),
                # One deadline for the whole call: what recall's leg left of it.
                timeout_s=None if self.grep_timeout_s is None
                else max(0.0, self.grep_timeout_s - (time.monotonic() - started)),
            )
        return [grep_hit_dict(h) for h in hits[:n]]

    def search(self, query: Any, k: Any = 10, tier: Any = "all") -> list[dict[str, Any]]:
        """Hybrid ranking (full text + meaning) across tiers."""
        tiers = check_tiers(tier)
        kk = check_int(k, "k", lo=1, hi=MAX_HITS)
        q = check_text(query, "query")
        if tiers == ("recall",):
            return self.recall_search(q, kk)
        if tiers == ("archival",):
            return self.archival_search(q, kk)
        hits = self.memory.search(q, tiers=tiers, k=kk, **self._scope())
        return [search_hit_dict(h) for h in hits]

    def recall_search(
        self,
        query: Any,
        k: Any = 10,
        session: Any = None,
        role: Any = None,
        since: Any = None,
        until: Any = None,
    ) -> list[dict[str, Any]]:
        """Hybrid search over the recall log only, with its filters."""
        hits = self.memory.search_recall(
            check_text(query, "query"),
            k=check_int(k, "k", lo=1, hi=MAX_HITS),
            agent_id=self.agent_id,
            session_id=check_opt_str(session, "session"),
            role=check_opt_str(role, "role"),
            since=check_when(since, "since"),
            until=check_when(until, "until"),
        )
        return [search_hit_dict(h) for h in hits]

    def archival_search(self, query: Any, k: Any = 10, tags: Any = None) -> list[dict[str, Any]]:
        """Hybrid search over the archival chunks only."""
        kw: dict[str, Any] = {"tags": list(check_tags(tags)), "tags_mode": "all"} if tags else {}
        hits = self.memory.search_archival(
            check_text(query, "query"), k=check_int(k, "k", lo=1, hi=MAX_HITS), **kw
        )
        return [search_hit_dict(h) for h in hits]

    def peek(self, id: Any, before: Any = 3, after: Any = 3) -> list[dict[str, Any]]:
        """A recall message with its neighbours in the same session."""
        m = self._message(id)
        b = check_int(before, "before", lo=0, hi=MAX_PAGE)
        a = check_int(after, "after", lo=0, hi=MAX_PAGE)
        return [message_dict(x) for x in self.memory.recall.around(m.id, b, a)]

    # --- the two writes -------------------------------------------------------------------

    def _record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.writes.append(entry)
        log.info("memory write by %s: %s", self.actor, entry)

    def remember(self, text: Any, tags: Any = ()) -> int:
        """Store text as a new archival chunk (a logged write); returns its id."""
        body = check_text(text, "remember(text): text")
        tag_tuple = check_tags(tags)
        at = datetime.now(UTC)
        metadata: dict[str, Any] = {"written_by": self.actor, "written_at": at.isoformat()}
        if self.agent_id is not None:
            metadata["agent_id"] = self.agent_id
        chunk_id = int(
            self.memory.archival.insert(body, tags=tag_tuple, metadata=metadata, source=self.actor)
        )
        self._record(
            {
                "op": "remember",
                "chunk_id": chunk_id,
                "chars": len(body),
                "tags": list(tag_tuple),
                "at": at,
            }
        )
        return chunk_id

    def note(self, label: Any, text: Any) -> str:
        """Append text to a working-memory block within its limit (a logged write)."""
        lbl = check_text(label, "note(label, text): label")
        body = check_text(text, "note(label, text): text")
        size = len(self.working.append(lbl, body, actor=self.actor).value)
        self._record({"op": "note", "label": lbl, "chars": len(body), "at": datetime.now(UTC)})
        return f"block {lbl!r} now holds {size} characters"


class _Positions:
    """Maps positions in log order (0 = oldest, within the scope) to messages.

    Ids increase with insertion order, so while the ids in scope have no gaps position ``i``
    is ``first_id + i``: one indexed range read. Otherwise (another agent's messages
    interleaved, forgotten messages) the ids in scope are listed once and kept until the
    count changes.
    """

    def __init__(self, recall: Any, scope: dict[str, Any]) -> None:
        self.recall = recall
        self.scope = scope
        self._ids: list[int] | None = None
        self._ids_count = -1
        self._lock = threading.Lock()

    def count(self) -> int:
        return int(self.recall.count(**self.scope))

    def _bounds(self) -> tuple[int, int] | None:
        first = self.recall.range(None, None, limit=1, **self.scope)
        if not first:
            return None
        if not self.scope:
            return first[0].id, int(self.recall.max_id())
        newest = self.recall.page(limit=1, **self.scope)
        return first[0].id, newest[0].id

    def fetch(self, start: int, stop: int, n: int) -> list[Any]:
        """Messages at positions ``start <= i < stop`` of a log holding ``n`` messages."""
        stop = min(stop, n)
        if start >= stop:
            return []
        bounds = self._bounds()
        if bounds is not None and bounds[1] - bounds[0] + 1 == n:
            lo = bounds[0] + start
            return list(
                self.recall.range(lo, bounds[0] + stop - 1, limit=stop - start, **self.scope)
            )
        ids = self._id_list(n)[start:stop]
        if not ids:
            return []
        return list(self.recall.range(ids[0], ids[-1], limit=len(ids), **self.scope))

    def _id_list(self, n: int) -> list[int]:
        with self._lock:
            if self._ids is None or self._ids_count != n:
                self._ids = [m.id for m in self.recall.iter_messages(batch=5000, **self.scope)]
                self._ids_count = n
            return self._ids


def bind_memory(
    memory: MemoryManager,
    *,
    agent_id: str | None = None,
    actor: str = "rlm",
    grep_timeout_s: float | None = 60.0,
) -> MemoryBinding:
    """The REPL binding of ``memory`` (reads scoped to ``agent_id`` when given).

    ``grep_timeout_s`` bounds one grep; callers running cells under a timeout pass that
    timeout, since a grep abandoned by a stopped cell would otherwise run on in the parent.
    """
    return MemoryBinding(memory, agent_id=agent_id, actor=actor, grep_timeout_s=grep_timeout_s)
