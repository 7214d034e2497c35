"""The recall log: every message of every agent and session, append-only, in SQL.

Rules this module keeps:

* **Append-only, durable, ordered.** ``append``/``append_many`` write in one ``Database.write()``
  transaction (SQLite WAL, ``synchronous=FULL``): a message is on disk when the call returns.
  Ids are integers that increase with insertion order and are never reused (SQLite
  AUTOINCREMENT; on PostgreSQL appends take a transaction-scoped advisory lock so ids also
  become visible in order). ``forget()`` is the only deletion and leaves an audit row.
* **Hooks run inside the transaction.** ``add_append_hook(fn)`` calls ``fn(conn, messages)``
  before commit, so a layer above (the embedding queue) is written atomically with the
  messages; a hook that raises rolls the append back. ``add_forget_hook`` is the same for
  deletions.
* **Input.** ``content`` is ``str`` (``bytes`` refused: decode first), may be empty (a tool
  call without text), at most ``max_message_chars`` characters; lone surrogates are refused.
  NUL characters are stored on SQLite and refused on PostgreSQL (its ``text`` cannot hold
  them). ``role`` is one of user/assistant/system/tool. ``tokens`` defaults to the estimate
  ``ceil(len(content) / 4)``. Timestamps are UTC; a naive datetime is taken as UTC.
  ``tool_args`` and ``metadata`` are stored as JSON.
* **Filters** (everywhere): ``agent_id``, ``session_id``, ``role``, ``since``, ``until``
  (inclusive). Unknown ids simply match nothing; a message id that does not exist is
  ``NotFoundError``. Reads never raise driver errors for user input.
* **Reads.** ``range(a, b)`` is inclusive and ascending; ``session(s, limit=n)`` gives the
  session's *most recent* n messages, oldest first; ``page()`` is newest first. Timestamps
  keep microseconds.
* **Keys: idempotent writes.** A message may carry ``key``, the writer's own identity for it
  (a transcript record's uuid, a client's idempotency key; 1-200 characters), unique per
  agent. ``append_many`` stores each key once: rows whose key is already stored, or repeats
  earlier in the batch, are left out of the insert and of the returned list (so its length
  is what was newly stored), and the insert itself is ``INSERT ... ON CONFLICT DO NOTHING``
  on the (agent, key) unique index, so two writers racing with the same keys in two
  processes never store a record twice. ``append(key=...)`` of a stored key returns the
  stored message unchanged. Messages without a key are never deduplicated.
* **Tool records stay out of the way.** ``search_text`` and ``grep`` leave out ``role="tool"``
  messages (tool calls and their output) unless ``include_tools=True`` or ``role="tool"`` is
  asked: a search for what was said finds the conversation, not the file dumps around it.
  ``range``/``session``/``page``/``count`` read every role.
* Full-text search: see ``memory.text.fts``; grep: ``memory.text.grep``; query handling:
  ``memory.text.query``.
"""

from __future__ import annotations

import gc
import json
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from memory.db import Database, id_lists
from memory.errors import NotFoundError, ValidationError
from memory.recall.keys import present_keys, unstored
from memory.recall.schema import FORGET_TABLE, FTS_TABLE, MIGRATIONS, TABLE
from memory.text.fts import FtsSource, make_snippet, search_ids, snippet_pattern
from memory.text.grep import grep_ids
from memory.text.query import (
    MAX_ID,
    MESSAGE_FIELDS,
    Filters,
    RecallFilter,
    check_id,
    check_key,
    check_text,
    clamp,
    count_arg,
    from_us,
    new_message,
    prepare_message,
    to_us,
)
from memory.types import GrepHit, Message, SearchHit, SessionInfo

__all__ = ["AppendHook", "ForgetHook", "RecallLog"]

RECALL_FTS = FtsSource(TABLE, FTS_TABLE, "m")  # the filter SQL of memory.text.query uses "m"

AppendHook = Callable[[Connection, list[Message]], None]
ForgetHook = Callable[[Connection, list[int]], None]

_COLS = "m.id, m.agent_id, m.session_id, m.role, m.content, m.tool_name, m.tool_args, m.created_us, m.tokens, m.metadata, m.msg_key"
_INSERT_COLS = "id, agent_id, session_id, role, content, tool_name, tool_args, created_us, tokens, metadata, msg_key"
_KEY = 9  # index of the key in a prepared row
_APPEND_LOCK = zlib.crc32(b"rlmem_recall_append")


@contextmanager
def _gc_paused() -> Iterator[None]:
    # A batch allocates a few acyclic containers per message; the cyclic collector would run
    # many times per batch scanning them for nothing (about a third of the batch time).
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _row_to_message(r: Sequence[Any]) -> Message:
    return Message(
        id=int(r[0]),
        agent_id=r[1],
        session_id=r[2],
        role=r[3],
        content=r[4],
        tool_name=r[5],
        tool_args=json.loads(r[6]) if r[6] is not None else None,
        created_at=from_us(r[7]),
        tokens=int(r[8]),
        metadata=json.loads(r[9]) if r[9] and r[9] != "{}" else {},
        key=r[10],
    )


def _every_role(where: RecallFilter | None = None, **filters: Any) -> Filters:
    """The SQL of a listing read's filter (listing reads keep tool records)."""
    return RecallFilter.of(where, **filters).sql(every_role=True)


class RecallLog:
    """The append-only message log over a shared ``Database``."""

    def __init__(
        self,
        db: Database,
        *,
        max_message_chars: int = 50_000_000,
        common_term_docs: int = 2_000,
        max_candidates: int = 2_000,
    ) -> None:
        self.db = db
        self.max_message_chars = max_message_chars
        self.common_term_docs = common_term_docs
        self.max_candidates = max_candidates
        self._append_hooks: list[AppendHook] = []
        self._forget_hooks: list[ForgetHook] = []
        self._ok_ids: set[str] = set()
        self._allow_nul = db.dialect != "postgresql"
        db.migrate("recall", MIGRATIONS)

    def add_append_hook(self, fn: AppendHook) -> None:
        self._append_hooks.append(fn)

    def add_forget_hook(self, fn: ForgetHook) -> None:
        self._forget_hooks.append(fn)

    # --- writing -------------------------------------------------------------------------

    def append(
        self,
        content: str,
        *,
        role: str = "user",
        agent_id: str = "default",
        session_id: str = "default",
        created_at: datetime | None = None,
        tool_name: str | None = None,
        tool_args: Any = None,
        tokens: int | None = None,
        metadata: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> Message:
        """Store one message; it is durable when this returns. With ``key``, a message already
        stored under that key for this agent is returned instead (nothing new is written)."""
        spec = {
            "content": content, "role": role, "agent_id": agent_id, "session_id": session_id,
            "created_at": created_at, "tool_name": tool_name, "tool_args": tool_args,
            "tokens": tokens, "metadata": metadata, "key": key,
        }  # fmt: skip
        out = self.append_many([spec])
        if out:
            return out[0]
        found = self.get_by_key(str(key), agent_id=agent_id)
        if found is None:  # stored by someone else, then forgotten before we could read it
            raise NotFoundError(f"the message with key {key!r} was forgotten while being written")
        return found

    def append_many(self, messages: Iterable[Mapping[str, Any] | Any]) -> list[Message]:
        """Store a batch in one transaction (all or nothing). Items are dicts with the keywords
        of ``append``, or objects with those attributes (a ``Message``: its id is ignored)."""
        now = datetime.now(UTC)
        rows: list[tuple[Any, ...]] = []
        fields: list[dict[str, Any]] = []
        with _gc_paused():
            for item in messages:
                spec = item if isinstance(item, Mapping) else {f: getattr(item, f) for f in MESSAGE_FIELDS if hasattr(item, f)}
                row, fs = prepare_message(
                    spec, now, allow_nul=self._allow_nul, max_chars=self.max_message_chars, ok_ids=self._ok_ids
                )
                rows.append(row)
                fields.append(fs)
        if not rows:
            return []
        pg = self.db.dialect == "postgresql"
        marks = ", ".join(["%s" if pg else "?"] * 11)
        sql = f"INSERT INTO {TABLE} ({_INSERT_COLS}) VALUES ({marks}) ON CONFLICT (agent_id, msg_key) DO NOTHING"
        keyed = any(r[_KEY] is not None for r in rows)
        with self.db.write() as conn:
            if pg:
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _APPEND_LOCK})
            if keyed:
                keep = unstored(conn, rows, _KEY)
                rows = [rows[i] for i in keep]
                fields = [fields[i] for i in keep]
                if not rows:
                    return []
            if pg:
                ids = sorted(
                    int(v)
                    for v in conn.execute(
                        text(f"SELECT nextval(pg_get_serial_sequence('{TABLE}', 'id')) FROM generate_series(1, :n)"),
                        {"n": len(rows)},
                    ).scalars()
                )
            else:
                # Under BEGIN IMMEDIATE nobody else writes, so the next ids are known.
                first = conn.exec_driver_sql(
                    f"SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = '{TABLE}'), 0),"
                    f" coalesce((SELECT max(id) FROM {TABLE}), 0)) + 1"
                ).scalar_one()
                ids = list(range(int(first), int(first) + len(rows)))
            conn.exec_driver_sql(sql, [(i, *r) for i, r in zip(ids, rows, strict=True)])
            if keyed:
                # Every writer takes the same lock, so nothing should have been skipped; but
                # the conflict clause is the guarantee, and only rows really stored are returned.
                stored: set[int] = set()
                for chunk in id_lists(ids):
                    stored.update(int(v) for v in conn.exec_driver_sql(f"SELECT id FROM {TABLE} WHERE id IN ({chunk})").scalars())
                if len(stored) < len(ids):
                    pairs = [(i, fs) for i, fs in zip(ids, fields, strict=True) if i in stored]
                    ids, fields = [i for i, _ in pairs], [fs for _, fs in pairs]
            with _gc_paused():
                out = [new_message(i, fs) for i, fs in zip(ids, fields, strict=True)]
            for hook in self._append_hooks:
                hook(conn, out)
        return out

    def keys_present(self, keys: Iterable[str], *, agent_id: str = "default") -> set[str]:
        """Which of ``keys`` are stored for ``agent_id`` (a key is unique per agent)."""
        wanted = sorted({check_key(k) for k in keys})
        agent = check_id(agent_id, "agent_id")
        with self.db.read() as conn:
            return present_keys(conn, agent, wanted)

    def get_by_key(self, key: str, *, agent_id: str = "default") -> Message | None:
        """The message stored under ``key`` for ``agent_id``, or None."""
        found = self._select(
            "m.agent_id = :a AND m.msg_key = :k", {"a": check_id(agent_id, "agent_id"), "k": check_key(key)}, ""
        )
        return found[0] if found else None

    # --- reading -------------------------------------------------------------------------

    def _select(self, where: str, params: dict[str, Any], tail: str, conn: Connection | None = None) -> list[Message]:
        if conn is None:
            with self.db.read() as c:
                return self._select(where, params, tail, c)
        rows = conn.execute(text(f"SELECT {_COLS} FROM {TABLE} m WHERE {where} {tail}"), params).all()
        return [_row_to_message(r) for r in rows]

    def get(self, id: int) -> Message:
        found = self.get_many([id])
        if not found:
            raise NotFoundError(f"no message with id {id!r} in the recall log (ids run 1..{self.max_id()})")
        return found[0]

    def get_many(self, ids: Sequence[int]) -> list[Message]:
        """The messages with these ids, in the order given; unknown ids are skipped."""
        with self.db.read() as conn:
            return self._get_many(conn, ids)

    def _get_many(self, conn: Connection, ids: Sequence[int]) -> list[Message]:
        clean = [int(i) for i in ids if isinstance(i, int) and not isinstance(i, bool) and 0 < i < MAX_ID]
        by_id: dict[int, Message] = {}
        for a in range(0, len(clean), 500):
            chunk = clean[a : a + 500]
            marks = ", ".join(f":i{n}" for n in range(len(chunk)))
            for m in self._select(f"m.id IN ({marks})", {f"i{n}": v for n, v in enumerate(chunk)}, "", conn):
                by_id[m.id] = m
        return [by_id[i] for i in clean if i in by_id]

    def range(
        self, start_id: int | None = None, end_id: int | None = None, *, limit: int = 1000, **filters: Any
    ) -> list[Message]:
        """Messages with ``start_id <= id <= end_id`` (both optional), ascending id."""
        f = _every_role(**filters)
        params = {**f.params, "lo": clamp(start_id, 0), "hi": clamp(end_id, MAX_ID), "lim": count_arg(limit)}
        return self._select(f"m.id >= :lo AND m.id <= :hi{f.sql()}", params, "ORDER BY m.id LIMIT :lim")

    def session(self, session_id: str, *, agent_id: str | None = None, limit: int | None = None) -> list[Message]:
        """A session's messages, oldest first; with ``limit``, its most recent ``limit``."""
        f = _every_role(session_id=session_id, agent_id=agent_id)
        if limit is None:
            return self._select(f"1 = 1{f.sql()}", f.params, "ORDER BY m.id")
        newest = self._select(f"1 = 1{f.sql()}", {**f.params, "lim": count_arg(limit)}, "ORDER BY m.id DESC LIMIT :lim")
        return newest[::-1]

    def page(self, *, before_id: int | None = None, limit: int = 50, **filters: Any) -> list[Message]:
        """Newest first: up to ``limit`` messages with ``id < before_id``."""
        f = _every_role(**filters)
        params = {**f.params, "b": clamp(before_id, MAX_ID), "lim": count_arg(limit)}
        return self._select(f"m.id < :b{f.sql()}", params, "ORDER BY m.id DESC LIMIT :lim")

    def around(self, id: int, before: int = 3, after: int = 3) -> list[Message]:
        """The message and its neighbours in the same agent and session, ascending id."""
        m = self.get(id)
        p = {"a": m.agent_id, "s": m.session_id, "id": m.id, "nb": count_arg(before), "na": count_arg(after)}
        same = "m.agent_id = :a AND m.session_id = :s"
        older = self._select(f"{same} AND m.id < :id", p, "ORDER BY m.id DESC LIMIT :nb")
        newer = self._select(f"{same} AND m.id > :id", p, "ORDER BY m.id LIMIT :na")
        return [*older[::-1], m, *newer]

    def count(self, **filters: Any) -> int:
        f = _every_role(**filters)
        with self.db.read() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {TABLE} m WHERE 1 = 1{f.sql()}"), f.params).scalar_one())

    def sessions(self, *, agent_id: str | None = None) -> list[SessionInfo]:
        """Every session with its time span and message count, in order of first message."""
        f = _every_role(agent_id=agent_id)
        sql = (
            f"SELECT m.agent_id, m.session_id, min(m.created_us), max(m.created_us), count(*), min(m.id), max(m.id)"
            f" FROM {TABLE} m WHERE 1 = 1{f.sql()} GROUP BY m.agent_id, m.session_id ORDER BY min(m.id)"
        )
        with self.db.read() as conn:
            rows = conn.execute(text(sql), f.params).all()
        return [
            SessionInfo(r[0], r[1], from_us(r[2]), from_us(r[3]), int(r[4]), int(r[5]), int(r[6])) for r in rows
        ]

    def agents(self) -> list[str]:
        with self.db.read() as conn:
            return [r[0] for r in conn.execute(text(f"SELECT DISTINCT agent_id FROM {TABLE} ORDER BY agent_id"))]

    def time_span(self, **filters: Any) -> tuple[datetime, datetime] | None:
        f = _every_role(**filters)
        with self.db.read() as conn:
            r = conn.execute(
                text(f"SELECT min(m.created_us), max(m.created_us) FROM {TABLE} m WHERE 1 = 1{f.sql()}"), f.params
            ).one()
        return None if r[0] is None else (from_us(r[0]), from_us(r[1]))

    def max_id(self) -> int:
        with self.db.read() as conn:
            return int(conn.execute(text(f"SELECT coalesce(max(id), 0) FROM {TABLE}")).scalar_one())

    def iter_messages(
        self, *, batch: int = 1000, where: RecallFilter | None = None, **filters: Any
    ) -> Iterator[Message]:
        """Every matching message in id order, read ``batch`` at a time (bounded memory)."""
        f = _every_role(where, **filters)
        batch = max(1, count_arg(batch))
        after = 0
        while True:
            rows = self._select(f"m.id > :after{f.sql()}", {**f.params, "after": after, "lim": batch}, "ORDER BY m.id LIMIT :lim")
            yield from rows
            if len(rows) < batch:
                return
            after = rows[-1].id

    # --- search --------------------------------------------------------------------------

    def search_text(
        self,
        query: str,
        *,
        k: int = 10,
        offset: int = 0,
        where: RecallFilter | None = None,
        **filters: Any,
    ) -> list[SearchHit]:
        """Full-text search, best first (BM25; see ``memory.text.fts`` for the rules), over
        the messages ``where`` and the keyword filters (``RecallFilter``'s fields) cover;
        tool records only with ``include_tools=True`` or ``role="tool"``."""
        f = RecallFilter.of(where, **filters).sql()
        with self.db.read() as conn:
            found = search_ids(
                conn, self.db.dialect, query, f, source=RECALL_FTS, k=count_arg(k), offset=count_arg(offset),
                common_docs=self.common_term_docs, max_candidates=self.max_candidates,
            )
            return self.hits(found, query, conn)

    def hits(self, ranked: Sequence[tuple[int, float]], query: str, conn: Connection | None = None) -> list[SearchHit]:
        """``SearchHit``s of ranked message ids, with snippets for ``query``; ids no longer
        in the log (forgotten) are dropped."""
        if conn is None:
            with self.db.read() as conn:
                return self.hits(ranked, query, conn)
        msgs = {m.id: m for m in self._get_many(conn, [i for i, _ in ranked])}
        rx = snippet_pattern(query)
        return [
            SearchHit.from_message(m, score, make_snippet(m.content, rx))
            for i, score in ranked
            if (m := msgs.get(i)) is not None
        ]

    def grep(
        self,
        pattern: str,
        *,
        ignore_case: bool = False,
        literal: bool = False,
        limit: int = 100,
        timeout_s: float | None = 10.0,
        where: RecallFilter | None = None,
        **filters: Any,
    ) -> list[GrepHit]:
        """Regular-expression search over the messages ``where`` and the keyword filters
        cover (first match per message, id order); tool records only with
        ``include_tools=True`` or ``role="tool"``."""
        f = RecallFilter.of(where, **filters).sql()
        found = grep_ids(self.db, pattern, f, source=RECALL_FTS, ignore_case=ignore_case, literal=literal, limit=count_arg(limit), timeout_s=timeout_s)
        msgs = {m.id: m for m in self.get_many([i for i, _, _ in found])}
        return [
            GrepHit(
                id=i, tier="recall", snippet=snip, match=match, session_id=msgs[i].session_id,
                agent_id=msgs[i].agent_id, role=msgs[i].role, created_at=msgs[i].created_at,
            )
            for i, snip, match in found
            if i in msgs
        ]

    # --- forgetting ----------------------------------------------------------------------

    def forget(
        self,
        *,
        ids: Sequence[int] | None = None,
        session_id: str | None = None,
        agent_id: str | None = None,
        reason: str,
        actor: str = "user",
    ) -> list[int]:
        """Delete the messages matching every selector given; returns their ids and writes an
        audit row (who, when, why, which ids), even when nothing matched."""
        if ids is None and session_id is None and agent_id is None:
            raise ValidationError("forget needs ids=, session_id= or agent_id= (refusing to forget everything)")
        reason = check_text(reason, "reason", allow_nul=False).strip()
        if not reason:
            raise ValidationError("forget needs a non-empty reason= (it goes into the audit log)")
        actor = check_id(actor, "actor")
        f = _every_role(session_id=session_id, agent_id=agent_id)
        selector: dict[str, Any] = {k: v for k, v in (("session_id", session_id), ("agent_id", agent_id)) if v is not None}
        if ids is not None:
            selector["ids"] = [int(i) for i in ids]
        with self.db.write() as conn:
            found: list[int] = []
            if ids is None:
                found = [int(r[0]) for r in conn.execute(text(f"SELECT m.id FROM {TABLE} m WHERE 1 = 1{f.sql()} ORDER BY m.id"), f.params)]
            else:
                wanted = sorted(set(selector["ids"]))
                for a in range(0, len(wanted), 500):
                    chunk = wanted[a : a + 500]
                    marks = ", ".join(f":i{n}" for n in range(len(chunk)))
                    p = {**f.params, **{f"i{n}": v for n, v in enumerate(chunk)}}
                    found += [int(r[0]) for r in conn.execute(text(f"SELECT m.id FROM {TABLE} m WHERE m.id IN ({marks}){f.sql()}"), p)]
            for a in range(0, len(found), 500):
                chunk = found[a : a + 500]
                marks = ", ".join(f":i{n}" for n in range(len(chunk)))
                conn.execute(text(f"DELETE FROM {TABLE} WHERE id IN ({marks})"), {f"i{n}": v for n, v in enumerate(chunk)})
            for hook in self._forget_hooks:
                hook(conn, found)
            conn.execute(
                text(
                    f"INSERT INTO {FORGET_TABLE} (at_us, actor, reason, selector, message_ids, message_count)"
                    " VALUES (:at, :actor, :reason, :sel, :ids, :n)"
                ),
                {"at": to_us(datetime.now(UTC)), "actor": actor, "reason": reason, "sel": json.dumps(selector),
                 "ids": json.dumps(found), "n": len(found)},
            )
        return found

    def forget_log(self) -> list[dict[str, Any]]:
        """Every forget() call, oldest first."""
        with self.db.read() as conn:
            rows = conn.execute(
                text(f"SELECT id, at_us, actor, reason, selector, message_ids, message_count FROM {FORGET_TABLE} ORDER BY id")
            ).all()
        return [
            {"id": int(r[0]), "at": from_us(r[1]), "actor": r[2], "reason": r[3], "selector": json.loads(r[4]),
             "message_ids": json.loads(r[5]), "message_count": int(r[6])}
            for r in rows
        ]  # fmt: skip
