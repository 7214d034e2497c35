"""The tables of the embedding queue and of the SQL vector copies (component ``vectors``).

``MIGRATIONS`` is append-only. ``rlmem_embed_queue`` holds one row per item (per tier) whose
vector is missing or stale, with a sequence number; ``rlmem_vectors`` holds one SQL copy of
each item's vector (see ``memory.vectors.copies``) with the name of the model that made it and
its element type.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

from memory.db import Migration

__all__ = ["MIGRATIONS", "QUEUE_TABLE", "VECTORS_TABLE"]

QUEUE_TABLE = "rlmem_embed_queue"
VECTORS_TABLE = "rlmem_vectors"


def _v1_queue(conn: Connection, dialect: str) -> None:
    conn.execute(
        text(
            f"CREATE TABLE {QUEUE_TABLE} ("
            " tier VARCHAR(32) NOT NULL, item_id BIGINT NOT NULL, seq BIGINT NOT NULL,"
            " PRIMARY KEY (tier, item_id))"
        )
    )


def _v2_vectors(conn: Connection, dialect: str) -> None:
    blob = "BYTEA" if dialect == "postgresql" else "BLOB"
    conn.execute(
        text(
            f"CREATE TABLE {VECTORS_TABLE} ("
            " tier VARCHAR(32) NOT NULL, item_id BIGINT NOT NULL, model VARCHAR(300) NOT NULL,"
            f" vec {blob} NOT NULL, PRIMARY KEY (tier, item_id))"
        )
    )


def _v3_dtype(conn: Connection, dialect: str) -> None:
    # Rows already stored are float32; new ones are written float16 (``copies.COPY_DTYPE``).
    conn.execute(text(f"ALTER TABLE {VECTORS_TABLE} ADD COLUMN dtype VARCHAR(8) NOT NULL DEFAULT 'float32'"))


MIGRATIONS = [
    Migration(1, "embedding queue", _v1_queue), Migration(2, "vector copies", _v2_vectors),
    Migration(3, "vector copies: element type", _v3_dtype),
]
