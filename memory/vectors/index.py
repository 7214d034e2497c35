"""Vector collections in Chroma and the durable embedding queue that feeds them.

Rules this module keeps:

* SQL is the source of truth; Chroma holds only vectors (plus the few metadata fields its
  ``where`` filters need) and can be rebuilt from SQL at any time.
* Chroma always gets our embedding function (or our precomputed vectors): its default
  embedding function, which downloads a model, never runs. Telemetry is off.
* Embedding is a durable queue (table ``rlmem_embed_queue``): an item is enqueued in the
  same transaction that writes it, and dequeued only after its vector is upserted, so a
  kill -9 at any moment leaves at worst items to embed again (upserts are idempotent).
  A queue row carries a sequence number so an update made while its old text was being
  embedded is not dequeued by mistake.
* Writes to an embedded (``PersistentClient``) Chroma directory are serialised across
  processes by an advisory file lock, so two processes opening one store never interleave
  index writes.
* Each vector is also kept in SQL (table ``rlmem_vectors``, float32 bytes, with the name of
  the model that made it), written in the transaction that dequeues its item, and only if
  the item is still queued at the same sequence number (neither deleted nor changed since
  it was read). A changed item's copy is dropped in the transaction that changes it. The
  copies serve two things: hybrid search reads the similarity of a text-only candidate from
  them (one indexed SQL read instead of a Chroma ``get``), and a rebuilt collection is
  refilled from them without embedding again. Copies made by another model are ignored,
  so after a model change ``reindex`` embeds everything; ``reindex(reembed=True)`` always does.
* A collection whose HNSW files were damaged (a kill -9 while Chroma wrote them) is rebuilt
  from SQL the first time an operation on it fails that way: the collection is dropped and
  recreated empty, every row of its tier is queued again (and refilled from the SQL copies,
  embedding only what has none), and the operation is retried. Text search keeps finding
  everything meanwhile.
* A tier may embed an item as several passages (``QueueSource.split``; the recall tier does,
  see ``memory.text.chunking.passages``). Its Chroma ids are then ``"<id>"`` for the first passage
  and ``"<id>.<n>"`` for the others, each with the item's filter metadata and ``_item``; a
  search scores an item by its best passage. The SQL copy of such an item holds all its
  passages' vectors, one after the other, under the model's name plus ``#passages``, so
  copies made before a tier split its items are not reused for it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import filelock
import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import Connection

from memory.db import Database, Migration, id_lists
from memory.errors import ConfigError, IndexError_
from memory.vectors.embeddings import Embedder

__all__ = [
    "EmbeddingQueue",
    "EmbeddingWorker",
    "QueueSource",
    "VectorIndex",
    "item_of",
    "make_chroma_client",
    "part_id",
]

log = logging.getLogger(__name__)
QUEUE_TABLE = "rlmem_embed_queue"
VECTORS_TABLE = "rlmem_vectors"
Meta = dict[str, str | int | float | bool]
T = TypeVar("T")
_MODEL_HINT = "; if the embedding model changed, rebuild the index with reindex()"


def is_damaged(exc: BaseException) -> bool:
    """Whether a Chroma error says the collection's HNSW segment cannot be loaded or written
    (what a kill -9 in the middle of Chroma persisting it leaves behind)."""
    msg = str(exc).lower()
    return "hnsw" in msg and ("segment" in msg or "index" in msg)


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


MIGRATIONS = [Migration(1, "embedding queue", _v1_queue), Migration(2, "vector copies", _v2_vectors)]


def make_chroma_client(
    *, path: str | Path | None = None, host: str | None = None, port: int = 8000, ssl: bool = False
) -> Any:
    """An embedded ``PersistentClient`` at ``path`` or an ``HttpClient`` for ``host:port``."""
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False, allow_reset=False)
    try:
        if host:
            return chromadb.HttpClient(host=host, port=port, ssl=ssl, settings=settings)
        if path is None:
            raise ConfigError("a Chroma client needs a directory (path) or a server (host)")
        Path(path).mkdir(mode=0o700, parents=True, exist_ok=True)  # vectors are as private as the text
        return chromadb.PersistentClient(path=str(path), settings=settings)
    except ConfigError:
        raise
    except Exception as exc:
        where = f"server {host}:{port}" if host else f"directory {path}"
        raise IndexError_(f"cannot open the Chroma {where}: {exc}") from exc


class _NoEmbedder:
    def __init__(self, name: str) -> None:
        self.name = name
        self.dim = 0

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        raise IndexError_("this collection is embedded by rlm-memory: open it through MemoryManager")


class _ChromaEF:
    """Adapter giving Chroma our embedder, so it never falls back to its own model."""

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder

    def __call__(self, input: Sequence[str]) -> list[Any]:
        return [np.asarray(v, dtype=np.float32) for v in self._embedder.embed(list(input))]

    def embed_query(self, input: Sequence[str]) -> list[Any]:
        return self(input)

    @staticmethod
    def name() -> str:
        return "rlmem"

    def is_legacy(self) -> bool:
        return False

    def default_space(self) -> str:
        return "cosine"

    def supported_spaces(self) -> list[str]:
        return ["cosine"]

    def get_config(self) -> dict[str, Any]:
        return {"embedder": self._embedder.name}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> Any:
        # Chroma rebuilds the function when it reads a collection's configuration; we always
        # pass vectors ourselves, so this stand-in only has to exist, and refuses to embed.
        return _ChromaEF(_NoEmbedder(str(config.get("embedder", "?"))))

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        return None

    def validate_config_update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        return None


class VectorIndex:
    """One Chroma collection of (integer id -> vector, filter metadata).

    ``rebuild``, when its owner sets it, requeues every row of the tier for embedding; it is
    what lets a damaged collection heal itself (see the module notes). It runs at most once
    per process and index, so an index that stays broken after a rebuild raises.
    """

    def __init__(
        self, client: Any, name: str, embedder: Embedder, *, lock_path: Path | None = None
    ) -> None:
        self.client = client
        self.name = name
        self.embedder = embedder
        self.lock_path = lock_path
        self.rebuild: Callable[[], None] | None = None
        self.rebuilt = False
        self.parts = False  # items may have several vectors (passages); see the module notes
        self._collection: Any = None
        self._mutex = threading.RLock()

    @property
    def collection(self) -> Any:
        if self._collection is None:
            try:
                self._collection = self.client.get_or_create_collection(
                    self.name,
                    embedding_function=_ChromaEF(self.embedder),  # type: ignore[arg-type]
                    metadata={"hnsw:space": "cosine"},
                )
            except Exception as exc:
                raise IndexError_(f"cannot open Chroma collection {self.name!r}: {exc}") from exc
        return self._collection

    @contextlib.contextmanager
    def write_lock(self) -> Iterator[None]:
        """Serialise index writes in this process and, for an embedded store, across processes."""
        with self._mutex:
            if self.lock_path is None:
                yield
                return
            self.lock_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # filelock takes flock(2) on POSIX (the lock dies with its process) and the
            # Windows equivalent elsewhere.
            with filelock.FileLock(self.lock_path):
                yield

    def _guarded(self, what: str, op: Callable[[], T], hint: str = "") -> T:
        """Run a Chroma operation; on a damaged collection rebuild it once and run it again.

        ``op`` must not hold the write lock when it returns or raises: the rebuild takes it.
        """
        try:
            return op()
        except Exception as exc:
            if not is_damaged(exc) or self.rebuild is None or self.rebuilt:
                raise IndexError_(f"{what} {self.name!r}: {exc}{hint}") from exc
            damage = exc
        try:
            with self._mutex:  # one thread rebuilds; the others wait, then retry
                if not self.rebuilt:
                    log.warning(
                        "the Chroma collection %r is damaged (%s); rebuilding it from SQL",
                        self.name, damage,
                    )
                    self.rebuilt = True
                    self.reset()
                    self.rebuild()
            return op()
        except IndexError_:
            raise
        except Exception as exc:
            raise IndexError_(
                f"{what} {self.name!r}: {exc} (after rebuilding it from SQL, which failed on "
                f"{damage}); run reindex()"
            ) from exc

    def upsert(self, ids: Sequence[int], vectors: Sequence[Any], metas: Sequence[Meta]) -> None:
        """Write each item's vector, or (an index with ``parts``) its passages' vectors: a
        ``(passages, dim)`` matrix per item. Passages an item no longer has are deleted."""
        if not ids:
            return
        if not self.parts:
            mat = np.asarray(vectors, dtype=np.float32)
            keys = [str(i) for i in ids]
            metadatas = [dict(m) if m else {"_": 0} for m in metas]
        else:
            mats = [np.asarray(v, dtype=np.float32).reshape(-1, np.shape(v)[-1]) for v in vectors]
            mat = np.concatenate(mats)
            keys = [part_id(i, n) for i, m in zip(ids, mats, strict=True) for n in range(len(m))]
            metadatas = [
                {**m, "_item": int(i)} for i, v, m in zip(ids, mats, metas, strict=True) for _ in range(len(v))
            ]

        def op() -> None:
            with self.write_lock():
                stale: list[str] = []
                if self.parts:
                    old = self.collection.get(where={"_item": {"$in": [int(i) for i in ids]}}, include=[])
                    stale = sorted(set(old["ids"]) - set(keys))
                self.collection.upsert(ids=keys, embeddings=mat, metadatas=metadatas)
                if stale:
                    self.collection.delete(ids=stale)

        self._guarded("cannot write vectors to", op, _MODEL_HINT)

    def delete(self, ids: Sequence[int]) -> None:
        if not ids:
            return

        def op() -> None:
            with self.write_lock():
                self.collection.delete(ids=[str(i) for i in ids])
                if self.parts:
                    self.collection.delete(where={"_item": {"$in": [int(i) for i in ids]}})

        self._guarded("cannot delete vectors from", op)

    def reset(self) -> None:
        """Drop and recreate the collection (used by ``reindex``)."""
        with self.write_lock():
            with contextlib.suppress(Exception):
                self.client.delete_collection(self.name)
            self._collection = None
            _ = self.collection

    def count(self) -> int:
        return int(self._guarded("cannot count", lambda: self.collection.count()))

    def query(
        self, vector: Sequence[float], k: int, where: Mapping[str, Any] | None = None
    ) -> list[tuple[int, float]]:
        """``(id, cosine similarity)`` of the ``k`` nearest items, best first (an item with
        several passages: its best passage's)."""
        if k <= 0:
            return []
        n = k * 3 if self.parts else k
        while True:

            def ask(n: int = n) -> Any:
                return self.collection.query(
                    query_embeddings=[np.asarray(vector, dtype=np.float32)],
                    n_results=n,
                    where=dict(where) if where else None,
                    include=["distances"],
                )

            res = self._guarded("vector search failed in", ask, _MODEL_HINT)
            ids = res["ids"][0] if res["ids"] else []
            dists = res["distances"][0] if res.get("distances") else [0.0] * len(ids)
            best: dict[int, float] = {}
            for i, d in zip(ids, dists, strict=True):
                item = item_of(i)
                if item not in best:  # nearest first: an item's first hit is its best passage
                    best[item] = 1.0 - float(d)
            # Passages of the same items can fill the n results: ask for more, within reason.
            if len(best) >= k or len(ids) < n or n >= _MAX_QUERY:
                return list(best.items())[:k]
            n = min(n * 4, _MAX_QUERY)

    def similarities(self, vector: Sequence[float], ids: Sequence[int]) -> dict[int, float]:
        """Cosine similarity of ``vector`` to each id's vector in Chroma (ids without one are
        absent). ``EmbeddingQueue.similarities`` reads the SQL copies first."""
        if not ids:
            return {}
        res = self._guarded(
            "cannot read vectors from",
            lambda: self.collection.get(ids=[str(i) for i in ids], include=["embeddings"]),
        )
        embs = res.get("embeddings")
        if embs is None or len(res["ids"]) == 0:
            return {}
        mat = np.asarray(embs, dtype=np.float32)
        sims = mat @ np.asarray(vector, dtype=np.float32)
        return {int(i): float(s) for i, s in zip(res["ids"], sims, strict=True)}


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

    def pieces(self, text: str) -> list[str]:
        """The texts one item is embedded as: its passages, or the text whole."""
        return self.split(text) if self.split is not None else [text]

    @property
    def model(self) -> str:
        """The name its SQL vector copies are kept under."""
        return self.index.embedder.name + ("#passages" if self.split is not None else "")


def part_id(item: int, n: int) -> str:
    """The Chroma id of an item's ``n``-th passage: ``"<id>"`` for the first, ``"<id>.<n>"``."""
    return str(item) if n == 0 else f"{item}.{n}"


def item_of(chroma_id: str) -> int:
    """The item id of a Chroma id made by ``part_id``."""
    return int(chroma_id.split(".", 1)[0])


_MAX_QUERY = 20_000


class EmbeddingQueue:
    """The durable queue of items (per tier) whose vectors are missing or stale."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("vectors", MIGRATIONS)
        self.sources: dict[str, QueueSource] = {}
        self._listeners: list[Callable[[], None]] = []
        # One drainer at a time per process, so the worker and embed_pending() never embed
        # the same rows twice.
        self._drain_lock = threading.Lock()

    def register(self, tier: str, source: QueueSource) -> None:
        self.sources[tier] = source
        source.index.parts = source.split is not None
        source.index.rebuild = lambda: self.enqueue_all(tier, source.table, source.where)

    def reindex(self, tier: str, *, reembed: bool = False, batch: int = 256) -> int:
        """Rebuild ``tier``'s collection from SQL; returns the number of rows indexed. Vectors
        come from their SQL copies where the current embedder made them, so only rows without
        one are embedded (a new model embeds everything); ``reembed`` embeds every row."""
        src = self.sources[tier]
        if reembed:
            with self.db.write() as conn:
                conn.execute(text(f"DELETE FROM {VECTORS_TABLE} WHERE tier = :t"), {"t": tier})
        src.index.reset()
        self.enqueue_all(tier, src.table, src.where)
        return self.drain(tier, batch=batch)

    def on_enqueue(self, fn: Callable[[], None]) -> None:
        self._listeners.append(fn)

    def enqueue(self, conn: Connection, tier: str, ids: Sequence[int], *, changed: bool = False) -> None:
        """Mark ``ids`` for embedding inside the caller's transaction; ``changed``: their text
        changed, so their SQL vector copies are dropped too."""
        if not ids:
            return
        if changed:
            self._drop_copies(conn, tier, ids)
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
            self._drop_copies(conn, tier, ids)

    def _drop_copies(self, conn: Connection, tier: str, ids: Sequence[int]) -> None:
        conn.execute(
            text(f"DELETE FROM {VECTORS_TABLE} WHERE tier = :t AND item_id = :i"),
            [{"t": tier, "i": int(i)} for i in ids],
        )

    def copies(self, conn: Connection, tier: str, model: str, ids: Sequence[int]) -> dict[int, Any]:
        """``id -> float32 vector`` (all its passages' vectors end to end, for a tier that
        splits) of the SQL copies made by ``model`` among ``ids``."""
        out: dict[int, Any] = {}
        for marks in id_lists(ids):
            rows = conn.execute(
                text(
                    f"SELECT item_id, vec FROM {VECTORS_TABLE}"
                    f" WHERE tier = :t AND model = :m AND item_id IN ({marks})"
                ),
                {"t": tier, "m": model},
            )
            for i, v in rows:
                out[int(i)] = np.frombuffer(bytes(v), dtype=np.float32)
        return out

    def similarities(self, tier: str, vector: Sequence[float], ids: Sequence[int]) -> dict[int, float]:
        """Cosine similarity of ``vector`` to each id's vector (ids without one are absent):
        from the SQL copies, and from Chroma for ids that have no copy and are not queued
        (vectors of a store written before copies were kept)."""
        if not ids:
            return {}
        src = self.sources[tier]
        index = src.index
        q = np.asarray(vector, dtype=np.float32)
        with self.db.read() as conn:
            found = self.copies(conn, tier, src.model, ids)
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

    def drain_batch(self, tier: str, batch: int) -> int:
        """Embed and upsert up to ``batch`` queued items of ``tier``; returns how many."""
        with self._drain_lock:
            return self._drain_batch(tier, batch)

    def _drain_batch(self, tier: str, batch: int) -> int:
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
            have = self.copies(conn, tier, model, [i for i, _, _ in items])
        # Items with a current copy (a collection being refilled) are not embedded again.
        todo = [(i, t) for i, t, _ in items if i not in have]
        fresh: dict[int, Any] = {}
        if todo:
            pieces = [(i, p) for i, t in todo for p in src.pieces(t)]
            made = np.asarray(embedder.embed([p for _, p in pieces]), dtype=np.float32)
            for (i, _), v in zip(pieces, made, strict=True):
                fresh.setdefault(i, []).append(v)
            fresh = {i: np.stack(vs) if src.split else vs[0] for i, vs in fresh.items()}
        if have and src.split:
            dim = embedder.dim
            have = {i: v.reshape(-1, dim) for i, v in have.items()}
        if items:
            vecs = [fresh[i] if i in fresh else have[i] for i, _, _ in items]
            src.index.upsert([i for i, _, _ in items], vecs, [m for _, _, m in items])
        blob = "CAST(:v AS BYTEA)" if self.db.dialect == "postgresql" else ":v"
        with self.db.write() as conn:
            if fresh:
                # Only for items still queued at the sequence number read above: a copy is
                # never kept for an item deleted or changed meanwhile.
                conn.execute(
                    text(
                        f"INSERT INTO {VECTORS_TABLE} (tier, item_id, model, vec)"
                        f" SELECT CAST(:t AS VARCHAR(32)), CAST(:i AS BIGINT),"
                        f" CAST(:m AS VARCHAR(300)), {blob} WHERE EXISTS (SELECT 1 FROM"
                        f" {QUEUE_TABLE} q WHERE q.tier = :t AND q.item_id = :i AND q.seq = :s)"
                        " ON CONFLICT (tier, item_id) DO UPDATE SET model = excluded.model,"
                        " vec = excluded.vec"
                    ),
                    [
                        {"t": tier, "i": i, "m": model, "v": v.tobytes(), "s": seqs[i]}
                        for i, v in fresh.items()
                    ],
                )
            conn.execute(
                text(f"DELETE FROM {QUEUE_TABLE} WHERE tier = :t AND item_id = :i AND seq = :s"),
                [{"t": tier, "i": i, "s": s} for i, s in seqs.items()],
            )
        return len(rows)

    def drain(self, tier: str | None = None, *, batch: int = 256, stop: threading.Event | None = None) -> int:
        """Embed everything queued (for one tier or all); returns the number of items."""
        total = 0
        for t in [tier] if tier else list(self.sources):
            if t not in self.sources:
                continue
            while not (stop is not None and stop.is_set()):
                n = self.drain_batch(t, batch)
                total += n
                if n == 0:
                    break
        return total


class EmbeddingWorker:
    """A daemon thread that drains the queue in the background.

    It wakes when this process enqueues something and polls every ``poll_s`` for items that
    other processes enqueued. Failures are logged and retried with back-off; the queue keeps
    the items meanwhile.
    """

    def __init__(self, queue: EmbeddingQueue, *, batch: int = 256, poll_s: float = 2.0) -> None:
        self.queue = queue
        self.batch = batch
        self.poll_s = poll_s
        self.last_error: BaseException | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rlmem-embed", daemon=True)
        queue.on_enqueue(self._wake.set)
        self._thread.start()

    def _run(self) -> None:
        delay = self.poll_s
        while not self._stop.is_set():
            self._idle.clear()
            try:
                self.queue.drain(batch=self.batch, stop=self._stop)
                self.last_error = None
                delay = self.poll_s
            except Exception as exc:  # keep the thread alive: the items stay queued
                self.last_error = exc
                log.warning("background embedding failed, will retry: %s", exc)
                delay = min(delay * 2, 60.0)
            self._idle.set()
            self._wake.wait(delay)
            self._wake.clear()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until the queue was found empty once after this call (for tests and tools)."""
        self._idle.clear()
        self._wake.set()
        return self._idle.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
