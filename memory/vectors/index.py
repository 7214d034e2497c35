"""Vector collections in Chroma: one ``VectorIndex`` per tier.

Rules this module keeps:

* SQL is the source of truth; Chroma holds only vectors (plus the few metadata fields its
  ``where`` filters need) and can be rebuilt from SQL at any time.
* Chroma always gets our embedding function or our precomputed vectors; its default never
  runs, and telemetry is off (``memory.vectors.chroma``).
* Writes to an embedded (``PersistentClient``) Chroma directory are serialised across
  processes by an advisory file lock, so two processes opening one store never interleave
  index writes.
* A collection whose HNSW files were damaged (a kill -9 while Chroma wrote them) is rebuilt
  from SQL the first time an operation on it fails that way: the collection is dropped and
  recreated empty, every row of its tier is queued again (and refilled from the SQL copies,
  embedding only what has none), and the operation is retried. Text search keeps finding
  everything meanwhile.
* An embedded collection is never written with the disk (almost) full: Chroma's native
  writer can hang for good when the disk fills under it, so an upsert needs ``MIN_FREE_BYTES``
  free and at least the size of the largest HNSW segment (which a persist may rewrite whole),
  and is otherwise refused with ``DiskFullError`` naming the folder; the items stay queued.
  A Chroma error on a full disk is that error too, never taken for damage (no rebuild).
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
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from memory.db import disk_full_message, is_disk_full
from memory.errors import DiskFullError, IndexError_
from memory.vectors.chroma import ChromaEF, is_damaged, is_replaced, item_of, part_id
from memory.vectors.embeddings import Embedder

__all__ = ["Meta", "VectorIndex", "import_numpy_first"]

log = logging.getLogger(__name__)
Meta = dict[str, str | int | float | bool]
T = TypeVar("T")
_MODEL_HINT = "; if the embedding model changed, rebuild the index with reindex()"
_MAX_QUERY = 20_000
EXACT_BUDGET_S = 1.5  # about what importing chromadb and opening a collection costs
#: Free bytes an embedded collection needs before it is written (see the module notes).
MIN_FREE_BYTES = 4 << 20


#: Up to this many items the SQL copies answer a vector query exactly when Chroma cannot (a
#: rebuild in another process): about 0.4 GB of float16 copies read at most (one vector an item).
FALLBACK_EXACT_MAX = 500_000


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
        # Set by the queue: exact nearest items from the SQL copies, or None (ask Chroma).
        self.exact: Callable[..., list[tuple[int, float]] | None] | None = None
        self.exact_spent_s = 0.0
        self.exact_first = False  # whether a fresh process asks ``exact`` before Chroma
        self._collection: Any = None
        self._mutex = threading.RLock()

    @property
    def collection(self) -> Any:
        if self._collection is None:
            try:
                self._collection = self.client.get_or_create_collection(
                    self.name,
                    embedding_function=ChromaEF(self.embedder),  # type: ignore[arg-type]
                    metadata={"hnsw:space": "cosine"},
                )
            except Exception as exc:
                raise IndexError_(f"cannot open Chroma collection {self.name!r}: {exc}") from exc
        return self._collection

    def open_soon(self) -> threading.Thread | None:
        """Open the collection in a background thread: in a fresh process importing chromadb
        and making its client takes seconds, which a drain spends embedding its first batch
        meanwhile (the model runs without the GIL). Writes wait for it (the write lock);
        an error is left for the write that needs the collection to report."""
        if self._collection is not None:
            return None
        import_numpy_first()

        def run() -> None:
            with contextlib.suppress(Exception), self._mutex:
                _ = self.collection

        th = threading.Thread(target=run, name="rlmem-chroma-open", daemon=True)
        th.start()
        return th

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
            import filelock

            with filelock.FileLock(self.lock_path):
                yield

    def _guarded(self, what: str, op: Callable[[], T], hint: str = "") -> T:
        """Run a Chroma operation; on a damaged collection rebuild it once and run it again.

        A collection replaced by another process (``reindex`` there drops and makes it again)
        is opened again by name and the operation run once more: a live server follows a
        rebuild without a restart.

        ``op`` must not hold the write lock when it returns or raises: the rebuild takes it.
        """
        try:
            return op()
        except DiskFullError:
            raise
        except Exception as exc:
            self._raise_if_full(what, exc)
            if is_replaced(exc):
                log.info("the Chroma collection %r was replaced by another process; reopening it", self.name)
                self._reopen()
                try:
                    return op()
                except Exception as again:
                    exc = again
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
            self._raise_if_full(what, exc)
            raise IndexError_(
                f"{what} {self.name!r}: {exc} (after rebuilding it from SQL, which failed on "
                f"{damage}); run reindex()"
            ) from exc

    def _room(self) -> tuple[Path, int, int] | None:
        """``(folder, free, needed)`` for an embedded collection whose disk lacks room for a
        write, else None (a Chroma server, or room enough)."""
        if self.lock_path is None:
            return None
        folder = self.lock_path.parent
        try:
            free = shutil.disk_usage(folder).free
            if free < MIN_FREE_BYTES:
                return folder, free, MIN_FREE_BYTES
            segments = [sum(f.stat().st_size for f in d.iterdir() if f.is_file())
                        for d in folder.iterdir() if d.is_dir()]
        except OSError:
            return None
        needed = max(segments, default=0)
        return (folder, free, needed) if free < needed else None

    def _raise_if_full(self, what: str, exc: BaseException | None = None) -> None:
        """Raise ``DiskFullError`` when the disk lacks room (or ``exc`` says it is full)."""
        room = self._room()
        if room is None and (exc is None or not is_disk_full(exc)):
            return
        if room is not None:
            msg = disk_full_message(room[0], room[1])
        elif self.lock_path is not None:
            msg = disk_full_message(self.lock_path.parent)
        else:
            msg = "the Chroma server's disk is full: free some space there and retry"
        raise DiskFullError(f"{what} {self.name!r}: {msg} (what was not written stays queued)") from exc

    def upsert(self, ids: Sequence[int], vectors: Sequence[Any], metas: Sequence[Meta]) -> None:
        """Write each item's vector, or (an index with ``parts``) its passages' vectors: a
        ``(passages, dim)`` matrix per item. Passages an item no longer has are deleted."""
        import numpy as np
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
                self._raise_if_full("cannot write vectors to")
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
        import numpy as np
        if k <= 0:
            return []
        # A fresh process answers from the SQL copies while that is cheaper than opening
        # Chroma: until Chroma is open anyway, or the exact queries have cost about as long
        # as opening it (a long-lived process then moves to the HNSW index).
        if (self.exact is not None and self.exact_first and self._collection is None
                and self.exact_spent_s < EXACT_BUDGET_S):
            t0 = time.perf_counter()
            found = self.exact(vector, k, where)
            self.exact_spent_s += time.perf_counter() - t0
            if found is not None:
                return found
        n = k * 3 if self.parts else k
        while True:

            def ask(n: int = n) -> Any:
                return self.collection.query(
                    query_embeddings=[np.asarray(vector, dtype=np.float32)],
                    n_results=n,
                    where=dict(where) if where else None,
                    include=["distances"],
                )

            try:
                res = self._guarded("vector search failed in", ask, _MODEL_HINT)
            except IndexError_:
                # Another process may be rebuilding the collection (``reindex``) under this
                # one: the SQL copies, the source of truth, answer instead where they can;
                # else wait a moment for the rebuild's writes and ask Chroma again.
                found = self._from_copies(vector, k, where)
                if found is not None:
                    return found
                for wait in (0.25, 0.5, 1.0):
                    time.sleep(wait)
                    self._reopen()
                    with contextlib.suppress(IndexError_):
                        res = self._guarded("vector search failed in", ask, _MODEL_HINT)
                        break
                else:
                    time.sleep(2.0)
                    self._reopen()
                    res = self._guarded("vector search failed in", ask, _MODEL_HINT)
            ids = res["ids"][0] if res["ids"] else []
            dists = res["distances"][0] if res.get("distances") else [0.0] * len(ids)
            best: dict[int, float] = {}
            for i, d in zip(ids, dists, strict=True):
                item = item_of(i)
                if item not in best:  # nearest first: an item's first hit is its best passage
                    best[item] = 1.0 - float(d)
            # Passages of the same items can fill the n results: ask for more, within reason.
            if len(best) >= k or n >= _MAX_QUERY:
                return list(best.items())[:k]
            if len(ids) < n:
                # Fewer items than asked for: a small tier, or a collection being rebuilt by
                # another process (``reindex``): the SQL copies know which.
                found = self._from_copies(vector, k, where)
                if found is not None and len(found) > len(best):
                    return found
                return list(best.items())[:k]
            n = min(n * 4, _MAX_QUERY)

    def _reopen(self) -> None:
        """Forget the collection handle: the next operation opens the collection by name."""
        with self._mutex:
            self._collection = None

    def _from_copies(
        self, vector: Sequence[float], k: int, where: Mapping[str, Any] | None
    ) -> list[tuple[int, float]] | None:
        """The exact answer from the SQL copies when Chroma cannot give it (tiers up to
        ``FALLBACK_EXACT_MAX`` items), or None."""
        return self.exact(vector, k, where, FALLBACK_EXACT_MAX) if self.exact is not None else None

    def similarities(self, vector: Sequence[float], ids: Sequence[int]) -> dict[int, float]:
        """Cosine similarity of ``vector`` to each id's vector in Chroma (ids without one are
        absent). ``EmbeddingQueue.similarities`` reads the SQL copies first."""
        import numpy as np
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


def import_numpy_first() -> None:
    """Import numpy (and ``numpy.typing``, which chromadb reaches for) in the calling thread,
    before it starts a thread that may import it too. numpy is imported lazily (a command
    such as ``rlmem log`` never needs it), and two threads importing it at once can each
    find it half-made ("partially initialized module 'numpy._typing'")."""
    import numpy.typing  # noqa: F401


_MOVED = {"EmbeddingQueue": "memory.vectors.queue", "QueueSource": "memory.vectors.queue",
          "EmbeddingWorker": "memory.vectors.worker", "make_chroma_client": "memory.vectors.chroma",
          "collection_name": "memory.vectors.chroma"}


def __getattr__(name: str) -> Any:
    # These lived here before they got modules of their own.
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
