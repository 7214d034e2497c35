"""The durable embedding queue (tables in ``memory.vectors.schema``).

Rules this module keeps:

* Embedding is a durable queue (table ``rlmem_embed_queue``): an item is enqueued in the
  same transaction that writes it, and dequeued only after its vector is upserted, so a
  kill -9 at any moment leaves at worst items to embed again (upserts are idempotent).
  A queue row carries a sequence number so an update made while its old text was being
  embedded is not dequeued by mistake.
* Each vector is also kept in SQL, float16, with the name of the model that made it
  (``memory.vectors.copies``): hybrid search reads a text-only candidate's similarity from
  it, a rebuilt collection is refilled from it, and small tiers are searched exactly from it.
* A store knows which encoder made each vector (the copy's model name). Items whose copy
  another encoder made are ``stale``; ``enqueue_stale`` queues them, so a change of encoder
  re-embeds the store through the same queue (with its progress and stop rules). Encoders
  whose vectors differ keep them in collections of their own (``index.collection_name``).
* An unfiltered vector query on a tier of at most ``exact_max`` items is answered from the
  copies when they cover it (``copies.nearest``). Filtered queries that ``where_sql`` cannot
  write, bigger tiers, stores with vectors older than the copies, and a process that has
  Chroma open or has spent about as long on exact queries as opening Chroma costs
  (``VectorIndex.query``) ask Chroma.
* Draining goes a batch at a time (one read, one Chroma upsert, one write), a batch sized to
  take about ``TXN_SLICES`` times ``batch_s`` seconds at the rate measured so far, so the
  fixed cost of a batch is spread over many texts; ``progress(done, total)`` follows every
  batch. Inside a batch the texts (an item's passages) are embedded shortest first, in
  slices of about ``batch_s`` seconds of work (sized by characters, at the measured rate),
  so each model call pads its texts to a similar length. ``stop`` is looked at between
  slices: a stop request is honoured within about ``batch_s``, the items whose every text
  is embedded are written, the rest stay queued.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from memory.db import Database, id_lists
from memory.vectors import copies
from memory.vectors.copies import where_sql
from memory.vectors.index import Meta, VectorIndex
from memory.vectors.schema import MIGRATIONS, QUEUE_TABLE, VECTORS_TABLE

__all__ = ["EXACT_MAX", "TXN_SLICES", "EmbeddingQueue", "Progress", "QueueSource"]

Progress = Callable[[int, int], None]
# Up to this many items per tier, an unfiltered vector query is answered exactly from the SQL
# copies (a matrix product), which is faster than opening Chroma in a fresh process.
EXACT_MAX = 50_000
# A batch (one transaction) holds about this many slices of ``batch_s`` seconds of embedding.
TXN_SLICES = 4


@dataclass
class QueueSource:
    """How to embed one tier: its index, a loader of ``(id, text, metadata)`` rows, the rows
    that make up the tier (``table``, optionally ``AND where``), and ``split``, which cuts an
    item's text into the passages it is embedded as (None: one vector per item)."""

    index: VectorIndex
    load: Callable[[Connection, list[int]], list[tuple[int, str, Meta]]]
    table: str
    where: str = ""
    split: Callable[[str], list[str]] | None = None
    # Filter metadata key -> SQL expression over ``table``: lets exact search apply a
    # Chroma ``where`` in SQL (keys not named here leave the query to Chroma).
    columns: Mapping[str, str] | None = None

    def pieces(self, text: str) -> list[str]:
        """The texts one item is embedded as: its passages, or the text whole."""
        return self.split(text) if self.split is not None else [text]

    @property
    def model(self) -> str:
        """The name its SQL vector copies are kept under."""
        return self.index.embedder.name + ("#passages" if self.split is not None else "")



class EmbeddingQueue:
    """The durable queue of items (per tier) whose vectors are missing or stale."""

    def __init__(self, db: Database, *, exact_max: int = EXACT_MAX) -> None:
        self.db = db
        self.exact_max = exact_max
        db.migrate("vectors", MIGRATIONS)
        self.sources: dict[str, QueueSource] = {}
        self._listeners: list[Callable[[], None]] = []
        # One drainer at a time per process, so the worker and embed_pending() never embed
        # the same rows twice.
        self._drain_lock = threading.Lock()
        # The embedder's measured speed, which sizes the slices; a first guess until then.
        self._chars_per_s = 4000.0

    def register(self, tier: str, source: QueueSource) -> None:
        self.sources[tier] = source
        source.index.parts = source.split is not None
        source.index.rebuild = lambda: self.enqueue_all(tier, source.table, source.where)
        # Also with exact_max 0 (Chroma first): the copies still answer when Chroma cannot.
        source.index.exact = lambda vector, k, where=None, limit=None: self.nearest(
            tier, vector, k, where, limit=limit)
        source.index.exact_first = self.exact_max > 0

    def stale(self, tier: str) -> int:
        """How many items of ``tier`` have a vector copy made by another encoder than the
        current one and are not queued (the encoder changed: they need embedding again)."""
        with self.db.read() as conn:
            return int(conn.execute(text(self._stale_sql("COUNT(*)")), self._stale_args(tier)).scalar() or 0)

    def enqueue_stale(self, tier: str) -> int:
        """Queue the items whose vector copy another encoder made (see ``stale``), 2000 a
        transaction; returns how many."""
        total = 0
        while True:
            with self.db.write() as conn:
                ids = [int(r[0]) for r in conn.execute(
                    text(self._stale_sql("v.item_id") + " ORDER BY v.item_id LIMIT 2000"), self._stale_args(tier))]
                if not ids:
                    return total
                self.enqueue(conn, tier, ids)
            total += len(ids)

    def _stale_sql(self, what: str) -> str:
        return (
            f"SELECT {what} FROM {VECTORS_TABLE} v WHERE v.tier = :t AND v.model <> :m"
            f" AND NOT EXISTS (SELECT 1 FROM {QUEUE_TABLE} q WHERE q.tier = :t AND q.item_id = v.item_id)"
        )

    def _stale_args(self, tier: str) -> dict[str, Any]:
        return {"t": tier, "m": self.sources[tier].model}

    def nearest(
        self, tier: str, vector: Sequence[float], k: int, where: Mapping[str, Any] | None = None,
        *, limit: int | None = None,
    ) -> list[tuple[int, float]] | None:
        """The exact ``k`` nearest items of ``tier`` from the SQL copies, best first (an item
        with passages: its best passage), or None when the copies cannot answer alone: the
        tier has more than ``limit`` items (default ``exact_max``), or an item that is not
        queued has no copy (vectors written before copies were kept: Chroma has them)."""
        src = self.sources[tier]
        filt: tuple[str, dict[str, Any]] = ("", {})
        if where:
            got = where_sql(where, src.columns or {})
            if got is None:
                return None
            filt = (f" AND {got[0]}", got[1])
        with self.db.read() as conn:
            return copies.nearest(
                conn, tier, table=src.table, cond=f" AND {src.where}" if src.where else "", model=src.model,
                vector=vector, k=k, cap=self.exact_max if limit is None else limit, filt=filt)

    def reindex(
        self,
        tier: str,
        *,
        reembed: bool = False,
        batch: int = 256,
        stop: threading.Event | None = None,
        progress: Progress | None = None,
    ) -> int:
        """Rebuild ``tier``'s collection from SQL; returns the number of rows indexed. Vectors
        come from their SQL copies where the current embedder made them, so only rows without
        one are embedded (a new model embeds everything); ``reembed`` embeds every row.

        Crash-safe by its order: every row is queued (durably) before anything is dropped, so
        a reindex killed at any point leaves each row either in the collection or in the
        queue, and the next embedding command (or the background thread) finishes the job."""
        src = self.sources[tier]
        self.enqueue_all(tier, src.table, src.where)
        if reembed:
            with self.db.write() as conn:
                conn.execute(text(f"DELETE FROM {VECTORS_TABLE} WHERE tier = :t"), {"t": tier})
        src.index.reset()
        return self.drain(tier, batch=batch, stop=stop, progress=progress)

    def on_enqueue(self, fn: Callable[[], None]) -> None:
        self._listeners.append(fn)

    def enqueue(self, conn: Connection, tier: str, ids: Sequence[int], *, changed: bool = False) -> None:
        """Mark ``ids`` for embedding inside the caller's transaction; ``changed``: their text
        changed, so their SQL vector copies are dropped too."""
        if not ids:
            return
        if changed:
            copies.drop(conn, tier, ids)
        seq = time.time_ns()
        conn.execute(
            text(
                f"INSERT INTO {QUEUE_TABLE} (tier, item_id, seq) VALUES (:t, :i, :s)"
                " ON CONFLICT (tier, item_id) DO UPDATE SET seq = excluded.seq"
            ),
            [{"t": tier, "i": int(i), "s": seq} for i in ids],
        )
        for fn in self._listeners:
            fn()

    def enqueue_all(self, tier: str, table: str, where: str = "") -> None:
        """Queue every row of ``table`` (optionally ``AND where``) for embedding, in id order,
        2000 rows a transaction so a huge table never holds the write lock for long."""
        cond = f" AND {where}" if where else ""
        last = 0
        while True:
            with self.db.write() as conn:
                ids = [
                    int(r[0])
                    for r in conn.execute(
                        text(f"SELECT id FROM {table} WHERE id > :l{cond} ORDER BY id LIMIT 2000"),
                        {"l": last},
                    )
                ]
                if not ids:
                    return
                self.enqueue(conn, tier, ids)
            last = ids[-1]

    def remove(self, conn: Connection, tier: str, ids: Sequence[int]) -> None:
        """Forget deleted items (queue entries and vector copies) in the caller's transaction."""
        if ids:
            conn.execute(
                text(f"DELETE FROM {QUEUE_TABLE} WHERE tier = :t AND item_id = :i"),
                [{"t": tier, "i": int(i)} for i in ids],
            )
            copies.drop(conn, tier, ids)

    def similarities(self, tier: str, vector: Sequence[float], ids: Sequence[int]) -> dict[int, float]:
        """Cosine similarity of ``vector`` to each id's vector (ids without one are absent):
        from the SQL copies, and from Chroma for ids that have no copy and are not queued
        (vectors of a store written before copies were kept)."""
        import numpy as np
        if not ids:
            return {}
        src = self.sources[tier]
        index = src.index
        q = np.asarray(vector, dtype=np.float32)
        with self.db.read() as conn:
            found = copies.read(conn, tier, src.model, ids)
        out = {
            i: float((v.reshape(-1, q.size) @ q).max())
            for i, v in found.items()
            if v.size and v.size % q.size == 0
        }
        rest = [i for i in ids if i not in out]
        if rest:
            queued = self.pending_ids(tier, rest)
            rest = [i for i in rest if i not in queued]
        if rest:
            out.update(index.similarities(vector, rest))
        return out

    def pending(self, tier: str | None = None) -> int:
        with self.db.read() as conn:
            if tier is None:
                return int(conn.execute(text(f"SELECT COUNT(*) FROM {QUEUE_TABLE}")).scalar() or 0)
            return int(
                conn.execute(
                    text(f"SELECT COUNT(*) FROM {QUEUE_TABLE} WHERE tier = :t"), {"t": tier}
                ).scalar()
                or 0
            )

    def pending_ids(self, tier: str, ids: Sequence[int]) -> set[int]:
        """Which of ``ids`` are still waiting for a vector."""
        if not ids:
            return set()
        out: set[int] = set()
        with self.db.read() as conn:
            for marks in id_lists(ids):
                rows = conn.execute(
                    text(f"SELECT item_id FROM {QUEUE_TABLE} WHERE tier = :t AND item_id IN ({marks})"),
                    {"t": tier},
                )
                out.update(int(r[0]) for r in rows)
        return out

    def drain_batch(self, tier: str, batch: int, *, stop: threading.Event | None = None,
                    slice_s: float = 1.0) -> int:
        """Embed and upsert up to ``batch`` queued items of ``tier``; returns how many were
        done (fewer when ``stop`` was set meanwhile: see the module notes)."""
        with self._drain_lock:
            return self._drain_batch(tier, batch, stop, slice_s)

    def _drain_batch(self, tier: str, batch: int, stop: threading.Event | None = None,
                     slice_s: float = 1.0) -> int:
        import numpy as np
        src = self.sources[tier]
        embedder = src.index.embedder
        model = src.model
        with self.db.read() as conn:
            rows = conn.execute(
                text(
                    f"SELECT item_id, seq FROM {QUEUE_TABLE} WHERE tier = :t"
                    " ORDER BY item_id LIMIT :n"
                ),
                {"t": tier, "n": batch},
            ).all()
            if not rows:
                return 0
            seqs = {int(r[0]): int(r[1]) for r in rows}
            items = src.load(conn, list(seqs))
            have = copies.read(conn, tier, model, [i for i, _, _ in items])
        # Items with a current copy (a collection being refilled) are not embedded again.
        todo = [(i, t) for i, t, _ in items if i not in have]
        fresh: dict[int, Any] = {}
        if todo:
            pieces = [(i, p) for i, t in todo for p in src.pieces(t)]
            made = self._embed(embedder, [p for _, p in pieces], stop, slice_s)
            parts: dict[int, list[Any]] = {}
            for (i, _), v in zip(pieces, made, strict=True):
                parts.setdefault(i, []).append(v)
            # An item is written only whole: one with a passage left unembedded stays queued.
            fresh = {i: np.stack(vs) if src.split else vs[0] for i, vs in parts.items()
                     if all(v is not None for v in vs)}
            left = {i for i, vs in parts.items() if any(v is None for v in vs)}
            if left:
                items = [it for it in items if it[0] not in left]
                seqs = {i: s for i, s in seqs.items() if i not in left}
        if have and src.split:
            dim = embedder.dim
            have = {i: v.reshape(-1, dim) for i, v in have.items()}
        if items:
            vecs = [fresh[i] if i in fresh else have[i] for i, _, _ in items]
            src.index.upsert([i for i, _, _ in items], vecs, [m for _, _, m in items])
        with self.db.write() as conn:
            if fresh:
                copies.write(conn, self.db.dialect, tier, model, fresh, seqs)
            if seqs:
                conn.execute(
                    text(f"DELETE FROM {QUEUE_TABLE} WHERE tier = :t AND item_id = :i AND seq = :s"),
                    [{"t": tier, "i": i, "s": s} for i, s in seqs.items()],
                )
        return len(seqs)

    def _embed(self, embedder: Any, texts: list[str], stop: threading.Event | None, slice_s: float) -> list[Any]:
        """``texts``' vectors, shortest first, in slices of about ``slice_s`` seconds; the texts
        not reached when ``stop`` was set are None (see the module notes)."""
        import numpy as np
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[Any] = [None] * len(texts)
        pos = 0
        while pos < len(order) and not (pos and stop is not None and stop.is_set()):
            budget = max(self._chars_per_s * slice_s, 1.0)
            end, chars = pos, 0
            while end < len(order) and (end == pos or chars + len(texts[order[end]]) <= budget):
                chars += len(texts[order[end]])
                end += 1
            part = order[pos:end]
            t0 = time.perf_counter()
            made = np.asarray(embedder.embed([texts[i] for i in part]), dtype=np.float32)
            dt = max(time.perf_counter() - t0, 1e-3)
            self._chars_per_s = max(chars, len(part)) / dt
            for i, v in zip(part, made, strict=True):
                out[i] = v
            pos = end
        return out

    def drain(
        self,
        tier: str | None = None,
        *,
        batch: int = 256,
        stop: threading.Event | None = None,
        progress: Progress | None = None,
        batch_s: float = 1.0,
    ) -> int:
        """Embed everything queued (for one tier or all) until the queue is empty or ``stop``
        is set; returns the number of items. ``batch`` is the largest batch; batches are
        sized to take about ``batch_s`` seconds, so ``stop`` is seen that often.
        ``progress(done, total)`` follows every batch (``total``: what was queued at the
        start, or more if items were queued meanwhile)."""
        tiers = [t for t in ([tier] if tier else list(self.sources)) if t in self.sources]
        queued = sum(self.pending(t) for t in tiers) if progress is not None else 0
        done = 0
        if progress is not None:
            progress(0, queued)
        # Chroma opens while the first batch is embedded (``VectorIndex.open_soon``).
        opening = [self.sources[t].index.open_soon() for t in tiers if self.pending(t)]
        try:
            done = self._drain(tiers, batch, stop, progress, batch_s, queued)
        finally:
            for th in opening:
                if th is not None:
                    th.join()
        return done

    def _drain(self, tiers: list[str], batch: int, stop: threading.Event | None, progress: Progress | None,
               batch_s: float, queued: int) -> int:
        done = 0
        for t in tiers:
            size = min(batch, 16)  # small until the rate is known
            while not (stop is not None and stop.is_set()):
                t0 = time.perf_counter()
                n = self.drain_batch(t, size, stop=stop, slice_s=batch_s)
                if n == 0:
                    break
                done += n
                rate = n / max(time.perf_counter() - t0, 1e-3)
                size = max(1, min(batch, int(rate * batch_s * TXN_SLICES)))
                if progress is not None:
                    progress(done, max(queued, done))
        return done
