"""The archival tier: document chunks in SQL, their vectors in Chroma.

Rules this module keeps:

* SQL is the source of truth. ``insert``/``ingest`` commit the chunk rows *and* their
  embedding-queue entries in one transaction before anything is embedded; vectors follow in
  batches. A kill -9 at any point loses nothing acknowledged: pending chunks are found by
  full-text search meanwhile and embedded on the next drain (``embed_pending``, the
  background worker, or the next open).
* Search results are always read back from SQL, so a vector whose chunk was deleted (a crash
  between the SQL delete and the Chroma delete) is never returned.
* ``ingest`` deduplicates by SHA-256 of the chunk text, against the store and within the run.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from memory.archival.schema import (
    CHUNK_COLUMNS,
    MIGRATIONS,
    TABLE,
    TAGS,
    TIER,
    Chunk,
    IngestSummary,
    check_meta,
    check_tags,
    fetch_chunks,
    row_to_chunk,
    vector_meta,
)
from memory.archival.search import grep_chunks, search_chunks
from memory.db import Database
from memory.errors import NotFoundError, UserError, ValidationError
from memory.fusion import FusionConfig
from memory.text.chunking import DEFAULT_EXTS, chunk_text
from memory.text.files import read_text, walk_files
from memory.text.query import check_row_id, check_text, to_us
from memory.types import GrepHit, SearchHit
from memory.vectors.index import Meta, VectorIndex
from memory.vectors.queue import EmbeddingQueue, Progress, QueueSource

__all__ = ["TIER", "ArchivalStore", "Chunk", "IngestSummary"]

_COLS = CHUNK_COLUMNS


class ArchivalStore:
    """Chunks of documents, searchable by full text, by meaning, or both."""

    def __init__(
        self,
        db: Database,
        index: VectorIndex | None,
        queue: EmbeddingQueue | None = None,
        *,
        fusion: FusionConfig | None = None,
        embed_batch: int = 256,
    ) -> None:
        self.db = db
        db.migrate(TIER, MIGRATIONS)
        self.index = index
        self.queue = queue or EmbeddingQueue(db)
        self.fusion = fusion or FusionConfig()
        self.embed_batch = embed_batch
        if index is not None:
            self.queue.register(TIER, QueueSource(index, self._load_for_embedding, TABLE))

    # --- writing ---------------------------------------------------------------------------

    def _load_for_embedding(self, conn: Connection, ids: list[int]) -> list[tuple[int, str, Meta]]:
        return [(c.id, c.text, vector_meta(c)) for c in fetch_chunks(conn, ids).values()]

    def _insert_rows(self, conn: Connection, items: Sequence[dict[str, Any]]) -> list[int]:
        now = to_us(datetime.now(UTC))
        ids: list[int] = []
        for it in items:
            row = conn.execute(
                text(
                    f"INSERT INTO {TABLE} (text, source, position, tags, metadata, content_hash,"
                    " created_us, updated_us) VALUES (:t, :s, :p, :tags, :m, :h, :c, :c)"
                    " RETURNING id"
                ),
                {
                    "t": it["text"], "s": it["source"], "p": it["position"],
                    "tags": json.dumps(list(it["tags"])), "m": json.dumps(it["metadata"]),
                    "h": it["hash"], "c": it.get("created_us", now),
                },
            ).scalar_one()
            ids.append(int(row))
            if it["tags"]:
                conn.execute(
                    text(f"INSERT INTO {TAGS} (chunk_id, tag) VALUES (:i, :t)"),
                    [{"i": row, "t": t} for t in it["tags"]],
                )
        self.queue.enqueue(conn, TIER, ids)
        return ids

    def _prepare(self, item: str | Mapping[str, Any]) -> dict[str, Any]:
        if isinstance(item, str):
            item = {"text": item}
        if not isinstance(item, Mapping):
            raise ValidationError(f"insert_many takes strings or dicts, got {type(item).__name__}")
        unknown = set(item) - {"text", "tags", "metadata", "source", "position", "created_at"}
        if unknown:
            raise ValidationError(f"unknown chunk field {sorted(unknown)[0]!r}")
        body = check_text(item.get("text"), "text", allow_nul=False)
        if not body.strip():
            raise ValidationError("chunk text is empty")
        src = item.get("source")
        pos = item.get("position")
        if pos is not None and (not isinstance(pos, int) or isinstance(pos, bool)):
            raise ValidationError("position must be an integer")
        out = {
            "text": body, "tags": check_tags(item.get("tags")),
            "metadata": check_meta(item.get("metadata")),
            "source": None if src is None else check_text(str(src), "source", allow_nul=False),
            "position": pos, "hash": hashlib.sha256(body.encode()).hexdigest(),
        }
        if item.get("created_at") is not None:
            out["created_us"] = to_us(item["created_at"])
        return out

    def insert(
        self,
        text: str,
        *,
        tags: Iterable[str] = (),
        metadata: Mapping[str, Any] | None = None,
        source: str | None = None,
        position: int | None = None,
    ) -> int:
        """Store one chunk; durable on return, embedded in the background or on next drain."""
        item = {"text": text, "tags": tags, "metadata": metadata, "source": source, "position": position}
        return self.insert_many([item])[0]

    def insert_many(self, items: Iterable[str | Mapping[str, Any]]) -> list[int]:
        """Store many chunks in one transaction (all or nothing); returns their ids."""
        prepared = [self._prepare(it) for it in items]
        if not prepared:
            return []
        with self.db.write() as conn:
            return self._insert_rows(conn, prepared)

    def ingest(
        self,
        paths: str | Path | Iterable[str | Path],
        *,
        chunk_tokens: int = 256,
        overlap: int = 32,
        progress: bool | Progress = True,
        exts: Iterable[str] | None = None,
        tags: Iterable[str] = (),
        embed: bool = True,
        follow_symlinks: bool = False,
        stop: threading.Event | None = None,
    ) -> IngestSummary:
        """Chunk and store files and directories, then embed what is queued unless
        ``embed=False``. Every chunk is stored (durable, found by full text) before the
        first is embedded; ``stop`` ends the embedding between batches, the rest stays
        queued. ``progress``: True draws a bar of chunks embedded on stderr, a callable gets
        ``(done, total)`` after each batch.

        It stays inside what it is given (see ``memory.text.files``): links leaving a folder
        (unless ``follow_symlinks``), special, binary and badly named files are skipped and
        listed in ``problems``, and one bad file never stops the rest."""
        t0 = time.perf_counter()
        plist = [paths] if isinstance(paths, str | Path) else list(paths)
        found = list(walk_files(plist, exts or DEFAULT_EXTS, follow_symlinks=follow_symlinks))
        problems = [(str(f).encode("utf-8", "backslashreplace").decode(), r) for f, r, listed in found if r and listed]
        files = [f for f, r, _ in found if r is None]
        left_out = Counter(f.suffix.lower() for f, r, listed in found if r and not listed)
        tag_t = check_tags(tags)
        n_files = n_chunks = dups = 0
        skipped = len(found) - len(files)
        seen: set[str] = set()
        pending: list[dict[str, Any]] = []

        def flush() -> None:
            nonlocal n_chunks
            if not pending:
                return
            with self.db.write() as conn:
                self._insert_rows(conn, pending)
            n_chunks += len(pending)
            pending.clear()

        for path in files:
            body, why = read_text(path)
            try:
                if body is None:
                    raise ValidationError(why or "not text")
                src = str(path.resolve())
                pieces = [p for p in chunk_text(body, chunk_tokens=chunk_tokens, overlap=overlap) if p.text]
                hashes = [hashlib.sha256(p.text.encode()).hexdigest() for p in pieces]
                known = self._known_hashes(hashes)
                items: list[tuple[str, dict[str, Any]]] = []
                mine: set[str] = set()
                for p, h in zip(pieces, hashes, strict=True):
                    if h in known or h in seen or h in mine:
                        dups += 1
                        continue
                    mine.add(h)
                    item = self._prepare({"text": p.text, "source": src, "position": p.position})
                    item["tags"] = tag_t
                    items.append((h, item))
            except (UserError, UnicodeError, OSError) as exc:  # this file only; the rest go on
                skipped += 1
                problems.append((str(path).encode("utf-8", "backslashreplace").decode(), str(exc)))
                continue
            n_files += 1
            for h, item in items:
                seen.add(h)
                pending.append(item)
            if len(pending) >= 2000:
                flush()
        flush()
        if embed and self.index is not None:
            self._embed_with_progress(progress, stop)
        return IngestSummary(n_files, n_chunks, skipped, dups, time.perf_counter() - t0, tuple(problems),
                             tuple(left_out.most_common()))

    def _embed_with_progress(self, progress: bool | Progress, stop: threading.Event | None) -> None:
        if TIER in self.queue.sources:  # chunks another encoder embedded: with the new ones
            self.queue.enqueue_stale(TIER)
        if not callable(progress):
            bar: Any = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=0, unit="chunk", desc="embedding", leave=False)

            def progress(done: int, total: int) -> None:
                if bar is not None:
                    bar.total = total
                    bar.n = done
                    bar.refresh()

            try:
                self.queue.drain(TIER, batch=self.embed_batch, stop=stop, progress=progress)
            finally:
                if bar is not None:
                    bar.close()
            return
        self.queue.drain(TIER, batch=self.embed_batch, stop=stop, progress=progress)

    def _known_hashes(self, hashes: Sequence[str]) -> set[str]:
        out: set[str] = set()
        with self.db.read() as conn:
            for i in range(0, len(hashes), 500):
                part = list(hashes[i : i + 500])
                if not part:
                    continue
                names = ",".join(f":h{j}" for j in range(len(part)))
                rows = conn.execute(
                    text(f"SELECT content_hash FROM {TABLE} WHERE content_hash IN ({names})"),
                    {f"h{j}": h for j, h in enumerate(part)},
                )
                out.update(r[0] for r in rows)
        return out

    def update(
        self,
        id: int,
        *,
        text: str | None = None,
        tags: Iterable[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Chunk:
        """Change a chunk's text, tags or metadata; its vector is refreshed through the queue."""
        id = check_row_id(id, "chunk id")
        old = self.get(id)
        body = old.text if text is None else self._prepare({"text": text})["text"]
        new_tags = old.tags if tags is None else check_tags(tags)
        meta = old.metadata if metadata is None else check_meta(metadata)
        with self.db.write() as conn:
            n = conn.execute(
                sql_text(
                    f"UPDATE {TABLE} SET text = :t, tags = :tags, metadata = :m, content_hash = :h,"
                    " updated_us = :u WHERE id = :i"
                ),
                {
                    "t": body, "tags": json.dumps(list(new_tags)), "m": json.dumps(meta),
                    "h": hashlib.sha256(body.encode()).hexdigest(),
                    "u": to_us(datetime.now(UTC)), "i": id,
                },
            ).rowcount
            if n == 0:
                raise NotFoundError(f"no archival chunk with id {id}")
            conn.execute(sql_text(f"DELETE FROM {TAGS} WHERE chunk_id = :i"), {"i": id})
            if new_tags:
                conn.execute(
                    sql_text(f"INSERT INTO {TAGS} (chunk_id, tag) VALUES (:i, :t)"),
                    [{"i": id, "t": t} for t in new_tags],
                )
            self.queue.enqueue(conn, TIER, [id], changed=True)
        return self.get(id)

    def delete(self, id: int) -> None:
        """Delete a chunk (row, tags, full text, queue entry, vector)."""
        id = check_row_id(id, "chunk id")
        with self.db.write() as conn:
            conn.execute(sql_text(f"DELETE FROM {TAGS} WHERE chunk_id = :i"), {"i": id})
            n = conn.execute(sql_text(f"DELETE FROM {TABLE} WHERE id = :i"), {"i": id}).rowcount
            if n == 0:
                raise NotFoundError(f"no archival chunk with id {id}")
            self.queue.remove(conn, TIER, [id])
        if self.index is not None:
            self.index.delete([id])

    # --- reading ---------------------------------------------------------------------------

    def get(self, id: int) -> Chunk:
        id = check_row_id(id, "chunk id")
        with self.db.read() as conn:
            found = fetch_chunks(conn, [id])
        if id not in found:
            raise NotFoundError(f"no archival chunk with id {id}")
        return found[id]

    def count(self) -> int:
        with self.db.read() as conn:
            return int(conn.execute(sql_text(f"SELECT COUNT(*) FROM {TABLE}")).scalar() or 0)

    def sources(self) -> list[tuple[str, int]]:
        with self.db.read() as conn:
            rows = conn.execute(
                sql_text(
                    f"SELECT source, COUNT(*) FROM {TABLE} WHERE source IS NOT NULL"
                    " GROUP BY source ORDER BY source"
                )
            ).all()
        return [(r[0], int(r[1])) for r in rows]

    def iter_chunks(self, batch: int = 500) -> Iterator[Chunk]:
        last = 0
        while True:
            with self.db.read() as conn:
                rows = conn.execute(
                    sql_text(f"SELECT {_COLS} FROM {TABLE} c WHERE c.id > :l ORDER BY c.id LIMIT :n"),
                    {"l": last, "n": batch},
                ).all()
            if not rows:
                return
            for r in rows:
                yield row_to_chunk(r)
            last = int(rows[-1][0])

    def pending(self) -> int:
        return self.queue.pending(TIER)

    def embed_pending(self, batch: int | None = None) -> int:
        if self.index is None:
            return 0
        return self.queue.drain(TIER, batch=batch or self.embed_batch)

    def reindex(self, *, reembed: bool = False) -> int:
        """Rebuild the vector collection from SQL; returns the number of chunks indexed
        (``EmbeddingQueue.reindex``: stored vector copies are reused unless ``reembed``)."""
        if self.index is None:
            return 0
        return self.queue.reindex(TIER, reembed=reembed, batch=self.embed_batch)

    # --- searching -------------------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        k: int = 10,
        mode: str = "hybrid",
        tags: Iterable[str] | None = None,
        tags_mode: str = "any",
        metadata: Mapping[str, Any] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        offset: int = 0,
    ) -> list[SearchHit]:
        """Ranked chunks for ``query`` (``mode``: hybrid, vector or text), filtered by tags
        (any/all), metadata equality and creation time, ``offset`` for the next page."""
        return search_chunks(
            self, query, k=k, mode=mode, tags=tags, tags_mode=tags_mode, metadata=metadata,
            since=since, until=until, offset=offset,
        )

    def grep(
        self,
        pattern: str,
        *,
        ignore_case: bool = False,
        literal: bool = False,
        limit: int = 100,
        source: str | None = None,
        timeout_s: float | None = None,
    ) -> list[GrepHit]:
        """Regular-expression matches over chunk text, in id order; ``timeout_s`` bounds the
        whole call (``QueryError`` past it)."""
        return grep_chunks(
            self, pattern, ignore_case=ignore_case, literal=literal, limit=limit, source=source,
            timeout_s=timeout_s,
        )


sql_text = text
