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

import inspect
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agents.repl.convert import (
    block_dict,
    chunk_dict,
    grep_hit_dict,
    message_dict,
    search_hit_dict,
    session_dict,
)
from agents.repl.prelude import prelude_source
from agents.repl.prompt import FUNCTION_DOCS, memory_summary
from memory.errors import NotFoundError, ValidationError
from memory.ops.reading import message
from memory.ops.registry import View, view
from memory.ops.schema import bind_positional, check_int, parse_docstring
from memory.ops.values import OpContext

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
        self.ctx = OpContext(memory, agent_id=memory.agent_id if agent_id is None else agent_id,
                             actor=actor, agent_scoped=agent_id is not None, grep_timeout_s=grep_timeout_s)
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
        fns = {name: _model_facing(name, getattr(self, name)) for name in PUBLIC_FUNCTIONS}

        def _memory(op: Any, *args: Any) -> Any:
            return self._memory(op, *args)

        _memory.__doc__ = self._memory.__doc__
        fns["_memory"] = _memory
        return fns

    @property
    def prelude(self) -> str:
        """Worker source defining ``working``, ``recall``, ``archival`` and the wrappers."""
        return prelude_source(PUBLIC_FUNCTIONS)

    @property
    def function_docs(self) -> dict[str, str]:
        return dict(FUNCTION_DOCS)

    def summary(self, **bounds: int) -> str:
        """Structure and sizes of memory for the first prompt (see ``agents.repl.prompt``)."""
        return memory_summary(self, **bounds)

    # --- sizes, for the summary ------------------------------------------------------------

    def message_count(self) -> int:
        return self._positions.count()

    def archival_count(self) -> int:
        return int(self.memory.archival.count())

    def archival_sources(self, limit: int | None = None) -> list[tuple[str, int]]:
        """(source, chunks) pairs, largest first."""
        rows = sorted(self.memory.archival.sources(), key=lambda r: (-r[1], str(r[0])))
        return [(str(s), int(n)) for s, n in (rows if limit is None else rows[:limit])]

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
        if not isinstance(session_id, str) or not session_id:
            raise ValidationError("session_id is required: take one from recall.sessions()")
        sid = session_id
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
        return self.archival_count()

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
        return self.archival_sources(None if limit is None else check_int(limit, "limit", lo=0))

    def _op_working(self) -> list[dict[str, Any]]:
        return [block_dict(b) for b in self.working.list()]

    def time_span(self) -> tuple[datetime | None, datetime | None]:
        span = self.memory.recall.time_span(**self._scope())
        return (span[0], span[1]) if span else (None, None)

    def _message(self, id: Any) -> Any:
        return message(self.ctx, check_int(id, "id", lo=1))

    # --- the public functions (what the model calls by name) -------------------------------

    def _call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        v = _VIEWS[name]
        return v.call(self.ctx, bind_positional(name, v.parameters, args, kwargs))

    def grep(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return [grep_hit_dict(h) for h in self._call("grep", args, kwargs)]

    def search(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return [search_hit_dict(h) for h in self._call("search", args, kwargs)]

    def recall_search(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return [search_hit_dict(h) for h in self._call("recall_search", args, kwargs)]

    def archival_search(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return [search_hit_dict(h) for h in self._call("archival_search", args, kwargs)]

    def peek(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return [message_dict(m) for m in self._call("peek", args, kwargs)]

    # --- the two writes -------------------------------------------------------------------

    def _record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.writes.append(entry)
        log.info("memory write by %s: %s", self.actor, entry)

    def remember(self, *args: Any, **kwargs: Any) -> int:
        v = _VIEWS["remember"]
        checked = v.check(bind_positional("remember", v.parameters, args, kwargs))
        chunk_id = int(v.op(self.ctx, **checked))
        tags = list(checked.get("tags") or ())
        self._record({"op": "remember", "chunk_id": chunk_id, "chars": len(checked["text"]),
                      "tags": tags, "at": datetime.now(UTC)})  # fmt: skip
        return chunk_id

    def note(self, *args: Any, **kwargs: Any) -> str:
        v = _VIEWS["note"]
        checked = v.check(bind_positional("note", v.parameters, args, kwargs))
        block = v.op(self.ctx, **checked)
        self._record({"op": "note", "label": block.label, "chars": len(checked["text"]),
                      "at": datetime.now(UTC)})  # fmt: skip
        return f"block {block.label!r} now holds {len(block.value)} characters"


def _model_facing(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with the signature the model reads: the view's parameter names and defaults."""
    v = _VIEWS[name]
    sig = inspect.signature(v.op)
    params = [p.replace(annotation=inspect.Parameter.empty) for p in sig.parameters.values()
              if p.name in v.parameters]  # fmt: skip

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    wrapper.__name__ = wrapper.__qualname__ = name
    wrapper.__doc__ = parse_docstring(v.description or v.op.__doc__)[0]
    wrapper.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=params, return_annotation=inspect.Signature.empty
    )
    return wrapper


_VIEWS: dict[str, View] = {
    "grep": view("grep", "grep"),
    "search": view("search", "search"),
    "recall_search": view("recall_search", "search",
                          ("query", "k", "mode", "session_id", "role", "since", "until"), fixed={"tier": "recall"}),
    "archival_search": view("archival_search", "search", ("query", "k", "mode", "tags"),
                            fixed={"tier": "archival"}),
    "peek": view("peek", "peek"),
    "remember": view("remember", "remember", ("text", "tags")),
    "note": view("note", "note"),
}  # fmt: skip


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
