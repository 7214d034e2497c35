"""Trajectories in the shared database (SQLite or PostgreSQL via ``memory.db``).

Rules this module keeps:

* It lives above rlm_core, which never holds a database: ``TrajectoryStore(db)`` is the
  ``TrajectorySink`` handed to ``RLM(trajectory_sink=...)``.
* One table, ``rlm_trajectories``, owned by the ``trajectories`` migration component; its
  migrations are append-only.
* One row per top-level run: summary columns for listing and filtering, and the whole
  trajectory (children included) as JSON text, so loading gives back exactly what was saved.
* Saving the same ``run_id`` again replaces the row (a run saved on error, then on success).
"""

from __future__ import annotations

import json
import weakref
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from memory.db import Database, Migration
from memory.errors import NotFoundError, ValidationError
from rlm_core.trajectory.records import Trajectory

__all__ = [
    "MIGRATIONS",
    "TrajectoryStore",
    "TrajectorySummary",
    "list_trajectories",
    "load_trajectory",
    "save_trajectory",
]


def _create_table(conn: Connection, dialect: str) -> None:
    conn.execute(
        text(
            "CREATE TABLE IF NOT EXISTS rlm_trajectories ("
            " run_id VARCHAR(64) PRIMARY KEY,"
            " started_at VARCHAR(40) NOT NULL,"
            " query TEXT NOT NULL,"
            " answer TEXT,"
            " stopped_by VARCHAR(40),"
            " error TEXT,"
            " iterations INTEGER NOT NULL,"
            " sub_calls INTEGER NOT NULL,"
            " total_tokens BIGINT NOT NULL,"
            " cost_usd DOUBLE PRECISION NOT NULL,"
            " elapsed_s DOUBLE PRECISION NOT NULL,"
            " data TEXT NOT NULL)"
        )
    )
    conn.execute(
        text("CREATE INDEX IF NOT EXISTS ix_rlm_trajectories_started ON rlm_trajectories (started_at)")
    )


MIGRATIONS = [Migration(1, "create rlm_trajectories", _create_table)]

_migrated: weakref.WeakSet[Database] = weakref.WeakSet()


def _ensure(db: Database) -> None:
    # Migrating is idempotent but takes the write lock; do it once per Database object.
    if db not in _migrated:
        db.migrate("trajectories", MIGRATIONS)
        _migrated.add(db)


@dataclass(frozen=True)
class TrajectorySummary:
    run_id: str
    started_at: str
    query: str
    answer: str | None
    stopped_by: str | None
    iterations: int
    sub_calls: int
    total_tokens: int
    cost_usd: float
    elapsed_s: float


def save_trajectory(db: Database, traj: Trajectory) -> None:
    """Insert or replace ``traj`` (with every child trajectory inside it)."""
    _ensure(db)
    nodes = traj.walk()
    row: dict[str, Any] = {
        "run_id": traj.run_id,
        "started_at": traj.started_at,
        "query": traj.query,
        "answer": traj.answer,
        "stopped_by": traj.stopped_by,
        "error": traj.error,
        "iterations": len(traj.iterations),
        "sub_calls": sum(len(n.sub_calls) for n in nodes),
        "total_tokens": traj.total_usage.total_tokens,
        "cost_usd": traj.cost_usd,
        "elapsed_s": traj.elapsed_s,
        "data": traj.to_json(),
    }
    with db.write() as conn:
        conn.execute(text("DELETE FROM rlm_trajectories WHERE run_id = :run_id"), row)
        conn.execute(
            text(
                "INSERT INTO rlm_trajectories (run_id, started_at, query, answer, stopped_by,"
                " error, iterations, sub_calls, total_tokens, cost_usd, elapsed_s, data)"
                " VALUES (:run_id, :started_at, :query, :answer, :stopped_by, :error,"
                " :iterations, :sub_calls, :total_tokens, :cost_usd, :elapsed_s, :data)"
            ),
            row,
        )


def load_trajectory(db: Database, run_id: str) -> Trajectory:
    """The trajectory saved under ``run_id``, or under the one run id that starts with it (the
    short id a rendered header shows, at least 4 characters); ``NotFoundError`` if there is none,
    ``ValidationError`` if a prefix names several."""
    _ensure(db)
    with db.read() as conn:
        data = conn.execute(
            text("SELECT data FROM rlm_trajectories WHERE run_id = :r"), {"r": run_id}
        ).scalar()
        if data is None and len(run_id) >= 4 and all(c in "0123456789abcdef-" for c in run_id.lower()):
            found = conn.execute(
                text("SELECT run_id, data FROM rlm_trajectories WHERE run_id LIKE :p LIMIT 6"),
                {"p": run_id.lower() + "%"},
            ).all()
            if len(found) > 1:
                ids = ", ".join(r[0][:12] for r in found[:5])
                raise ValidationError(f"run id prefix {run_id!r} names {len(found)}"
                                      f"{'+' if len(found) > 5 else ''} runs ({ids}...); give more of it")
            data = found[0][1] if found else None
    if data is None:
        raise NotFoundError(f"no trajectory with run_id {run_id!r}; `rlmem trajectory list` "
                            "shows them (Python: list_trajectories(db))")
    return Trajectory.from_dict(json.loads(data))


def question_of(query: str) -> str:
    """The question of a recorded ``ask`` query, without the memory summary that follows it
    (``agents.ask.build_query``), on one line."""
    return " ".join(query.split("\n\n", 1)[0].split())


def list_trajectories(db: Database, *, limit: int = 50) -> list[TrajectorySummary]:
    """The most recent runs first."""
    _ensure(db)
    with db.read() as conn:
        rows = conn.execute(
            text(
                "SELECT run_id, started_at, query, answer, stopped_by, iterations, sub_calls,"
                " total_tokens, cost_usd, elapsed_s FROM rlm_trajectories"
                " ORDER BY started_at DESC LIMIT :n"
            ),
            {"n": limit},
        ).all()
    return [TrajectorySummary(*r) for r in rows]


class TrajectoryStore:
    """The runs of one database: a ``TrajectorySink`` for the engine, and their reader."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def save(self, trajectory: Trajectory) -> None:
        save_trajectory(self.db, trajectory)

    def load(self, run_id: str) -> Trajectory:
        return load_trajectory(self.db, run_id)

    def list(self, *, limit: int = 50) -> list[TrajectorySummary]:
        return list_trajectories(self.db, limit=limit)
