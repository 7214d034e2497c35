"""Schema and SQL helpers of the archival tier (component ``archival``).

Rules this module keeps:

* ``MIGRATIONS`` is append-only; ``archival_chunks`` is the source of truth for chunk text,
  source, position, tags, metadata and content hash. Timestamps are integer microseconds
  since the epoch (UTC), like the recall log.
* Tags live in ``archival_tags`` as well as in the row's JSON, so tag filters are indexed.
* Full text mirrors the recall log: an FTS5 external-content table kept by triggers on SQLite
  (``unicode61``, diacritics removed), a generated ``tsvector`` (``simple``) on PostgreSQL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from memory.db import Migration, id_lists
from memory.errors import ValidationError
from memory.text.query import check_text, from_us
from memory.vectors.index import Meta

__all__ = [
    "FTS", "MIGRATIONS", "TABLE", "TAGS", "TIER", "Chunk", "IngestSummary", "check_meta",
    "check_tags", "filter_sql", "informative_phrases", "row_to_chunk", "vector_meta",
]

TIER = "archival"
TABLE = "archival_chunks"
TAGS = "archival_tags"
FTS = "archival_fts"
_KEY = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")


def _v1(conn: Connection, dialect: str) -> None:
    id_col = "id INTEGER PRIMARY KEY AUTOINCREMENT" if dialect == "sqlite" else "id BIGSERIAL PRIMARY KEY"
    conn.execute(
        text(
            f"CREATE TABLE {TABLE} ({id_col}, text TEXT NOT NULL, source TEXT,"
            " position INTEGER, tags TEXT NOT NULL DEFAULT '[]',"
            " metadata TEXT NOT NULL DEFAULT '{}', content_hash VARCHAR(64) NOT NULL,"
            " created_us BIGINT NOT NULL, updated_us BIGINT NOT NULL)"
        )
    )
    conn.execute(text(f"CREATE INDEX ix_{TABLE}_hash ON {TABLE} (content_hash)"))
    conn.execute(text(f"CREATE INDEX ix_{TABLE}_source ON {TABLE} (source, position)"))
    conn.execute(text(f"CREATE INDEX ix_{TABLE}_created ON {TABLE} (created_us)"))
    conn.execute(
        text(
            f"CREATE TABLE {TAGS} (chunk_id BIGINT NOT NULL REFERENCES {TABLE}(id) ON DELETE CASCADE,"
            " tag VARCHAR(200) NOT NULL, PRIMARY KEY (chunk_id, tag))"
        )
    )
    conn.execute(text(f"CREATE INDEX ix_{TAGS}_tag ON {TAGS} (tag, chunk_id)"))
    if dialect == "sqlite":
        conn.execute(
            text(
                f"CREATE VIRTUAL TABLE {FTS} USING fts5(text, content='{TABLE}',"
                " content_rowid='id', tokenize='unicode61 remove_diacritics 2')"
            )
        )
        conn.execute(
            text(
                f"CREATE TRIGGER {TABLE}_ai AFTER INSERT ON {TABLE} BEGIN"
                f" INSERT INTO {FTS}(rowid, text) VALUES (new.id, new.text); END"
            )
        )
        conn.execute(
            text(
                f"CREATE TRIGGER {TABLE}_ad AFTER DELETE ON {TABLE} BEGIN"
                f" INSERT INTO {FTS}({FTS}, rowid, text) VALUES ('delete', old.id, old.text); END"
            )
        )
        conn.execute(
            text(
                f"CREATE TRIGGER {TABLE}_au AFTER UPDATE OF text ON {TABLE} BEGIN"
                f" INSERT INTO {FTS}({FTS}, rowid, text) VALUES ('delete', old.id, old.text);"
                f" INSERT INTO {FTS}(rowid, text) VALUES (new.id, new.text); END"
            )
        )
    else:
        conn.execute(
            text(
                f"ALTER TABLE {TABLE} ADD COLUMN tsv tsvector GENERATED ALWAYS AS"
                " (to_tsvector('simple'::regconfig, left(text, 100000))) STORED"
            )
        )
        conn.execute(text(f"CREATE INDEX ix_{TABLE}_tsv ON {TABLE} USING GIN (tsv)"))


def _v2_vocab(conn: Connection, dialect: str) -> None:
    if dialect == "sqlite":
        conn.execute(text(f"CREATE VIRTUAL TABLE {FTS}_vocab USING fts5vocab({FTS}, 'row')"))


MIGRATIONS: list[Migration] = [
    Migration(1, "chunks, tags and full text", _v1),
    Migration(2, "full-text vocabulary (document frequencies)", _v2_vocab),
]


def informative_phrases(conn: Connection, dialect: str, phrases: Sequence[str]) -> list[str]:
    """The phrases minus single words found in half the chunks or more.

    BM25 gives such a word an IDF of zero (FTS5 clamps it to ~0), so it cannot change the
    order of the other matches, but it makes most chunks matches to be scored: dropping it
    keeps full-text search fast on large stores. Chunks that match only such words are
    then not returned (their score would be ~0). When every word is that common, the
    rarest is kept.
    """
    if dialect != "sqlite" or len(phrases) < 2:
        return list(phrases)
    single = [p.lower() for p in phrases if re.fullmatch(r"\w+", p) and p.isascii()]
    if not single:
        return list(phrases)
    n = int(conn.execute(text(f"SELECT COUNT(*) FROM {TABLE}")).scalar() or 0)
    names = ", ".join(f":w{i}" for i in range(len(single)))
    df: dict[str, int] = dict(
        conn.execute(  # type: ignore[arg-type]
            text(f"SELECT term, doc FROM {FTS}_vocab WHERE term IN ({names})"),
            {f"w{i}": w for i, w in enumerate(single)},
        ).all()
    )
    keep = [p for p in phrases if 2 * int(df.get(p.lower(), 0)) < n]
    return keep or [min(phrases, key=lambda p: int(df.get(p.lower(), 0)))]


def check_key(key: object) -> str:
    if not isinstance(key, str) or not _KEY.match(key):
        raise ValidationError(
            f"metadata key {key!r} must be 1-100 characters of letters, digits, _ . or -"
        )
    return key


def filter_sql(
    dialect: str,
    *,
    tags: Sequence[str] | None,
    tags_mode: str,
    metadata: Mapping[str, Any] | None,
    since_us: int | None,
    until_us: int | None,
    source: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """A ``AND ...`` SQL fragment over alias ``c`` and its parameters."""
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if tags:
        names = ", ".join(f":tag{i}" for i in range(len(tags)))
        params.update({f"tag{i}": t for i, t in enumerate(tags)})
        if tags_mode == "all":
            clauses.append(
                f"(SELECT COUNT(DISTINCT t.tag) FROM {TAGS} t WHERE t.chunk_id = c.id"
                f" AND t.tag IN ({names})) = {len(set(tags))}"
            )
        else:
            clauses.append(f"EXISTS (SELECT 1 FROM {TAGS} t WHERE t.chunk_id = c.id AND t.tag IN ({names}))")
    for i, (key, value) in enumerate((metadata or {}).items()):
        check_key(key)
        if not isinstance(value, str | int | float | bool) or value is None:
            raise ValidationError(f"metadata filter {key!r} must be a string, number or bool")
        if dialect == "sqlite":
            clauses.append(f"json_extract(c.metadata, :mp{i}) = :mv{i}")
            params[f"mp{i}"] = f'$."{key}"'
            params[f"mv{i}"] = int(value) if isinstance(value, bool) else value
        else:
            clauses.append(f"(CAST(c.metadata AS jsonb) -> :mp{i}) = CAST(:mv{i} AS jsonb)")
            params[f"mp{i}"] = key
            params[f"mv{i}"] = json.dumps(value)
    if since_us is not None:
        clauses.append("c.created_us >= :since_us")
        params["since_us"] = since_us
    if until_us is not None:
        clauses.append("c.created_us <= :until_us")
        params["until_us"] = until_us
    if source is not None:
        clauses.append("c.source = :src")
        params["src"] = source
    return "".join(f" AND {c}" for c in clauses), params


@dataclass(frozen=True)
class Chunk:
    id: int
    text: str
    source: str | None
    position: int | None
    tags: tuple[str, ...]
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "text": self.text, "source": self.source, "position": self.position,
            "tags": list(self.tags), "metadata": self.metadata,
            "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class IngestSummary:
    """What ``ingest`` did; ``problems`` names each file left out for a reason worth telling
    (a link leaving the folder, a special or binary file, a bad name, an unreadable file);
    ``by_extension`` counts the files found in folders and left out for their extension, as
    ``(extension, files)`` pairs ("" for none), most first."""

    files: int
    chunks: int
    skipped: int
    duplicates: int
    seconds: float
    problems: tuple[tuple[str, str], ...] = ()
    by_extension: tuple[tuple[str, int], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["problems"] = [{"path": p, "reason": r} for p, r in self.problems]
        d["by_extension"] = dict(self.by_extension)
        d["seconds"] = round(self.seconds, 3)
        return d


CHUNK_COLUMNS = "c.id, c.text, c.source, c.position, c.tags, c.metadata, c.created_us, c.updated_us"


def fetch_chunks(conn: Connection, ids: Sequence[int]) -> dict[int, Chunk]:
    """The chunks with these ids that exist, by id (one ``IN`` query per bounded id list)."""
    out: dict[int, Chunk] = {}
    for part in id_lists(ids):
        for r in conn.execute(text(f"SELECT {CHUNK_COLUMNS} FROM {TABLE} c WHERE c.id IN ({part})")):
            out[int(r[0])] = row_to_chunk(r)
    return out


def row_to_chunk(r: Any) -> Chunk:
    return Chunk(
        id=int(r[0]), text=r[1], source=r[2], position=r[3], tags=tuple(json.loads(r[4])),
        metadata=json.loads(r[5]), created_at=from_us(r[6]), updated_at=from_us(r[7]),
    )


def check_tags(tags: Iterable[str] | None) -> tuple[str, ...]:
    if tags is None:
        return ()
    if isinstance(tags, str):
        tags = [tags]
    out = []
    for t in tags:
        t = check_text(t, "tag", allow_nul=False)
        if not t or len(t) > 200:
            raise ValidationError(f"a tag must be 1 to 200 characters, got {t!r}")
        out.append(t)
    return tuple(dict.fromkeys(out))


def check_meta(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ValidationError("metadata must be a dict")
    try:
        json.dumps(dict(metadata))
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"metadata must be JSON-serialisable: {exc}") from None
    return dict(metadata)


def vector_meta(c: Chunk) -> Meta:
    """The fields Chroma ``where`` filters need (scalars only)."""
    m: Meta = {"ts": c.created_at.timestamp()}
    if c.source is not None:
        m["source"] = c.source
    for t in c.tags:
        m[f"tag:{t}"] = True
    for key, v in c.metadata.items():
        if isinstance(v, str | int | float | bool):
            m[f"m:{key}"] = v
    return m
