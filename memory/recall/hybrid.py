"""Semantic and hybrid search over the recall log.

Rules this module keeps:

* Messages are embedded through the same durable queue as archival chunks: the append hook
  enqueues them inside the append transaction, so an append never waits for the model and a
  crash never leaves a message that is neither embedded nor queued. Empty messages (tool
  calls without text) are not embedded.
* Vector metadata carries exactly the recall filters (agent, session, role, time) so Chroma
  filters before ranking; results are read back from SQL, so a forgotten message whose
  vector is still around is never returned.
* Hybrid ranking is ``memory.fusion.hybrid_rank``: the same code the archival tier and the
  retrieval benchmark use.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from memory.db import id_lists
from memory.errors import ValidationError
from memory.fusion import (
    RECALL_DEPTH,
    RECALL_TEXT_WEIGHT,
    RECALL_TIME_WEIGHT,
    Candidates,
    FusionConfig,
    Ranked,
    check_mode,
    pool_groups,
)
from memory.recall.log import RecallLog
from memory.recall.schema import TABLE
from memory.text import chunking
from memory.text.query import RecallFilter, check_text, to_us
from memory.text.temporal import parse_relative, time_prior
from memory.types import Message, SearchHit, SessionHit
from memory.vectors.index import Meta, VectorIndex
from memory.vectors.queue import EmbeddingQueue, QueueSource

__all__ = ["TIER", "RecallSearch", "default_fusion"]

TIER = "recall"


def default_fusion() -> FusionConfig:
    """Recall search's fusion settings (chosen on held-apart questions, docs/benchmarks.md)."""
    return FusionConfig(
        depth=RECALL_DEPTH, combine="softmax", text_weight=RECALL_TEXT_WEIGHT, time_weight=RECALL_TIME_WEIGHT
    )


class RecallSearch:
    """Full-text, vector and hybrid search over a ``RecallLog``."""

    def __init__(
        self,
        recall: RecallLog,
        index: VectorIndex | None,
        queue: EmbeddingQueue,
        *,
        embed: bool = True,
        passages: bool = True,
        fusion: FusionConfig | None = None,
    ) -> None:
        self.recall = recall
        self.index = index if embed else None
        self.queue = queue
        self.fusion = fusion or default_fusion()
        if self.index is not None:
            # A message is embedded sentence by sentence and scored by its best passage
            # (docs/benchmarks.md: turn-level MRR 0.73 -> 0.79 on LongMemEval).
            split = chunking.passages if passages else None
            queue.register(TIER, QueueSource(self.index, self._load, TABLE, "content <> ''", split,
                                             columns=_COLUMNS))
            recall.add_append_hook(self._on_append)
        recall.add_forget_hook(self._on_forget)

    def _on_append(self, conn: Connection, messages: list[Message]) -> None:
        self.queue.enqueue(conn, TIER, [m.id for m in messages if m.content.strip()])

    def _on_forget(self, conn: Connection, ids: list[int]) -> None:
        self.queue.remove(conn, TIER, ids)

    def _load(self, conn: Connection, ids: list[int]) -> list[tuple[int, str, Meta]]:
        out: list[tuple[int, str, Meta]] = []
        for marks in id_lists(ids):
            rows = conn.execute(
                text(
                    f"SELECT id, content, agent_id, session_id, role, created_us FROM {TABLE}"
                    f" WHERE id IN ({marks})"
                )
            )
            for r in rows:
                meta: Meta = {"agent_id": r[2], "session_id": r[3], "role": r[4], "ts": r[5] / 1e6}
                out.append((int(r[0]), r[1], meta))
        return out

    def delete_vectors(self, ids: Sequence[int]) -> None:
        if self.index is not None and ids:
            self.index.delete(list(ids))

    def pending(self) -> int:
        return self.queue.pending(TIER) if self.index is not None else 0

    def embed_pending(self, batch: int = 256) -> int:
        return self.queue.drain(TIER, batch=batch) if self.index is not None else 0

    def reindex(self, *, reembed: bool = False) -> int:
        """Rebuild the recall vector collection from the log; returns messages indexed
        (``EmbeddingQueue.reindex``: stored vector copies are reused unless ``reembed``)."""
        return self.queue.reindex(TIER, reembed=reembed) if self.index is not None else 0

    def candidates(self, query: str, *, mode: str = "hybrid", where: RecallFilter | None = None) -> Candidates:
        """The full-text and vector candidate generators of one recall search."""
        check_mode(mode)
        query = check_text(query, "query")
        rf = where if where is not None else RecallFilter()

        def text_search(n: int) -> Ranked:
            return [(h.id, h.score) for h in self.recall.search_text(query, k=n, where=rf)]

        index = self.index
        if index is None or mode == "text" or not query.strip():
            return Candidates(text_search)
        qvec = index.embedder.embed([query])[0]
        chroma_where = _where(rf)
        return Candidates(
            text_search,
            lambda n: index.query(qvec, n, chroma_where),
            lambda ids: self.queue.similarities(TIER, qvec, ids),
        )

    def hits(self, ranked: Ranked, query: str) -> list[SearchHit]:
        """``SearchHit``s for ranked message ids, read back from the log (forgotten ones are dropped)."""
        return self.recall.hits(ranked, query)

    def search(
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
        """Ranked messages for ``query``; ``mode`` is hybrid, vector or text.

        In hybrid mode a relative time expression in the query ("a week ago", "in the past
        month") favours messages from that time, counted back from ``now`` (default: the
        current time).
        ``where`` and the keyword filters (``RecallFilter``'s fields) narrow the messages.
        """
        if not isinstance(k, int) or k < 1 or not isinstance(offset, int) or offset < 0:
            raise ValidationError("k must be >= 1 and offset >= 0")
        rf = RecallFilter.of(where, **filters)
        return self.hits(self._ranked(query, mode, k, offset, rf, now), query)

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
        """Conversation sessions ranked for ``query``, best first, each with its best
        ``per_session`` messages.

        The candidates are the messages a ``search`` in the same mode ranks (its full
        candidate depth, ``FusionConfig.depth``), except that in hybrid mode a message's
        text and vector scores are fused as ``FusionConfig.for_sessions`` says (by default
        their soft maximum, BM25 weighing 0.35). A session's score pools its messages' scores
        (``memory.fusion.pool_groups``), so a session where the subject comes up several
        times ranks above one that mentions it once. Sessions are per agent: the
        same session id under two agents is two sessions.
        """
        if not isinstance(k, int) or k < 1 or not isinstance(per_session, int) or per_session < 1:
            raise ValidationError("k and per_session must be >= 1")
        rf = RecallFilter.of(where, **filters)
        cfg = self.fusion.for_sessions()
        ranked = self._ranked(query, mode, cfg.depth, 0, rf, now, cfg)
        session_of = {m.id: (m.agent_id, m.session_id) for m in self.recall.get_many([i for i, _ in ranked])}
        pooled = pool_groups(
            [(i, s) for i, s in ranked if i in session_of], session_of.__getitem__,
            temperature=cfg.session_temperature,
        )[:k]  # fmt: skip
        # Snippets only for the messages returned, not for the whole candidate pool.
        hits = {h.id: h for h in self.hits([m for _, _, ms in pooled for m in ms[:per_session]], query)}
        return [
            SessionHit(
                session_id=sid, agent_id=aid, score=score,
                hits=tuple(hits[i] for i, _ in members[:per_session] if i in hits),
            )
            for (aid, sid), score, members in pooled
        ]

    def _ranked(
        self, query: str, mode: str, k: int, offset: int, where: RecallFilter, now: datetime | None,
        cfg: FusionConfig | None = None,
    ) -> Ranked:
        cands = self.candidates(query, mode=mode, where=where)
        cfg = cfg or self.fusion
        target = parse_relative(query, now or datetime.now(UTC)) if mode == "hybrid" else None
        if target is None or cfg.time_weight <= 0:
            return cands.rank(mode, k=k, offset=offset, config=cfg)
        pool = cands.rank(mode, k=cfg.candidates(k, offset), offset=0, config=cfg)
        at = {m.id: m.created_at for m in self.recall.get_many([i for i, _ in pool])}
        rescored = [
            (i, s + cfg.time_weight * time_prior(at[i], target)) for i, s in pool if i in at
        ]
        rescored.sort(key=lambda x: (-x[1], x[0]))
        return rescored[offset : offset + k]


# The filter metadata of a message's vectors, as columns of the log (see ``_load``).
_COLUMNS = {"agent_id": "agent_id", "session_id": "session_id", "role": "role", "ts": "created_us / 1e6"}


def _where(rf: RecallFilter) -> dict[str, Any] | None:
    conds: list[dict[str, Any]] = []
    for key in ("agent_id", "session_id", "role"):
        if getattr(rf, key) is not None:
            conds.append({key: getattr(rf, key)})
    if rf.leaves_out is not None:
        conds.append({"role": {"$ne": rf.leaves_out}})
    if rf.since is not None:
        conds.append({"ts": {"$gte": to_us(rf.since) / 1e6}})
    if rf.until is not None:
        conds.append({"ts": {"$lte": to_us(rf.until) / 1e6}})
    if not conds:
        return None
    return conds[0] if len(conds) == 1 else {"$and": conds}
