"""Searching the archival tier: full text, vectors, hybrid, and grep.

Rules this module keeps:

* Every filter is applied inside each engine (SQL ``WHERE`` for full text, Chroma ``where``
  for vectors) before ranking, so pagination and ``k`` see only matching chunks. A tag
  filter on a large share of the chunks is the exception: an unfiltered vector query
  over-fetched by that share, filtered by the same SQL, returns the same top ``n`` faster.
* Hybrid ranking is ``memory.fusion.hybrid_rank``, the same code as the recall tier's.
* Full text is ``memory.text.fts.bounded_fts_ids``, the recall log's code over the
  archival tables, so its cost is bounded on large stores: when rarer words are present,
  only chunks that contain them are candidates (frequent words, ``COMMON_DOCS`` matches or
  more, still count in their BM25 score, ``score_frequent``), and a query of frequent words
  only ranks their newest ``MAX_CANDIDATES`` matches. On stores of up to ``SMALL_STORE``
  chunks, words in half the chunks or more are dropped first (their BM25 IDF is ~0), from
  exact document frequencies.
* Hits are read back from SQL: the text, tags and metadata returned are the source of
  truth, and a vector left behind by a deleted chunk is never returned.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import text as sql_text

from memory.archival.schema import (
    FTS,
    TABLE,
    TAGS,
    TIER,
    Chunk,
    check_tags,
    fetch_chunks,
    filter_sql,
    informative_phrases,
)
from memory.errors import QueryError, ValidationError
from memory.fusion import Candidates, Ranked, check_mode
from memory.text.fts import FtsSource, bounded_fts_ids, make_snippet, phrase_counts, snippet_pattern
from memory.text.patterns import compile_pattern
from memory.text.query import check_text, fts_phrases, parse_when, to_us
from memory.types import GrepHit, SearchHit

if TYPE_CHECKING:
    from memory.db import Database
    from memory.fusion import FusionConfig
    from memory.vectors.index import VectorIndex
    from memory.vectors.queue import EmbeddingQueue


class ChunkSource(Protocol):
    """What a search reads of an archival store (``ArchivalStore`` is one)."""

    db: Database
    index: VectorIndex | None
    queue: EmbeddingQueue
    fusion: FusionConfig

    def iter_chunks(self, batch: int = 500) -> Iterator[Chunk]: ...

__all__ = [
    "ARCHIVAL_FTS", "COMMON_DOCS", "MAX_CANDIDATES", "OVERFETCH_MAX", "OVERFETCH_MIN_SHARE",
    "SMALL_STORE", "ChunkSource", "chunk_candidates", "chunk_hits", "grep_chunks", "search_chunks",
]

ARCHIVAL_FTS = FtsSource(TABLE, FTS, "c", "text")
# A phrase with this many matches or more is frequent (see ``memory.text.fts``).
COMMON_DOCS = 2_000
# Frequent-phrase-only queries rank the newest this many matches.
MAX_CANDIDATES = 2_000
# Up to this many chunks, words in half the chunks or more are found from exact document
# frequencies; above it the bounded scans of ``bounded_fts_ids`` decide.
SMALL_STORE = 2 * COMMON_DOCS
# Tag-filtered vector search: tags on at least this share of the chunks are served by an
# unfiltered query of up to OVERFETCH_MAX results filtered in SQL (Chroma's filtered query
# costs O(matching chunks) there); rarer tags use Chroma's filter, cheap at that size.
OVERFETCH_MIN_SHARE = 0.02
OVERFETCH_MAX = 2_500
_GREP_CHUNK_TIMEOUT_S = 10.0  # per chunk, when the caller sets no deadline for the call


def chunk_candidates(
    store: ChunkSource,
    query: str,
    *,
    mode: str = "hybrid",
    tags: Iterable[str] | None = None,
    tags_mode: str = "any",
    metadata: Mapping[str, Any] | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
) -> Candidates:
    """The full-text and vector candidate generators of one archival search."""
    check_mode(mode)
    query = check_text(query, "query")
    if tags_mode not in ("any", "all"):
        raise ValidationError(f"tags_mode must be 'any' or 'all', got {tags_mode!r}")
    tag_t = check_tags(tags)
    since_at, until_at = parse_when(since, "since"), parse_when(until, "until")
    since_us = None if since_at is None else to_us(since_at)
    until_us = None if until_at is None else to_us(until_at)
    where, params = filter_sql(
        store.db.dialect, tags=tag_t, tags_mode=tags_mode, metadata=metadata,
        since_us=since_us, until_us=until_us,
    )

    def text_search(n: int) -> Ranked:
        phrases = fts_phrases(query)
        if not phrases:
            return []
        with store.db.read() as conn:
            top = conn.execute(sql_text(f"SELECT max(id) FROM {TABLE}")).scalar()
            if top is None:
                return []
            if int(top) <= SMALL_STORE:
                # Exact document frequencies are cheap here (short doclists).
                phrases = informative_phrases(conn, store.db.dialect, phrases)
            return bounded_fts_ids(
                conn, store.db.dialect, phrases, ARCHIVAL_FTS, where, params, k=n, offset=0,
                common_docs=COMMON_DOCS, max_candidates=MAX_CANDIDATES, score_frequent=True,
                score_phrases=phrase_counts(query),
            )

    index = store.index
    if index is None or mode == "text" or not query.strip():
        return Candidates(text_search)
    qvec = index.embedder.embed([query])[0]
    chroma_where = _chroma_where(tag_t, tags_mode, metadata, since_us, until_us)

    def vector_search(n: int) -> Ranked:
        if tag_t and not metadata and since_us is None and until_us is None:
            found = _overfetch(store, index, qvec, n, tag_t, tags_mode, where, params)
            if found is not None:
                return found
        return index.query(qvec, n, chroma_where)

    return Candidates(
        text_search, vector_search, lambda ids: store.queue.similarities(TIER, qvec, ids)
    )


def chunk_hits(store: ChunkSource, ranked: Ranked, query: str) -> list[SearchHit]:
    """``SearchHit``s for ranked chunk ids, read back from SQL (stale ids are dropped)."""
    with store.db.read() as conn:
        rows = fetch_chunks(conn, [i for i, _ in ranked])
    rx = snippet_pattern(query)
    hits = []
    for i, score in ranked:
        c = rows.get(i)
        if c is None:
            continue  # a stale vector of a deleted chunk
        hits.append(
            SearchHit(
                id=c.id, tier=TIER, text=c.text, score=score, snippet=make_snippet(c.text, rx),
                created_at=c.created_at, source=c.source, position=c.position, tags=c.tags,
                metadata=c.metadata,
            )
        )
    return hits


def search_chunks(
    store: ChunkSource,
    query: str,
    *,
    k: int = 10,
    mode: str = "hybrid",
    offset: int = 0,
    **filters: Any,
) -> list[SearchHit]:
    """Ranked chunks for ``query`` (``mode``: hybrid, vector or text), filtered."""
    if not isinstance(k, int) or k < 1 or not isinstance(offset, int) or offset < 0:
        raise ValidationError("k must be >= 1 and offset >= 0")
    cands = chunk_candidates(store, query, mode=mode, **filters)
    return chunk_hits(store, cands.rank(mode, k=k, offset=offset, config=store.fusion), query)


def grep_chunks(
    store: ChunkSource,
    pattern: str,
    *,
    ignore_case: bool = False,
    literal: bool = False,
    limit: int = 100,
    source: str | None = None,
    timeout_s: float | None = None,
) -> list[GrepHit]:
    """Regular-expression matches over chunk text, in id order.

    ``timeout_s`` bounds the whole call (not each chunk): past it, ``QueryError``.
    """
    rx = compile_pattern(pattern, ignore_case=ignore_case, literal=literal)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    hits: list[GrepHit] = []
    for c in store.iter_chunks():
        if source is not None and c.source != source:
            continue
        # Without a deadline each chunk still gets one (as before); with one, the whole call.
        left = _GREP_CHUNK_TIMEOUT_S if deadline is None else deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError
            m = rx.search(c.text, timeout=left)
        except TimeoutError:
            raise QueryError(
                f"grep for {pattern!r:.200} ran past timeout_s={timeout_s:.3g}: the pattern may "
                "backtrack catastrophically (nested repeats such as (a+)+); simplify it"
            ) from None
        if m:
            lo, hi = max(0, m.start() - 80), min(len(c.text), m.end() + 80)
            hits.append(
                GrepHit(
                    id=c.id, tier=TIER, snippet=c.text[lo:hi], match=m.group(0),
                    created_at=c.created_at, source=c.source,
                )
            )
            if len(hits) >= limit:
                break
    return hits


def _overfetch(
    store: ChunkSource, index: VectorIndex, qvec: Sequence[float], n: int, tags: Sequence[str], tags_mode: str,
    where: str, params: dict[str, Any],
) -> Ranked | None:
    """The ``n`` nearest chunks with the tags, from an unfiltered query over-fetched by the
    tags' share of the store and filtered in SQL; None when the tags are too rare for that
    (Chroma's own filter is then cheap) or the over-fetch came up short."""
    with store.db.read() as conn:
        total = conn.execute(sql_text(f"SELECT max(id) FROM {TABLE}")).scalar()
        counts = [
            int(conn.execute(sql_text(f"SELECT count(*) FROM {TAGS} WHERE tag = :t"), {"t": t}).scalar_one())
            for t in tags
        ]
    if not total:
        return None
    # Expected share of chunks that pass (an over-estimate for "any", whose sets overlap).
    share = (sum(counts) if tags_mode == "any" else min(counts)) / int(total)
    if share < OVERFETCH_MIN_SHARE:
        return None
    fetch = min(OVERFETCH_MAX, int(1.5 * n / share) + 10)
    if fetch < n:
        return None
    got = index.query(qvec, fetch)
    if not got:
        return None
    names = ", ".join(f":id{j}" for j in range(len(got)))
    with store.db.read() as conn:
        keep = {
            int(r[0])
            for r in conn.execute(
                sql_text(f"SELECT c.id FROM {TABLE} c WHERE c.id IN ({names}){where}"),
                {**params, **{f"id{j}": i for j, (i, _) in enumerate(got)}},
            )
        }
    out = [(i, s) for i, s in got if i in keep]
    # Anything outside the unfiltered top ``fetch`` is farther than all of it: enough
    # survivors (or the whole index fetched) make this the filtered top ``n``.
    if len(out) >= n or len(got) < fetch:
        return out[:n]
    return None


def _chroma_where(
    tags: Sequence[str], tags_mode: str, metadata: Mapping[str, Any] | None,
    since_us: int | None, until_us: int | None,
) -> dict[str, Any] | None:
    conds: list[dict[str, Any]] = []
    if tags:
        tag_conds = [{f"tag:{t}": True} for t in tags]
        if len(tag_conds) == 1:
            conds.append(tag_conds[0])
        else:
            conds.append({"$and" if tags_mode == "all" else "$or": tag_conds})
    for key, v in (metadata or {}).items():
        conds.append({f"m:{key}": v})
    if since_us is not None:
        conds.append({"ts": {"$gte": since_us / 1e6}})
    if until_us is not None:
        conds.append({"ts": {"$lte": until_us / 1e6}})
    if not conds:
        return None
    return conds[0] if len(conds) == 1 else {"$and": conds}
