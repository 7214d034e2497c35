"""Full-text search over the recall log (used through ``RecallLog``); the bounded full-text
search (``bounded_fts_ids``) serves the archival tier too, over its own tables. grep is
``memory.text.grep``.

Rules this module keeps:

* **Full text, bounded cost.** The query's phrases (see ``recall_query``) are OR-ed and ranked by
  BM25 (SQLite FTS5; ``score = -bm25``) or ``ts_rank`` (PostgreSQL), higher is better.
  Ranking is O(matching rows), so frequent words are handled explicitly. One bounded scan per
  phrase finds its ``common_docs``-th newest match; a phrase with fewer matches is *rare*.
  - Rare phrases present: only they select and rank; the frequent ones are dropped (their
    IDF is small, and ranking them would cost O(their matches)). With ``score_frequent``
    (the archival tier) the frequent, not ubiquitous phrases still add to the score of the
    rare phrases' matches, at O(those matches), so the order is full BM25's among them.
  - Otherwise, frequent phrases in over half of the recent messages are *ubiquitous*: BM25
    gives them IDF <= 0 (FTS5 clamps it to 1e-6), so they carry no ranking information and
    are dropped too. The rest are ranked over their newest ``max_candidates`` matches (after
    filters; on SQLite, under the default filter alone, matches of every role, the tool
    records among them left out after ranking); older messages that match only frequent words
    can then be missed (search a rarer word, or use ``grep``, to reach them).
  - Only ubiquitous phrases: the newest matches come first, with score 0.0.
  Snippets are cut in Python around the first query word (FTS5 ``snippet()`` is quadratic
  in the message length), the same on both dialects.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import regex
from sqlalchemy import text
from sqlalchemy.engine import Connection

from memory.db import id_lists
from memory.text import bm25
from memory.text.query import Filters, fts5_quote, fts_phrases

__all__ = [
    "NAME_WEIGHT",
    "RESCORE_DEPTH",
    "FtsSource",
    "bounded_fts_ids",
    "make_snippet",
    "names",
    "phrase_counts",
    "search_ids",
    "snippet_pattern",
]

SNIPPET_CHARS = 60


# --- full text ---------------------------------------------------------------------------


_WORDS = regex.compile(r"[^\W_]+")


@dataclass(frozen=True)
class FtsSource:
    """Where a tier's full text lives: the content table (and the alias its filter SQL uses,
    with an integer ``id``, its text ``column`` and, on PostgreSQL, a ``tsv`` column) and its
    FTS5 table."""

    table: str
    fts: str
    alias: str
    column: str = "content"


# Candidates re-scored by exact BM25 (``memory.text.bm25``) on SQLite, at least.
RESCORE_DEPTH = 50


# How much more a name in the query counts in the recall re-scoring (``phrase_counts``).
NAME_WEIGHT = 1.5
_CAPITALISED = regex.compile(r"\b\p{Lu}[\w'’-]*")
_SPACE = regex.compile(r"\s")
_PRONOUN_I = frozenset({"i", "i'm", "i've", "i'd", "i'll", "i’m", "i’ve", "i’d", "i’ll"})


def starts_sentence(query: str, at: int) -> bool:
    """Whether the word at ``at`` starts a sentence: nothing before it (or one line break), or
    ``.``, ``!``, ``?`` or ``:`` and then only white space. Looked at backwards from ``at``
    over the white space alone, so a long query costs one pass, not one per word."""
    j = at
    while j and _SPACE.match(query, j - 1):
        j -= 1
    if j == 0:
        return query[:at] in ("", "\n")
    return query[j - 1] in ".!?:"


def names(query: str) -> set[str]:
    """Tokens of the query's capitalised words that do not start a sentence (``I`` aside):
    the names of people, places, products and titles it mentions."""
    out: set[str] = set()
    for m in _CAPITALISED.finditer(query):
        if m.group().lower() in _PRONOUN_I or starts_sentence(query, m.start()):
            continue
        out.update(bm25.tokens(m.group()))
    return out


def phrase_counts(query: str, *, name_weight: float = 1.0) -> Counter[str]:
    """The words the re-scoring counts: the tokens of the query's phrases (``fts_phrases``),
    each as often as it occurs in the query. Bag of words, as plain BM25 scores: ``I'm``
    selects candidates as a phrase but scores as its two words. With ``name_weight``, the
    tokens of ``names`` count that many times more (recall search: ``NAME_WEIGHT``, chosen on
    held-apart questions, docs/benchmarks.md)."""
    keep = set(fts_phrases(query))
    counts = Counter(t for c in query.replace("\x00", " ").split() if c in keep for t in bm25.tokens(c))
    if name_weight != 1.0:
        for t in names(query) & counts.keys():
            counts[t] *= name_weight  # type: ignore[assignment]
    return counts


def search_ids(
    conn: Connection,
    dialect: str,
    query: str,
    filters: Filters,
    *,
    source: FtsSource,
    k: int,
    offset: int,
    common_docs: int,
    max_candidates: int,
) -> list[tuple[int, float]]:
    """``(id, score)`` of the best matches in ``source``, best first."""
    where, params, leave_out = filters.sql(), filters.params, None
    if dialect != "postgresql" and filters.leaves_out is not None and len(filters.clauses) == 1:
        # The default filter alone (tool records left out): checked on the few ranked ids,
        # not joined to every match (docs/benchmarks.md, recall log).
        where, params, leave_out = "", {}, filters.leaves_out
    return bounded_fts_ids(
        conn, dialect, fts_phrases(query), source, where, params,
        k=k, offset=offset, common_docs=common_docs, max_candidates=max_candidates,
        score_phrases=phrase_counts(query, name_weight=NAME_WEIGHT), leave_out_role=leave_out,
    )


def bounded_fts_ids(
    conn: Connection,
    dialect: str,
    phrases: Sequence[str],
    source: FtsSource,
    where: str,
    where_params: Mapping[str, Any],
    *,
    k: int,
    offset: int,
    common_docs: int,
    max_candidates: int,
    score_frequent: bool = False,
    score_phrases: Mapping[str, float] | None = None,
    leave_out_role: str | None = None,
) -> list[tuple[int, float]]:
    """``(id, score)`` of the best matches of the OR-ed ``phrases``, best first, at a cost
    bounded as the module docstring says. ``where`` is an ``AND ...`` fragment over
    ``source.alias`` (the content table), with ``where_params``. ``score_frequent``: when
    rare phrases select the candidates, score them with the frequent phrases too (PostgreSQL;
    SQLite always re-scores by every phrase). ``score_phrases``: the phrases the SQLite
    re-scoring counts, with their multiplicity (default: ``phrases`` once each).
    ``leave_out_role``: rows of that ``role`` are left out (on SQLite after ranking, see
    ``_sqlite_fts_ids``)."""
    if not phrases or k <= 0:
        return []
    pg = dialect == "postgresql"
    if not pg:
        return _sqlite_fts_ids(conn, phrases, source, where, where_params, k=k, offset=offset,
                               common_docs=common_docs, max_candidates=max_candidates,
                               score_phrases=score_phrases or Counter(phrases),
                               leave_out_role=leave_out_role)  # fmt: skip
    if leave_out_role is not None:
        where += f" AND {source.alias}.role <> :lo_role"
        where_params = {**where_params, "lo_role": leave_out_role}
    a, table = source.alias, source.table
    src, rid = f"{table} {a}", f"{a}.id"

    def match_of(ps: Sequence[str], params: dict[str, Any], tag: str = "") -> str:
        params.update({f"p{tag}{i}": p for i, p in enumerate(ps)})
        return "(" + " || ".join(f"phraseto_tsquery('simple', :p{tag}{i})" for i in range(len(ps))) + ")"

    def matches(tsq: str) -> str:
        return f"{a}.tsv @@ {tsq}"

    # One bounded scan per phrase: its common_docs-th newest match, if it has that many.
    rare: list[str] = []
    common: list[str] = []
    ubiquitous: list[str] = []
    top_id = None
    for p in phrases:
        pp: dict[str, Any] = {"o": common_docs - 1}
        tsq = match_of([p], pp)
        cut = conn.execute(
            text(f"SELECT {rid} FROM {src} WHERE {matches(tsq)} ORDER BY {rid} DESC LIMIT 1 OFFSET :o"),
            pp,
        ).scalar()
        if cut is None:
            rare.append(p)
            continue
        if top_id is None:
            top_id = int(conn.execute(text(f"SELECT max(id) FROM {table}")).scalar_one())
        # In over half of the recent rows: BM25's IDF is <= 0 (FTS5 clamps it to
        # 1e-6), so the phrase adds nothing to any score and ranking it is pure cost.
        (ubiquitous if common_docs * 2 > top_id - int(cut) + 1 else common).append(p)
    params: dict[str, Any] = dict(where_params)
    params.update(k=k, off=offset)
    if not rare and not common:
        tsq = match_of(ubiquitous, params)
        sql = (
            f"SELECT {rid}, 0.0 FROM {src} WHERE {matches(tsq)}{where}"
            f" ORDER BY {rid} DESC LIMIT :k OFFSET :off"
        )
        return [(int(r[0]), 0.0) for r in conn.execute(text(sql), params)]
    tsq = match_of(rare or common, params)
    if rare and common and score_frequent:
        all_q = match_of(rare + common, params, "a")
        sql = (
            f"SELECT {rid}, ts_rank({a}.tsv, {all_q}) AS score FROM {src}"
            f" WHERE {a}.tsv @@ {tsq}{where} ORDER BY score DESC, {rid} DESC LIMIT :k OFFSET :off"
        )
        return [(int(r[0]), float(r[1])) for r in conn.execute(text(sql), params)]
    cut_sql = ""
    if not rare:
        params["mc"] = max_candidates - 1
        cutoff = conn.execute(
            text(f"SELECT {rid} FROM {src} WHERE {matches(tsq)}{where} ORDER BY {rid} DESC LIMIT 1 OFFSET :mc"),
            params,
        ).scalar()
        if cutoff is not None:
            cut_sql = f" AND {rid} >= :cut"
            params["cut"] = cutoff
    sql = (
        f"SELECT {rid}, ts_rank({a}.tsv, {tsq}) AS score FROM {src} WHERE {matches(tsq)}{where}{cut_sql}"
        f" ORDER BY score DESC, {rid} DESC LIMIT :k OFFSET :off"
    )
    return [(int(r[0]), float(r[1])) for r in conn.execute(text(sql), params)]


def _sqlite_fts_ids(
    conn: Connection, phrases: Sequence[str], source: FtsSource, where: str,
    where_params: Mapping[str, Any], *, k: int, offset: int, common_docs: int,
    max_candidates: int, score_phrases: Mapping[str, float], leave_out_role: str | None = None,
) -> list[tuple[int, float]]:
    """FTS5 finds the candidates (bounded as the module docstring says); exact BM25 over every
    phrase (``memory.text.bm25``) ranks the best ``RESCORE_DEPTH`` of them.

    ``leave_out_role`` (the default filter, tool records left out) is not joined to every
    match: twice the candidates are ranked without it and the rows of that role dropped; only
    when too few remain is the ranking redone with the join. The window of the newest
    ``max_candidates`` matches of frequent phrases is then counted over every role."""
    a, table, fts = source.alias, source.table, source.fts
    totals = conn.execute(text(f"SELECT block FROM {fts}_data WHERE id = 1")).scalar()
    if not totals:
        return []
    n_docs, pos = bm25.varint(bytes(totals), 0)
    n_tokens, _ = bm25.varint(bytes(totals), pos)
    if n_docs == 0:
        return []
    # One bounded scan per phrase: how many of the newest common_docs rows match it, and the
    # oldest of those. Fewer than common_docs: rare, and that count is its exact frequency;
    # otherwise its frequency is estimated from the density of its newest matches.
    df: dict[str, float] = {}
    rare: list[str] = []
    common: list[str] = []
    ubiquitous: list[str] = []
    top_id = None
    for p in dict.fromkeys([*phrases, *score_phrases]):
        count, oldest = conn.execute(
            text(f"SELECT count(*), min(r) FROM (SELECT f.rowid AS r FROM {fts} f WHERE {fts} MATCH :q"
                 " ORDER BY f.rowid DESC LIMIT :lim)"),
            {"q": fts5_quote(p), "lim": common_docs},
        ).one()  # fmt: skip
        if count < common_docs:
            df[p] = float(count)
            kind = rare
        else:
            if top_id is None:
                top_id = int(conn.execute(text(f"SELECT max(id) FROM {table}")).scalar_one())
            span = max(1, top_id - int(oldest) + 1)
            df[p] = min(float(n_docs), common_docs * n_docs / span)
            # In over half of the recent rows: it selects nearly everything, so it only scores.
            kind = ubiquitous if common_docs * 2 > span else common
        if p in phrases:
            kind.append(p)
    select = rare or common or ubiquitous
    params: dict[str, Any] = dict(where_params)
    params.update(q=" OR ".join(fts5_quote(p) for p in select), r=max(RESCORE_DEPTH, k + offset))
    src = f"{fts} f JOIN {table} {a} ON {a}.id = f.rowid" if where else f"{fts} f"
    cut_sql = ""
    if not rare and common:
        # Only frequent phrases: ranked among their newest max_candidates matches. (Only
        # ubiquitous ones: the newest matches, which score alike, in pages of k.)
        params["mc"] = max_candidates - 1
        cutoff = conn.execute(
            text(f"SELECT f.rowid FROM {src} WHERE {fts} MATCH :q{where} ORDER BY f.rowid DESC LIMIT 1 OFFSET :mc"),
            params,
        ).scalar()  # fmt: skip
        if cutoff is not None:
            cut_sql = " AND f.rowid >= :cut"
            params["cut"] = cutoff
    order = "f.rowid DESC" if not rare and not common else "bm25(" + fts + "), f.rowid DESC"
    def ranked_ids(src: str, where: str, limit: int) -> list[int]:
        sql = f"SELECT f.rowid FROM {src} WHERE {fts} MATCH :q{where}{cut_sql} ORDER BY {order} LIMIT :r"
        return [int(r[0]) for r in conn.execute(text(sql), {**params, "r": limit})]

    want = params["r"]
    fetch = want if leave_out_role is None else 2 * want
    # Ids first, then the texts of just those: a sorter holding every match's text and size
    # would read them all.
    ids = ranked_ids(src, where, fetch)
    rows = _texts(conn, source, ids, leave_out_role)
    if leave_out_role is not None:
        if len(rows) < want and len(ids) == fetch:
            # Too many of the best were left out: rank again with the filter joined.
            params["lo_role"] = leave_out_role
            ids = ranked_ids(f"{fts} f JOIN {table} {a} ON {a}.id = f.rowid", f" AND {a}.role <> :lo_role", want)
            rows = _texts(conn, source, ids, None)
        else:
            # The best ``want`` of those left, in FTS5's order, as the joined query ranks them.
            place = {i: n for n, i in enumerate(ids)}
            rows = sorted(rows, key=lambda r: place[int(r[0])])[:want]
    scorer = bm25.Scorer(score_phrases, df, n_docs, n_tokens / n_docs)
    ranked = [
        (int(i), scorer.score(body or "", bm25.varint(bytes(sz), 0)[0] if sz else 0))
        for i, body, sz in rows
    ]
    # Rounded so that equal scores (up to float noise) tie-break by id, newest first.
    ranked.sort(key=lambda x: (-round(x[1], 9), -x[0]))
    return ranked[offset : offset + k]


def _texts(conn: Connection, source: FtsSource, ids: list[int], leave_out_role: str | None) -> list[Any]:
    """``(id, text head, FTS5 size blob)`` of ``ids`` (any order), rows of ``leave_out_role``
    left out."""
    a, table, fts = source.alias, source.table, source.fts
    role_sql = "" if leave_out_role is None else f" AND {a}.role <> :lo_role"
    params: dict[str, Any] = {"tf": bm25.TF_CHARS}
    if leave_out_role is not None:
        params["lo_role"] = leave_out_role
    rows: list[Any] = []
    for chunk in id_lists(ids):
        rows += conn.execute(
            text(f"SELECT {a}.id, substr({a}.{source.column}, 1, :tf), d.sz FROM {table} {a}"
                 f" LEFT JOIN {fts}_docsize d ON d.id = {a}.id WHERE {a}.id IN ({chunk}){role_sql}"),
            params,
        ).all()  # fmt: skip
    return rows


# Words marked in a snippet only when the query has nothing else: "[The] report [is] due"
# shows noise, not why the message matched.
_SNIPPET_STOP = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "could", "did", "do", "does", "for", "from", "had", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "no", "not", "of", "on", "or", "our", "so", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "to", "was", "we", "were", "what", "when", "where", "which", "who", "whom", "why", "will", "with", "would", "you", "your"]
)
_SNIPPET_SCAN = 2000  # matches looked at when choosing the excerpt


def snippet_pattern(query: str) -> re.Pattern[str] | None:
    """The regex that finds the query's words (whole words, any case); None without words.
    Common function words are left out unless the query has no other word."""
    words = {w.casefold() for w in _WORDS.findall(query.replace("\x00", " "))}
    words = {w for w in words if w not in _SNIPPET_STOP} or words
    if not words:
        return None
    alt = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<![^\W_])(?:{alt})(?![^\W_])", re.IGNORECASE)


def _best_window(matches: list[re.Match[str]], span: int) -> tuple[int, int]:
    """The first and last match of the stretch of at most ``span`` characters holding the most
    distinct query words (the earliest such stretch)."""
    best = (0, 0)
    best_n = 0
    j = 0
    for i, m in enumerate(matches):
        while matches[j].end() < m.end() - span:
            j += 1
        n = len({x.group().casefold() for x in matches[j : i + 1]})
        if n > best_n:
            best_n, best = n, (j, i)
    return best


def make_snippet(content: str, rx: re.Pattern[str] | None, width: int = SNIPPET_CHARS) -> str:
    """An excerpt of ``content`` around the stretch with the most distinct query words (the
    first such), query words in ``[...]``.

    Built in Python rather than by FTS5 ``snippet()`` (quadratic on long messages: minutes
    for a 10 MB one) or ``ts_headline``, so both dialects give the same excerpt.
    """
    matches = []
    if rx is not None:
        for m in rx.finditer(content):
            matches.append(m)
            if len(matches) >= _SNIPPET_SCAN:
                break
    if not matches:
        return content[: 2 * width] + ("…" if len(content) > 2 * width else "")
    first, last = _best_window(matches, 2 * width)
    lo, hi = matches[first].start(), matches[last].end()
    pad = max(0, 2 * width - (hi - lo)) // 2
    a = max(0, lo - pad)
    b = min(len(content), max(hi + pad, a + 2 * width))
    a = max(0, min(a, b - 2 * width))
    marked = rx.sub(lambda x: f"[{x.group()}]", content[a:b]) if rx is not None else content[a:b]
    return ("…" if a else "") + marked + ("…" if b < len(content) else "")
