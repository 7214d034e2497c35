"""The database every tier shares: engine setup, transactions, and schema migrations.

Rules this module keeps:

* One ``Database`` per store, over SQLAlchemy. SQLite (the default, one file) runs in WAL mode
  with ``synchronous=FULL``, so a committed transaction is on disk when ``commit`` returns;
  PostgreSQL (``postgresql://...``) is the scale-out path through the same code.
* Writes go through ``Database.write()``, which on SQLite opens ``BEGIN IMMEDIATE`` so two
  writers queue on the database lock instead of failing half-way. Lock waits are bounded by
  ``busy_timeout_s``; past it the caller gets ``StoreBusyError``, never a raw
  "database is locked".
* Readers never wait for writers (WAL): opening a store whose schema is current writes
  nothing (migrations check in a read transaction first), and ``read_only`` connections
  (``PRAGMA query_only``) cannot take the write lock at all.
* Migrations are append-only and versioned *per component* (recall, blocks, archival, ...):
  each component owns its list, the table ``rlmem_migrations`` records what was applied, and
  a database written by a newer version of the code is refused rather than misread.
* A write that fails for want of space is ``DiskFullError`` naming the store's folder (SQLite
  says only "database or disk is full", or "disk I/O error" when it cannot grow its WAL).
"""

from __future__ import annotations

import re
import sqlite3
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from memory.errors import (
    ConfigError,
    DiskFullError,
    MigrationError,
    MissingExtraError,
    StoreBusyError,
    StoreError,
)

__all__ = ["Database", "Migration", "disk_full_message", "id_lists", "is_disk_full", "redact_url"]


@dataclass(frozen=True)
class Migration:
    """One schema step of a component. ``apply(conn, dialect)`` runs inside a transaction."""

    version: int
    name: str
    apply: Callable[[Connection, str], None]


def id_lists(ids: Sequence[int], size: int = 500) -> Iterator[str]:
    """``ids`` as comma-separated integer lists of at most ``size``, for ``IN (...)``: inlined
    rather than bound, as ``int()`` makes them safe and one statement stays small."""
    for a in range(0, len(ids), size):
        yield ",".join(str(int(i)) for i in ids[a : a + size])


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (safe for logs and error messages)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def _normalise_url(url: str) -> str:
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _is_busy(exc: BaseException) -> bool:
    msg = str(getattr(exc, "orig", exc)).lower()
    return "database is locked" in msg or "database is busy" in msg or "database table is locked" in msg


class Database:
    """A SQLAlchemy engine configured for rlm-memory, with bounded-retry transactions."""

    def __init__(self, engine: Engine, url: str, *, busy_timeout_s: float = 30.0, read_only: bool = False) -> None:
        self.engine = engine
        self.url = url
        self.read_only = read_only
        self.dialect: str = engine.dialect.name  # "sqlite" | "postgresql"
        self.busy_timeout_s = busy_timeout_s

    # --- opening -------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        url_or_path: str | Path,
        *,
        busy_timeout_s: float = 30.0,
        synchronous: str = "FULL",
        read_only: bool = False,
    ) -> Database:
        """Open a database by SQLAlchemy URL or by SQLite file path (created if missing).

        ``read_only`` (SQLite): connections are opened with ``query_only``, so a read-only
        command can never take the write lock, and migrations that would have to write are
        refused instead of waiting."""
        raw = str(url_or_path)
        if "://" not in raw:
            path = Path(raw).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            raw = f"sqlite:///{path}"
        url = _normalise_url(raw)
        if url.startswith("sqlite"):
            engine = create_engine(
                url, connect_args={"timeout": busy_timeout_s, "check_same_thread": False}
            )
            _configure_sqlite(engine, busy_timeout_s, synchronous, read_only=read_only)
        elif url.startswith("postgresql"):
            try:
                engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
            except ModuleNotFoundError as exc:  # the driver is the optional extra [postgres]
                raise MissingExtraError("postgres", "a PostgreSQL store", exc.name) from None
        else:
            raise ConfigError(
                f"unsupported database URL {redact_url(raw)!r}: use a file path, "
                "sqlite:///path or postgresql://user@host/db"
            )
        db = cls(engine, url, busy_timeout_s=busy_timeout_s, read_only=read_only)
        try:
            with db.read() as conn:
                conn.execute(text("SELECT 1"))
        except DBAPIError as exc:
            engine.dispose()
            full = _full_disk(url)
            if full:
                raise DiskFullError(f"cannot open database {redact_url(raw)}: {full}") from exc
            raise StoreError(f"cannot open database {redact_url(raw)}: {exc.orig}") from exc
        return db

    def close(self) -> None:
        self.engine.dispose()

    # --- transactions --------------------------------------------------------------------

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reads (a deferred transaction; sees one consistent snapshot)."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self, *, _migrating: bool = False) -> Iterator[Connection]:
        """A write transaction, committed on exit and rolled back on error.

        On SQLite it takes the write lock up front (``BEGIN IMMEDIATE``), waiting up to
        ``busy_timeout_s``; past that, ``StoreBusyError``.
        """
        deadline = time.monotonic() + self.busy_timeout_s
        unlock = _migrating and self.read_only and self.dialect == "sqlite"
        while True:
            conn = self.engine.connect()
            if unlock:
                conn.connection.dbapi_connection.execute("PRAGMA query_only=OFF")  # type: ignore[union-attr]
            if self.dialect == "sqlite":
                conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            try:
                trans = conn.begin()
            except OperationalError as exc:
                if unlock:
                    conn.connection.dbapi_connection.execute("PRAGMA query_only=ON")  # type: ignore[union-attr]
                conn.close()
                if _is_busy(exc) and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                if _is_busy(exc):
                    raise StoreBusyError(
                        f"the store is busy: another process held the write lock for more than "
                        f"{self.busy_timeout_s:.0f} s; retry, or stop the other writer"
                    ) from exc
                full = self._disk_full(exc)
                if full:
                    raise DiskFullError(f"cannot start a write transaction: {full}") from exc
                raise StoreError(f"cannot start a write transaction: {exc.orig}") from exc
            break
        try:
            yield conn
            trans.commit()
        except OperationalError as exc:
            trans.rollback()
            if _is_busy(exc):
                raise StoreBusyError(
                    "the store is busy (locked by another process); nothing was written, retry"
                ) from exc
            full = self._disk_full(exc)
            if full:
                raise DiskFullError(f"nothing was written: {full}") from exc
            raise StoreError(f"database error, nothing was written: {exc.orig}") from exc
        except BaseException:
            if trans.is_active:
                trans.rollback()
            raise
        finally:
            if unlock:
                conn.connection.dbapi_connection.execute("PRAGMA query_only=ON")  # type: ignore[union-attr]
            conn.close()

    def _disk_full(self, exc: BaseException) -> str | None:
        """The disk-full message for a failed write, or None when space was not the cause."""
        msg = str(getattr(exc, "orig", exc))
        if self.dialect == "sqlite":
            full = _says_full(msg)
            if full or "disk i/o error" in msg.lower():
                return _full_disk(self.url, always=full)
            return None
        if _says_full(msg):
            return f"the disk of the database server ({redact_url(self.url)}) is full: free some space and retry"
        return None

    # --- migrations ----------------------------------------------------------------------

    def migrate(self, component: str, migrations: Sequence[Migration]) -> int:
        """Bring ``component``'s schema up to date; returns its version afterwards."""
        versions = [m.version for m in migrations]
        if versions != list(range(1, len(migrations) + 1)):
            raise MigrationError(f"{component}: migrations must be numbered 1..n, got {versions}")
        # A current schema is the common case: check it in a read transaction, so opening a
        # store never queues behind another process's write transaction.
        applied_now = self._applied(component)
        if applied_now is not None and applied_now >= set(versions):
            if max(applied_now) > len(migrations):
                raise MigrationError(
                    f"the {component} schema is at version {max(applied_now)}, newer than this "
                    f"rlm-memory knows ({len(migrations)}); upgrade rlm-memory"
                )
            return len(migrations)
        # A read-only store still gets a missing schema once (a store older than this code);
        # that one write waits for other writers like any write.
        with self.write(_migrating=True) as conn:
            if self.dialect == "postgresql":
                # Serialise concurrent migrators on Postgres (SQLite has BEGIN IMMEDIATE).
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(:k)"),
                    {"k": zlib.crc32(b"rlmem_migrations")},
                )
            conn.execute(
                text(
                    "CREATE TABLE IF NOT EXISTS rlmem_migrations ("
                    " component VARCHAR(64) NOT NULL, version INTEGER NOT NULL,"
                    " name VARCHAR(200) NOT NULL, applied_at VARCHAR(40) NOT NULL,"
                    " PRIMARY KEY (component, version))"
                )
            )
            applied = {
                row[0]
                for row in conn.execute(
                    text("SELECT version FROM rlmem_migrations WHERE component = :c"),
                    {"c": component},
                )
            }
            if applied and max(applied) > len(migrations):
                raise MigrationError(
                    f"the {component} schema is at version {max(applied)}, newer than this "
                    f"rlm-memory knows ({len(migrations)}); upgrade rlm-memory"
                )
            for m in migrations:
                if m.version in applied:
                    continue
                try:
                    m.apply(conn, self.dialect)
                except DBAPIError as exc:
                    raise MigrationError(
                        f"{component} migration {m.version} ({m.name}) failed: {exc.orig}"
                    ) from exc
                conn.execute(
                    text(
                        "INSERT INTO rlmem_migrations (component, version, name, applied_at)"
                        " VALUES (:c, :v, :n, :t)"
                    ),
                    {"c": component, "v": m.version, "n": m.name, "t": datetime.now(UTC).isoformat()},
                )
        return len(migrations)

    def _applied(self, component: str) -> set[int] | None:
        """The applied versions of ``component`` (None when there is no migrations table)."""
        try:
            with self.read() as conn:
                rows = conn.execute(
                    text("SELECT version FROM rlmem_migrations WHERE component = :c"), {"c": component}
                ).all()
        except DBAPIError:
            return None
        return {int(r[0]) for r in rows}

    def schema_version(self, component: str) -> int:
        """The applied schema version of ``component`` (0 when none)."""
        with self.read() as conn:
            try:
                v = conn.execute(
                    text("SELECT MAX(version) FROM rlmem_migrations WHERE component = :c"),
                    {"c": component},
                ).scalar()
            except DBAPIError:
                return 0
        return int(v or 0)

    def integrity_check(self) -> str:
        """``ok`` when SQLite's integrity check passes (always ``ok`` on Postgres)."""
        if self.dialect != "sqlite":
            return "ok"
        with self.read() as conn:
            return str(conn.exec_driver_sql("PRAGMA integrity_check").scalar())


def _configure_sqlite(engine: Engine, busy_timeout_s: float, synchronous: str, *, read_only: bool = False) -> None:
    if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
        raise ConfigError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, got {synchronous!r}")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's implicit BEGIN
        # would make BEGIN IMMEDIATE impossible and DDL non-transactional).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cur.execute("PRAGMA foreign_keys=ON")
        if read_only:
            cur.execute("PRAGMA query_only=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def disk_full_message(folder: str | Path, free: int | None = None) -> str:
    """What every surface says when the disk holding ``folder`` has no room left."""
    if free is None:
        import shutil

        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            free = 0
    return f"the disk holding {folder} is full ({free:,} bytes free): free some space and retry"


# What SQLite ("database or disk is full"), the OS (ENOSPC's text) and PostgreSQL (SQLSTATE
# 53100, "disk full") say when there is no room: the one list both checks below read.
_FULL_TEXTS = ("database or disk is full", "no space left on device", "disk full")


def _says_full(text: str) -> bool:
    low = text.lower()
    return any(t in low for t in _FULL_TEXTS)


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` or an error it was raised from says the disk is full (``ENOSPC``,
    ``EDQUOT``, or one of ``_FULL_TEXTS``)."""
    import errno

    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, DiskFullError):
            return True
        if isinstance(cur, OSError) and cur.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if _says_full(str(cur)):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def _full_disk(url: str, *, always: bool = False) -> str | None:
    """For a SQLite file whose open or write failed: "the disk ... is full" when its
    filesystem has no room left (``always``: SQLite said so itself; otherwise it said only
    "disk I/O error", which is a full disk when less than 1 MiB is free)."""
    if not url.startswith("sqlite:///"):
        return None
    import shutil

    folder = Path(url[len("sqlite:///"):]).parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return None
    if free >= 1 << 20 and not always:
        return None
    return disk_full_message(folder, free)

