"""MemoryManager: the one object that opens and holds all three memory tiers.

Rules this module keeps:

* ``MemoryManager.open(dir)`` needs nothing running: SQLite file and embedded Chroma in one
  directory. A PostgreSQL URL and a Chroma server address (``MemoryConfig``) select the
  scale-out path through the same code.
* Appends and inserts never wait for the embedding model: items are queued durably in the
  same transaction and embedded by a background thread (``background_embed``) or by
  ``embed_pending()``. Items still queued at close are embedded on the next open. torch is
  imported only when something must actually be embedded.
* A store made here is private to its owner: the directory 0700, ``memory.db`` (and so its
  ``-wal`` / ``-shm``) 0600, the Chroma directory 0700.
* Two processes may open the same directory: SQLite serialises writers (waiting up to
  ``busy_timeout_s``, then ``StoreBusyError``), and writes to the embedded Chroma index are
  serialised by a file lock.
* Cross-tier ``search`` fuses the candidates of all tiers in one ``hybrid_rank`` call, the
  same code as ``search_recall`` / ``search_archival`` (and the retrieval benchmark).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from memory.archival.search import chunk_candidates, chunk_hits
from memory.archival.store import ArchivalStore
from memory.config import MemoryConfig
from memory.db import Database
from memory.errors import ValidationError
from memory.fusion import (
    RECALL_DEPTH,
    RECALL_TEXT_WEIGHT,
    RECALL_TIME_WEIGHT,
    Candidates,
    FusionConfig,
    merge_candidates,
)
from memory.recall.hybrid import RecallSearch
from memory.recall.log import RecallLog
from memory.text.query import RecallFilter
from memory.tokens import count_tokens
from memory.types import GrepHit, SearchHit, SessionHit
from memory.vectors.backends import make_embedder
from memory.vectors.chroma import collection_name, make_chroma_client
from memory.vectors.embeddings import Embedder
from memory.vectors.index import VectorIndex
from memory.vectors.queue import EmbeddingQueue, Progress
from memory.vectors.worker import EmbeddingWorker

__all__ = ["CompiledContext", "MemoryManager"]


@dataclass(frozen=True)
class CompiledContext:
    """What goes to the model: the system text and the recent messages that fit the budget."""

    system: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    tokens: int = 0
    dropped: int = 0


def _check_tiers(tiers: Sequence[str]) -> list[str]:
    tiers = [tiers] if isinstance(tiers, str) else list(tiers)
    bad = set(tiers) - {"recall", "archival"}
    if bad or not tiers:
        raise ValidationError(f"unknown tier {sorted(bad)[0] if bad else ''!r}: use recall and/or archival")
    return tiers


class _LazyChroma:
    """Creates the Chroma client on first use, so opening a store does not import chromadb."""

    def __init__(self, cfg: MemoryConfig) -> None:
        self._cfg = cfg
        self._client: Any = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        with self._lock:
            if self._client is None:
                c = self._cfg
                self._client = make_chroma_client(
                    path=None if c.chroma_host else c.chroma_path,
                    host=c.chroma_host, port=c.chroma_port, ssl=c.chroma_ssl,
                )
        return getattr(self._client, name)


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _private_file(path: Path) -> None:
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


class MemoryManager:
    """Working memory, the recall log and the archival store of one store."""

    def __init__(
        self, config: MemoryConfig, db: Database, embedder: Embedder, *, agent_id: str = "default"
    ) -> None:
        self.config = config
        self.db = db
        self.agent_id = agent_id
        self._embedder = embedder
        base = FusionConfig(method=config.fusion)  # type: ignore[arg-type]
        # fusion_depth 0 and text_weight None keep each tier's own defaults.
        archival_fusion = replace(base, depth=config.fusion_depth or base.depth,
                                  text_weight=_or(config.text_weight, base.text_weight))  # fmt: skip
        recall_fusion = replace(base, depth=config.fusion_depth or RECALL_DEPTH, combine="softmax",
                                text_weight=_or(config.text_weight, RECALL_TEXT_WEIGHT),
                                time_weight=RECALL_TIME_WEIGHT)  # fmt: skip
        lock = None if config.chroma_host else config.chroma_path / ".rlmem-write.lock"
        self._chroma = _LazyChroma(config)
        self.queue = EmbeddingQueue(db, exact_max=config.exact_search_max)
        self.recall = RecallLog(db)
        self.archival = ArchivalStore(
            db, VectorIndex(self._chroma, collection_name("rlmem_archival", embedder), embedder, lock_path=lock),
            self.queue,
            fusion=archival_fusion, embed_batch=max(config.embed_batch_size, 256),
        )
        self.recall_search = RecallSearch(
            self.recall, VectorIndex(self._chroma, collection_name("rlmem_recall", embedder), embedder, lock_path=lock),
            self.queue, embed=config.embed_recall, passages=config.recall_passages, fusion=recall_fusion,
        )
        self._blocks: dict[str, Any] = {}
        self._worker: EmbeddingWorker | None = None
        if config.background_embed:
            self._worker = EmbeddingWorker(self.queue, batch=max(config.embed_batch_size, 256))

    @classmethod
    def open(
        cls,
        path_or_config: str | Path | MemoryConfig | None = None,
        *,
        embedder: Embedder | None = None,
        agent_id: str = "default",
        read_only: bool = False,
        **overrides: Any,
    ) -> MemoryManager:
        """Open (creating if needed) the store at a directory, TOML file or config.

        ``read_only``: for commands that only read. The database refuses writes, nothing is
        written at open, the background embedder stays off, and readers never wait for a
        writer (WAL)."""
        cfg = MemoryConfig.load(path_or_config, **overrides)
        if read_only:
            cfg = replace(cfg, background_embed=False)
        # A new store is private: its directory 0700 and the SQLite file 0600 before SQLite
        # opens it (SQLite gives -wal and -shm the mode of the database file).
        cfg.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not cfg.database_url:
            _private_file(cfg.dir / "memory.db")
        db = Database.open(cfg.db_target, busy_timeout_s=cfg.busy_timeout_s, read_only=read_only)
        if embedder is None:
            embedder = make_embedder(cfg)
        try:
            return cls(cfg, db, embedder, agent_id=agent_id)
        except BaseException:
            db.close()
            raise

    @property
    def embedder(self) -> Embedder:
        return self._embedder

    @property
    def working(self) -> Any:
        """The working memory (blocks) of this manager's agent."""
        return self.blocks(self.agent_id)

    def blocks(self, agent_id: str) -> Any:
        """The working memory (blocks) of ``agent_id``."""
        if agent_id not in self._blocks:
            from memory.blocks import WorkingMemory

            self._blocks[agent_id] = WorkingMemory(self.db, agent_id)
        return self._blocks[agent_id]

    # --- search ----------------------------------------------------------------------------

    def search_recall(
        self,
        query: str,
        *,
        k: int = 10,
        mode: str = "hybrid",
        offset: int = 0,
        now: datetime | None = None,
        where: RecallFilter | None = None,
        **filters: Any,
    ) -> list[SearchHit]:
        """Messages by full text, meaning, or both (``mode``), narrowed by ``where`` and the
        keyword filters (``RecallFilter``'s fields: agent_id, session_id, role, since, until,
        include_tools); ``now`` anchors relative time expressions in the query ("two weeks
        ago"). Tool records (role ``tool``) only with ``include_tools=True`` or ``role="tool"``."""
        return self.recall_search.search(query, k=k, mode=mode, offset=offset, now=now, where=where, **filters)

    def search_sessions(
        self,
        query: str,
        *,
        k: int = 10,
        mode: str = "hybrid",
        per_session: int = 3,
        now: datetime | None = None,
        where: RecallFilter | None = None,
        **filters: Any,
    ) -> list[SessionHit]:
        """Conversation sessions ranked for ``query`` (their matching messages' scores pooled),
        each with its best ``per_session`` messages; see ``RecallSearch.search_sessions``."""
        return self.recall_search.search_sessions(
            query, k=k, mode=mode, per_session=per_session, now=now, where=where, **filters
        )

    def search_archival(self, query: str, *, k: int = 10, mode: str = "hybrid", **filters: Any) -> list[SearchHit]:
        """Chunks by full text, meaning, or both; filters as ``ArchivalStore.search``."""
        return self.archival.search(query, k=k, mode=mode, **filters)

    def search(
        self,
        query: str,
        *,
        tiers: Sequence[str] = ("recall", "archival"),
        k: int = 10,
        mode: str = "hybrid",
        where: RecallFilter | None = None,
        tags: Iterable[str] | None = None,
        tags_mode: str = "any",
        metadata: Mapping[str, Any] | None = None,
        **filters: Any,
    ) -> list[SearchHit]:
        """One ranking across tiers: the tiers' candidates are fused together (the same
        ``hybrid_rank`` as a one-tier search). The recall filter (``where`` and the keyword
        filters, ``RecallFilter``'s fields) narrows the recall tier, and its time range the
        archival tier too; ``tags``, ``tags_mode`` and ``metadata`` narrow the archival tier."""
        tiers = _check_tiers(tiers)
        if not isinstance(k, int) or k < 1:
            raise ValidationError("k must be >= 1")
        rf = RecallFilter.of(where, **filters)
        parts: dict[str, Candidates] = {}
        if "recall" in tiers:
            parts["recall"] = self.recall_search.candidates(query, mode=mode, where=rf)
        if "archival" in tiers:
            parts["archival"] = chunk_candidates(
                self.archival, query, mode=mode, tags=tags, tags_mode=tags_mode, metadata=metadata,
                since=rf.since, until=rf.until,
            )  # fmt: skip
        ranked = merge_candidates(parts).rank(mode, k=k, offset=0, config=self.archival.fusion)
        by_tier = {
            "recall": self.recall_search.hits([(i, s) for (t, i), s in ranked if t == "recall"], query),
            "archival": chunk_hits(self.archival, [(i, s) for (t, i), s in ranked if t == "archival"], query),
        }
        found = {(h.tier, h.id): h for hs in by_tier.values() for h in hs}
        return [found[key] for key, _ in ranked if key in found]

    def grep(self, pattern: str, *, tier: str = "recall", **kw: Any) -> list[GrepHit]:
        """Regular-expression search in ``tier``: recall, archival or all."""
        if tier not in ("recall", "archival", "all"):
            raise ValidationError(f"unknown tier {tier!r}: use recall, archival or all")
        out: list[GrepHit] = []
        if tier in ("recall", "all"):
            rkw = {k_: v for k_, v in kw.items() if k_ != "source"}
            out += self.recall.grep(pattern, **rkw)
        if tier in ("archival", "all"):
            akw = {k_: v for k_, v in kw.items() if k_ in ("ignore_case", "literal", "limit", "source")}
            out += self.archival.grep(pattern, **akw)
        return out

    def forget(
        self,
        *,
        ids: Sequence[int] | None = None,
        session_id: str | None = None,
        agent_id: str | None = None,
        reason: str,
        actor: str = "user",
    ) -> list[int]:
        """Delete recall messages (audited) and their vectors; returns the deleted ids."""
        gone = self.recall.forget(ids=ids, session_id=session_id, agent_id=agent_id, reason=reason, actor=actor)
        self.recall_search.delete_vectors(gone)
        return gone

    # --- context ---------------------------------------------------------------------------

    def stats(self, agent_id: str | None = None) -> dict[str, Any]:
        span = self.recall.time_span(**({"agent_id": agent_id} if agent_id else {}))
        wm = self.blocks(agent_id or self.agent_id)
        try:
            labels = [b.label for b in wm.list()]
        except Exception:  # working memory is optional for statistics
            labels = []
        return {
            "messages": self.recall.count(**({"agent_id": agent_id} if agent_id else {})),
            "sessions": len(self.recall.sessions(agent_id=agent_id)),
            "chunks": self.archival.count(),
            "sources": len(self.archival.sources()),
            "pending_embeddings": self.queue.pending(),
            "first_message_at": span[0].isoformat() if span else None,
            "last_message_at": span[1].isoformat() if span else None,
            "blocks": labels,
        }

    def compile_context(
        self,
        *,
        system_prompt: str = "",
        agent_id: str | None = None,
        session_id: str | None = None,
        budget_tokens: int = 8000,
    ) -> CompiledContext:
        """System prompt + rendered blocks + memory statistics + the most recent messages
        that fit in ``budget_tokens`` (token counts estimated as ceil(chars / 4))."""
        if budget_tokens < 1:
            raise ValidationError("budget_tokens must be >= 1")
        agent = agent_id or self.agent_id
        st = self.stats(agent)
        parts = [system_prompt.strip()] if system_prompt.strip() else []
        rendered = self.blocks(agent).render()
        if rendered:
            parts.append(rendered)
        span = (
            f", from {st['first_message_at']} to {st['last_message_at']}" if st["first_message_at"] else ""
        )
        parts.append(
            f"<memory_statistics>\n{st['messages']} messages in the recall log{span};"
            f" {st['chunks']} chunks in archival memory. Search them with the memory tools.\n"
            "</memory_statistics>"
        )
        system = "\n\n".join(parts)
        used = count_tokens(system)
        filters: dict[str, Any] = {"agent_id": agent}
        if session_id is not None:
            filters["session_id"] = session_id
        total = self.recall.count(**filters)
        messages: list[dict[str, Any]] = []
        before: int | None = None
        done = False
        while not done:
            page = self.recall.page(before_id=before, limit=100, **filters)
            if not page:
                break
            for m in sorted(page, key=lambda m: -m.id):
                cost = (m.tokens or count_tokens(m.content)) + 4  # role/framing overhead
                if used + cost > budget_tokens:
                    done = True
                    break
                used += cost
                messages.append({"role": m.role, "content": m.content, "id": m.id})
            before = min(m.id for m in page)
        messages.reverse()
        return CompiledContext(system, messages, used, total - len(messages))

    # --- maintenance -----------------------------------------------------------------------

    def pending(self) -> int:
        return self.queue.pending()

    def embed_pending(
        self,
        *,
        tiers: Sequence[str] | None = None,
        stop: threading.Event | None = None,
        progress: Progress | None = None,
    ) -> int:
        """Embed what is queued (in ``tiers``, default all), now, in this thread, until done
        or ``stop`` is set (seen between batches of about a second); ``progress(done,
        total)`` follows each batch. Returns the number of items embedded."""
        batch = max(self.config.embed_batch_size, 256)
        for t in _check_tiers(tiers or ("recall", "archival")):
            if t in self.queue.sources:
                self.queue.enqueue_stale(t)
        if tiers is None:
            return self.queue.drain(batch=batch, stop=stop, progress=progress)
        done = 0
        for t in _check_tiers(tiers):
            done += self.queue.drain(t, batch=batch, stop=stop, progress=progress)
        return done

    def reindex(
        self,
        *,
        reembed: bool = False,
        tiers: Sequence[str] = ("recall", "archival"),
        stop: threading.Event | None = None,
        progress: Progress | None = None,
    ) -> dict[str, int]:
        """Rebuild the tiers' vector collections from SQL (from the vector copies of the
        current embedder; ``reembed``: embed every row again). Interrupted by ``stop``, the
        rest stays queued and is embedded by the next drain."""
        out: dict[str, int] = {}
        for t in _check_tiers(tiers):
            if t in self.queue.sources:
                out[t] = self.queue.reindex(t, reembed=reembed, batch=max(self.config.embed_batch_size, 256),
                                            stop=stop, progress=progress)
            else:
                out[t] = 0
        return out

    def wait_embedded(self, timeout: float = 60.0) -> bool:
        """Wait until the background thread found the queue empty (or drain it here)."""
        if self._worker is None:
            self.embed_pending()
            return True
        return self._worker.wait_idle(timeout)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        self.db.close()

    def __enter__(self) -> MemoryManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
