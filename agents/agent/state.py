"""The persisted state of agents: one row per agent, plus the lease that serialises steps.

Rules this module keeps:

* One table, ``rlm_agents``, owned by the ``agents`` migration component (append-only
  migrations). It holds what cannot be derived from the tiers: the system prompt, settings,
  the current session and ``buffer_start_id``, the id of the oldest recall message still in
  the prompt. The message buffer itself is *derived*: every message of the agent with an id
  at or above ``buffer_start_id``. Blocks (persona, human, summary) live in working memory.
* Steps are serialised by a lease on the row: ``acquire`` sets an owner token and an expiry in
  one write transaction and waits (polling) while another live owner holds it; past the wait
  budget it raises ``StoreBusyError`` naming the holder. A lease whose holder died is taken
  over: when it expired, or at once when the holder ran on this host and its process is gone.
* Timestamps are integer microseconds since the Unix epoch (UTC), as in the recall log.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from memory.db import Database, Migration
from memory.errors import NotFoundError, StoreBusyError, ValidationError

if TYPE_CHECKING:
    from memory.manager import MemoryManager

__all__ = [
    "MIGRATIONS",
    "SUMMARY_DESCRIPTION",
    "AgentRecord",
    "AgentTable",
    "Lease",
    "new_session_id",
    "open_store",
]

TABLE = "rlm_agents"
SUMMARY_DESCRIPTION = (
    "Running summary of earlier conversation that has left the prompt (kept up to date "
    "automatically)."
)


def _v1_agents(conn: Connection, dialect: str) -> None:
    conn.execute(
        text(
            f"CREATE TABLE {TABLE} ("
            " agent_id VARCHAR(200) PRIMARY KEY,"
            " created_us BIGINT NOT NULL,"
            " updated_us BIGINT NOT NULL,"
            " system_prompt TEXT NOT NULL,"
            " session_id VARCHAR(200) NOT NULL,"
            " buffer_start_id BIGINT NOT NULL DEFAULT 0,"
            " settings TEXT NOT NULL DEFAULT '{}',"
            " lock_owner VARCHAR(100),"
            " lock_host VARCHAR(255),"
            " lock_pid INTEGER,"
            " lock_until_us BIGINT)"
        )
    )


MIGRATIONS = [Migration(1, "create rlm_agents", _v1_agents)]

_migrated: weakref.WeakSet[Database] = weakref.WeakSet()


def _now_us() -> int:
    return int(time.time() * 1_000_000)


def _from_us(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def new_session_id(name: str) -> str:
    """A new session id: the agent's name, the UTC time and a random suffix."""
    return f"{name}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def open_store(store: MemoryManager | str | Path) -> tuple[MemoryManager, bool]:
    """The manager given, or one opened at a path (``True``: the caller must close it)."""
    if isinstance(store, str | Path):
        from memory.manager import MemoryManager

        return MemoryManager.open(store), True
    return store, False


@dataclass(frozen=True)
class AgentRecord:
    """One agent's row."""

    agent_id: str
    created_at: datetime
    updated_at: datetime
    system_prompt: str
    session_id: str
    buffer_start_id: int
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "session_id": self.session_id,
            "buffer_start_id": self.buffer_start_id,
            "settings": dict(self.settings),
        }


@dataclass(frozen=True)
class Lease:
    """A held step lease; ``token`` identifies the holder."""

    agent_id: str
    token: str


_COLS = "agent_id, created_us, updated_us, system_prompt, session_id, buffer_start_id, settings"


def _record(row: Any) -> AgentRecord:
    return AgentRecord(
        agent_id=row[0],
        created_at=_from_us(int(row[1])),
        updated_at=_from_us(int(row[2])),
        system_prompt=row[3],
        session_id=row[4],
        buffer_start_id=int(row[5]),
        settings=json.loads(row[6] or "{}"),
    )


class AgentTable:
    """Reads and writes ``rlm_agents`` rows on a ``Database``."""

    def __init__(self, db: Database) -> None:
        self.db = db
        if db not in _migrated:
            db.migrate("agents", MIGRATIONS)
            _migrated.add(db)

    # --- rows ----------------------------------------------------------------------------

    def create(
        self,
        agent_id: str,
        *,
        system_prompt: str,
        session_id: str,
        settings: dict[str, Any],
        buffer_start_id: int = 0,
    ) -> AgentRecord:
        if not agent_id or len(agent_id) > 200 or agent_id != agent_id.strip():
            raise ValidationError(
                f"agent name {agent_id!r} is not usable: give 1-200 characters without "
                "leading or trailing spaces"
            )
        now = _now_us()
        try:
            with self.db.write() as conn:
                conn.execute(
                    text(
                        f"INSERT INTO {TABLE} ({_COLS}) VALUES "
                        "(:a, :c, :u, :p, :s, :b, :st)"
                    ),
                    {"a": agent_id, "c": now, "u": now, "p": system_prompt, "s": session_id,
                     "b": buffer_start_id, "st": json.dumps(settings)},
                )
        except IntegrityError as exc:
            raise ValidationError(
                f"an agent named {agent_id!r} already exists in this store: open it with "
                "Agent.open, or pick another name"
            ) from exc
        return self.get(agent_id)

    def create_with_blocks(
        self,
        memory: MemoryManager,
        agent_id: str,
        *,
        system_prompt: str,
        session_id: str,
        settings: dict[str, Any],
        persona: str,
        human: str,
        block_limit: int,
        summary_limit: int,
    ) -> AgentRecord:
        """The row, then the ``persona``, ``human`` and ``summary`` blocks (kept if present).

        Messages already filed under this name (an imported history) stay searchable but
        start outside the prompt: the buffer begins with the agent's first own step.
        """
        record = self.create(agent_id, system_prompt=system_prompt, session_id=session_id,
                             settings=settings, buffer_start_id=memory.recall.max_id() + 1)
        wm = memory.blocks(agent_id)
        existing = {b.label for b in wm.list()}
        for label, value, desc, limit in (
            ("persona", persona, "Who you are: your role, personality and way of working.", block_limit),
            ("human", human, "What you know about the user you talk with.", block_limit),
            ("summary", "", SUMMARY_DESCRIPTION, summary_limit),
        ):
            if label not in existing:
                wm.create(label, value, limit=limit, description=desc, actor="system")
        return record

    def find(self, agent_id: str) -> AgentRecord | None:
        with self.db.read() as conn:
            row = conn.execute(
                text(f"SELECT {_COLS} FROM {TABLE} WHERE agent_id = :a"), {"a": agent_id}
            ).fetchone()
        return _record(row) if row else None

    def get(self, agent_id: str) -> AgentRecord:
        rec = self.find(agent_id)
        if rec is None:
            raise NotFoundError(
                f"no agent named {agent_id!r} in this store: create it with Agent.create "
                "(or `rlmem chat --agent NAME`, which creates it)"
            )
        return rec

    def list(self) -> list[AgentRecord]:
        with self.db.read() as conn:
            rows = conn.execute(text(f"SELECT {_COLS} FROM {TABLE} ORDER BY agent_id")).fetchall()
        return [_record(r) for r in rows]

    def update(
        self,
        agent_id: str,
        *,
        buffer_start_id: int | None = None,
        session_id: str | None = None,
        system_prompt: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        sets = ["updated_us = :u"]
        params: dict[str, Any] = {"a": agent_id, "u": _now_us()}
        if buffer_start_id is not None:
            sets.append("buffer_start_id = :b")
            params["b"] = buffer_start_id
        if session_id is not None:
            sets.append("session_id = :s")
            params["s"] = session_id
        if system_prompt is not None:
            sets.append("system_prompt = :p")
            params["p"] = system_prompt
        if settings is not None:
            sets.append("settings = :st")
            params["st"] = json.dumps(settings)
        with self.db.write() as conn:
            n = conn.execute(
                text(f"UPDATE {TABLE} SET {', '.join(sets)} WHERE agent_id = :a"), params
            ).rowcount
        if not n:
            raise NotFoundError(f"no agent named {agent_id!r} in this store")

    # --- the step lease ------------------------------------------------------------------

    def acquire(self, agent_id: str, *, ttl_s: float = 600.0, wait_s: float = 30.0) -> Lease:
        """Take the step lease, waiting up to ``wait_s`` for a live holder to release it."""
        token = uuid.uuid4().hex
        host = socket.gethostname()
        deadline = time.monotonic() + wait_s
        delay = 0.02
        while True:
            holder = self._try_acquire(agent_id, token, host, ttl_s)
            if holder is None:
                return Lease(agent_id, token)
            if time.monotonic() >= deadline:
                h_host, h_pid = holder
                raise StoreBusyError(
                    f"agent {agent_id!r} is busy: process {h_pid} on {h_host} is running a step "
                    f"and held it for more than {wait_s:.0f} s; wait for it to finish, or stop "
                    "that process (a lease of a dead process is taken over automatically)"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def _try_acquire(
        self, agent_id: str, token: str, host: str, ttl_s: float
    ) -> tuple[str, int] | None:
        now = _now_us()
        with self.db.write() as conn:
            row = conn.execute(
                text(
                    f"SELECT lock_owner, lock_host, lock_pid, lock_until_us FROM {TABLE} "
                    "WHERE agent_id = :a" + (" FOR UPDATE" if self.db.dialect == "postgresql" else "")
                ),
                {"a": agent_id},
            ).fetchone()
            if row is None:
                raise NotFoundError(f"no agent named {agent_id!r} in this store")
            owner, h_host, h_pid, until = row
            free = (
                owner is None
                or (until is not None and int(until) < now)
                or (h_host == host and h_pid is not None and not _pid_alive(int(h_pid)))
            )
            if not free:
                return (str(h_host), int(h_pid or 0))
            conn.execute(
                text(
                    f"UPDATE {TABLE} SET lock_owner = :o, lock_host = :h, lock_pid = :p, "
                    "lock_until_us = :t WHERE agent_id = :a"
                ),
                {"o": token, "h": host, "p": os.getpid(), "t": now + int(ttl_s * 1e6),
                 "a": agent_id},
            )
        return None

    def renew(self, lease: Lease, *, ttl_s: float = 600.0) -> None:
        with self.db.write() as conn:
            conn.execute(
                text(f"UPDATE {TABLE} SET lock_until_us = :t WHERE agent_id = :a AND lock_owner = :o"),
                {"t": _now_us() + int(ttl_s * 1e6), "a": lease.agent_id, "o": lease.token},
            )

    def release(self, lease: Lease) -> None:
        with self.db.write() as conn:
            conn.execute(
                text(
                    f"UPDATE {TABLE} SET lock_owner = NULL, lock_host = NULL, lock_pid = NULL, "
                    "lock_until_us = NULL WHERE agent_id = :a AND lock_owner = :o"
                ),
                {"a": lease.agent_id, "o": lease.token},
            )
