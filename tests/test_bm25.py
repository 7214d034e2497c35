"""The SQLite full-text leg scores like plain Okapi BM25 over the same messages."""

from __future__ import annotations

import math
import sqlite3
from collections import Counter

from sqlalchemy import text

from memory.db import Database
from memory.recall.log import RecallLog
from memory.recall.schema import FTS_TABLE
from memory.text import bm25


def _plain_bm25(docs: list[str], query: str) -> list[float]:
    toks = [bm25.tokens(d) for d in docs]
    n, avg = len(toks), sum(map(len, toks)) / len(toks)
    df = Counter(w for t in toks for w in set(t))
    out = []
    for t in toks:
        tf = Counter(t)
        out.append(sum(
            math.log(1 + (n - df[w] + 0.5) / (df[w] + 0.5)) * tf[w] * (bm25.K1 + 1)
            / (tf[w] + bm25.K1 * (1 - bm25.B + bm25.B * len(t) / avg))
            for w in bm25.tokens(query) if tf[w]
        ))  # fmt: skip
    return out


def test_tokens_match_the_index_tokenizer() -> None:
    con = sqlite3.connect(":memory:")
    con.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='unicode61 remove_diacritics 2')")
    con.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")
    sample = "Crème brûlée at Zoë's café, I'm 42 — naïve_snake-case e-mail ÉTÉ 東京 x² Straße ﬁne"
    con.execute("INSERT INTO t VALUES (?)", (sample,))
    indexed = [r[0] for r in con.execute("SELECT term FROM v ORDER BY offset")]
    assert bm25.tokens(sample) == indexed


def test_totals_record_and_doc_sizes_are_read_exactly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = Database.open(tmp_path / "m.db")
    log = RecallLog(db)
    texts = [("word " * (i % 300 + 1)).strip() for i in range(1000)]
    log.append_many([{"content": t} for t in texts])
    with db.read() as conn:
        blob = bytes(
            conn.execute(text(f"SELECT block FROM {FTS_TABLE}_data WHERE id = 1")).scalar_one()
        )
        n, pos = bm25.varint(blob, 0)
        total, _ = bm25.varint(blob, pos)
        sz = bytes(
            conn.execute(text(f"SELECT sz FROM {FTS_TABLE}_docsize WHERE id = 1000")).scalar_one()
        )
    assert (n, total) == (1000, sum(len(t.split()) for t in texts))
    assert bm25.varint(sz, 0)[0] == len(texts[-1].split())
    db.close()


def test_ranking_equals_plain_bm25_and_frequent_words_count(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = Database.open(tmp_path / "m.db")
    log = RecallLog(db)
    docs = [f"I went to the market with my dog on day {i}" for i in range(40)]
    # Same length, same rare word; only the older one also says the question's other words.
    docs += ["I think I left my umbrella", "the umbrella sale starts soon now"]
    log.append_many([{"content": d} for d in docs])
    query = "where did I leave my umbrella"
    hits = log.search_text(query, k=5)
    plain = _plain_bm25(docs, query)
    want = sorted(
        (i for i in range(len(docs)) if plain[i] > 0), key=lambda i: (-round(plain[i], 9), -i)
    )[:5]
    assert [h.id - 1 for h in hits] == want
    for h in hits:
        assert abs(h.score - plain[h.id - 1]) < 1e-9
    assert hits[0].text == "I think I left my umbrella"
    # FTS5's own bm25() clamps the IDF of "I" and "my" (in nearly every message) to nothing:
    # both umbrella turns score alike there, and the newer one would come first.
    with db.read() as conn:
        own = conn.execute(text(
            f"SELECT rowid, -bm25({FTS_TABLE}) FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH"
            " 'umbrella OR I OR my' AND rowid > 40")).all()  # fmt: skip
    assert len(own) == 2 and abs(own[0][1] - own[1][1]) < 1e-5
    db.close()
