"""Schema of the recall log: the append-only, versioned migration list of component ``recall``.

Rules this module keeps:

* ``MIGRATIONS`` is append-only: a released step is never edited, a change is a new step.
  ``Database.migrate("recall", MIGRATIONS)`` applies what a database lacks, so a database
  created by any earlier version upgrades in place and keeps its rows.
* One table, ``recall_messages``, is the source of truth. Timestamps are stored as integer
  microseconds since the Unix epoch (UTC) so they compare and sort the same on every dialect.
* Full text is derived from ``recall_messages`` and can always be rebuilt from it:
  on SQLite an FTS5 external-content table kept in step by triggers (``unicode61`` tokenizer,
  diacritics removed, no stemming); on PostgreSQL a stored generated ``tsvector`` column with
  the ``simple`` configuration (no stemming, like FTS5) and a GIN index. PostgreSQL caps a
  ``tsvector`` at 1 MB, so there only the first ``PG_FTS_CHARS`` characters of a message are
  indexed; ``grep`` still reads every character.
* A message may carry an external key (``msg_key``, v5): the identity the writer gave it (a
  transcript record's uuid, an HTTP idempotency key). It is unique per agent, so storing the
  same record twice is impossible whatever the order or concurrency of the writers; messages
  without a key (NULL) are never in conflict.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

from memory.db import Migration

__all__ = ["FORGET_TABLE", "FTS_TABLE", "MIGRATIONS", "PG_FTS_CHARS", "TABLE"]

TABLE = "recall_messages"
FTS_TABLE = "recall_fts"
FORGET_TABLE = "recall_forget_log"
PG_FTS_CHARS = 100_000


def _v1_messages(conn: Connection, dialect: str) -> None:
    if dialect == "sqlite":
        # AUTOINCREMENT: an id is never handed out twice, even after forget() removed the
        # newest rows.
        id_col = "id INTEGER PRIMARY KEY AUTOINCREMENT"
    else:
        id_col = "id BIGSERIAL PRIMARY KEY"
    conn.execute(
        text(
            f"CREATE TABLE {TABLE} ("
            f" {id_col},"
            " agent_id VARCHAR(200) NOT NULL,"
            " session_id VARCHAR(200) NOT NULL,"
            " role VARCHAR(16) NOT NULL,"
            " content TEXT NOT NULL,"
            " tool_name VARCHAR(200),"
            " tool_args TEXT,"
            " created_us BIGINT NOT NULL,"
            " tokens INTEGER NOT NULL DEFAULT 0,"
            " metadata TEXT NOT NULL DEFAULT '{}')"
        )
    )
    conn.execute(text(f"CREATE INDEX ix_{TABLE}_session ON {TABLE} (session_id, id)"))
    conn.execute(text(f"CREATE INDEX ix_{TABLE}_agent ON {TABLE} (agent_id, session_id, id)"))


def _v2_full_text(conn: Connection, dialect: str) -> None:
    if dialect == "sqlite":
        conn.execute(
            text(
                f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(content, content='{TABLE}',"
                " content_rowid='id', tokenize='unicode61 remove_diacritics 2')"
            )
        )
        conn.execute(
            text(
                f"CREATE TRIGGER {TABLE}_fts_ai AFTER INSERT ON {TABLE} BEGIN"
                f" INSERT INTO {FTS_TABLE}(rowid, content) VALUES (new.id, new.content); END"
            )
        )
        conn.execute(
            text(
                f"CREATE TRIGGER {TABLE}_fts_ad AFTER DELETE ON {TABLE} BEGIN"
                f" INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, content)"
                " VALUES ('delete', old.id, old.content); END"
            )
        )
        # Messages are append-only, but an UPDATE by hand must not desynchronise the index.
        conn.execute(
            text(
                f"CREATE TRIGGER {TABLE}_fts_au AFTER UPDATE OF content ON {TABLE} BEGIN"
                f" INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, content)"
                " VALUES ('delete', old.id, old.content);"
                f" INSERT INTO {FTS_TABLE}(rowid, content) VALUES (new.id, new.content); END"
            )
        )
        # Rows written by schema version 1 get indexed here.
        conn.execute(text(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')"))
    else:
        conn.execute(
            text(
                f"ALTER TABLE {TABLE} ADD COLUMN tsv tsvector GENERATED ALWAYS AS"
                f" (to_tsvector('simple'::regconfig, left(content, {PG_FTS_CHARS}))) STORED"
            )
        )
        conn.execute(text(f"CREATE INDEX ix_{TABLE}_tsv ON {TABLE} USING GIN (tsv)"))


def _v3_forget_audit(conn: Connection, dialect: str) -> None:
    id_col = (
        "id INTEGER PRIMARY KEY AUTOINCREMENT" if dialect == "sqlite" else "id BIGSERIAL PRIMARY KEY"
    )
    conn.execute(
        text(
            f"CREATE TABLE {FORGET_TABLE} ("
            f" {id_col},"
            " at_us BIGINT NOT NULL,"
            " actor VARCHAR(200) NOT NULL,"
            " reason TEXT NOT NULL,"
            " selector TEXT NOT NULL,"
            " message_ids TEXT NOT NULL,"
            " message_count INTEGER NOT NULL)"
        )
    )
    conn.execute(text(f"CREATE INDEX ix_{TABLE}_created ON {TABLE} (created_us)"))


def _v4_agent_order(conn: Connection, dialect: str) -> None:
    # An agent's buffer reads "its messages after id N" on every model call; the v1
    # (agent_id, session_id, id) index cannot serve that order without a sort.
    conn.execute(text(f"CREATE INDEX ix_{TABLE}_agent_id ON {TABLE} (agent_id, id)"))


def _v5_message_keys(conn: Connection, dialect: str) -> None:
    # Nullable: every message written before v5, and every message given no key, keeps NULL,
    # which a UNIQUE index never compares equal on either dialect.
    conn.execute(text(f"ALTER TABLE {TABLE} ADD COLUMN msg_key VARCHAR(200)"))
    conn.execute(text(f"CREATE UNIQUE INDEX ux_{TABLE}_key ON {TABLE} (agent_id, msg_key)"))


MIGRATIONS: list[Migration] = [
    Migration(1, "messages table", _v1_messages),
    Migration(2, "full-text index", _v2_full_text),
    Migration(3, "forget audit log and time index", _v3_forget_audit),
    Migration(4, "agent order index", _v4_agent_order),
    Migration(5, "external message keys", _v5_message_keys),
]
