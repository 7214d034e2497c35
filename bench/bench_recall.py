"""Benchmark of the recall log against bare sqlite3 and bare ``re``, measured in the same run.

For each size it builds a log of messages of ~20 words drawn from a Zipf-like vocabulary
(so there are rare, mid-frequency and very common words) plus one word, ``fifteen``, in 15 %
of the messages, and prints:

* batch append throughput of ``RecallLog.append_many`` (10,000 per call) against bare
  ``sqlite3`` ``executemany`` (10,000 per transaction) into an equivalent table *with the same
  FTS5 external-content index and trigger and the same secondary indexes*, both with WAL and
  ``synchronous=FULL``; the two alternate batch by batch so both see the same machine load;
* single-message durable append rate (one transaction and fsync each) against a bare
  ``sqlite3`` insert + commit with the same pragmas (alternating, into the built logs);
* full-text search p50/p95 for rare, mid-frequency, 15 % and most-common words, and for
  questions of 12 words mixing them, with the bare FTS5 ``ORDER BY rank LIMIT 10`` query (the
  words OR-ed; no filters, no snippets) as the reference;
* grep over the first 10M tokens (a pattern with a literal SQL can prefilter, and one without)
  against a bare Python ``re`` loop over the same strings already in memory.

Usage: ``python bench/bench_recall.py --sizes 100000,1000000 --out results.json``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from memory.db import Database
from memory.recall.log import RecallLog

WORDS_PER_MESSAGE = 20
VOCAB = 50_000
BATCH = 10_000
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _word(rank: int) -> str:
    letters = "bcdfghjklmnprstvz"
    vowels = "aeiou"
    out = []
    r = rank
    while True:
        out.append(letters[r % len(letters)] + vowels[(r // len(letters)) % len(vowels)])
        r //= len(letters) * len(vowels)
        if r == 0:
            break
    return "".join(out) + ("x" if rank % 3 == 0 else "")


def make_corpus(n: int, seed: int = 7) -> tuple[list[str], dict[str, list[str]]]:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, VOCAB + 1) ** 1.07
    p /= p.sum()
    ranks = rng.choice(VOCAB, size=(n, WORDS_PER_MESSAGE), p=p)
    vocab = [_word(i) for i in range(VOCAB)]
    assert len(set(vocab)) == VOCAB
    fifteen = rng.random(n) < 0.15
    pos = rng.integers(0, WORDS_PER_MESSAGE, size=n)
    texts = []
    for i in range(n):
        ws = [vocab[r] for r in ranks[i]]
        if fifteen[i]:
            ws[pos[i]] = "fifteen"
        texts.append(" ".join(ws))
    counts = np.bincount(ranks.ravel(), minlength=VOCAB)
    rare = [vocab[i] for i in np.flatnonzero((counts >= 3) & (counts <= 30))[:50]]
    mid_lo, mid_hi = n // 1000, n // 200  # 0.1 % .. 0.5 % of messages
    mid = [vocab[i] for i in np.flatnonzero((counts >= mid_lo) & (counts <= mid_hi))[:50]]
    terms = {"rare": rare, "mid": mid, "common_15pct": ["fifteen"], "most_common": [vocab[0]]}
    # A question of 12 words, as a user asks one: a rare word, two mid-frequency ones, four
    # common ones (ranks 10 to 200) and five of the most frequent ten.
    terms["question_12w"] = [
        " ".join([rare[j % len(rare)], mid[j % len(mid)], mid[(j + 7) % len(mid)],
                  *(vocab[10 + (j * 13 + 31 * x) % 190] for x in range(4)), *(vocab[(j + x) % 10] for x in range(5))])
        for j in range(20)
    ]  # fmt: skip
    return texts, terms


def _pragmas(con: sqlite3.Connection) -> None:
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")


RAW_SCHEMA = [
    "CREATE TABLE m (id INTEGER PRIMARY KEY AUTOINCREMENT, agent_id TEXT NOT NULL, session_id TEXT NOT NULL,"
    " role TEXT NOT NULL, content TEXT NOT NULL, tool_name TEXT, tool_args TEXT, created_us INTEGER NOT NULL,"
    " tokens INTEGER NOT NULL, metadata TEXT NOT NULL, msg_key TEXT)",
    "CREATE INDEX m_s ON m (session_id, id)",
    "CREATE INDEX m_a ON m (agent_id, session_id, id)",
    "CREATE INDEX m_c ON m (created_us)",
    "CREATE INDEX m_ai ON m (agent_id, id)",
    "CREATE UNIQUE INDEX m_k ON m (agent_id, msg_key)",
    "CREATE VIRTUAL TABLE f USING fts5(content, content='m', content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER m_ai AFTER INSERT ON m BEGIN INSERT INTO f(rowid, content) VALUES (new.id, new.content); END",
]


def _row(i: int, t: str) -> tuple[Any, ...]:
    return ("bench", f"s{i // 100}", "user" if i % 2 == 0 else "assistant", t, None, None,
            int((T0 + timedelta(seconds=i)).timestamp() * 1e6), (len(t) + 3) // 4, "{}")  # fmt: skip


def message(i: int, t: str) -> dict[str, Any]:
    """The i-th message of the corpus as ``RecallLog.append_many`` takes it (``_row``'s twin)."""
    return {"content": t, "agent_id": "bench", "session_id": f"s{i // 100}",
            "role": "user" if i % 2 == 0 else "assistant", "created_at": T0 + timedelta(seconds=i)}  # fmt: skip


def or_match(words: str) -> str:
    """The bare FTS5 query for ``words``: each quoted, OR-ed."""
    return " OR ".join(f'"{x}"' for x in words.split())


def bench_size(n: int, tmp: Path) -> dict[str, Any]:
    res: dict[str, Any] = {"messages": n, "load_avg_1min_at_start": os.getloadavg()[0]}
    texts, terms = make_corpus(n)
    tokens = sum(len(t.split()) for t in texts)
    res["tokens"] = tokens
    print(f"\n== {n:,} messages, {tokens:,} words (load average {res['load_avg_1min_at_start']:.1f}) ==", flush=True)

    # --- batch append, bare sqlite3 and ours interleaved batch by batch so that both see
    # the same machine load ---
    raw_path = tmp / f"raw_{n}.db"
    con = sqlite3.connect(raw_path, isolation_level=None)
    _pragmas(con)
    for s in RAW_SCHEMA:
        con.execute(s)
    db = Database.open(tmp / f"ours_{n}.db")
    log = RecallLog(db)
    raw_s = ours_s = 0.0
    for a in range(0, n, BATCH):
        t = time.perf_counter()
        con.execute("BEGIN IMMEDIATE")
        con.executemany(
            "INSERT INTO m (agent_id, session_id, role, content, tool_name, tool_args, created_us, tokens, metadata)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            [_row(i, texts[i]) for i in range(a, min(n, a + BATCH))],
        )
        con.execute("COMMIT")
        raw_s += time.perf_counter() - t
        t = time.perf_counter()
        log.append_many(message(i, texts[i]) for i in range(a, min(n, a + BATCH)))
        ours_s += time.perf_counter() - t
    res["batch_append"] = {"ours_msgs_per_s": n / ours_s, "raw_msgs_per_s": n / raw_s, "ratio": raw_s / ours_s}
    print(f"batch append: ours {n / ours_s:,.0f} msg/s, bare sqlite3 {n / raw_s:,.0f} msg/s, ratio {raw_s / ours_s:.2f}", flush=True)

    # --- single durable appends, interleaved too ---
    k = 300
    raw1 = ours1 = 0.0
    for i in range(k):
        t = time.perf_counter()
        con.execute(
            "INSERT INTO m (agent_id, session_id, role, content, tool_name, tool_args, created_us, tokens, metadata)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            _row(n + i, texts[i]),
        )  # autocommit: one transaction and fsync each
        raw1 += time.perf_counter() - t
        t = time.perf_counter()
        log.append(texts[i], agent_id="bench", session_id="single", created_at=T0 + timedelta(seconds=n + i))
        ours1 += time.perf_counter() - t
    res["single_append"] = {"ours_per_s": k / ours1, "raw_per_s": k / raw1, "ratio": raw1 / ours1}
    print(f"single append: ours {k / ours1:,.0f}/s, bare sqlite3 {k / raw1:,.0f}/s, ratio {raw1 / ours1:.2f}", flush=True)

    # --- search ---
    res["search"] = {}
    for kind, words in terms.items():
        reps = max(1, 60 // len(words))
        ours_t, raw_t = [], []
        for _ in range(reps):
            for w in words:
                t = time.perf_counter()
                hits = log.search_text(w, k=10)
                ours_t.append(time.perf_counter() - t)
                t = time.perf_counter()
                con.execute("SELECT rowid, rank FROM f WHERE f MATCH ? ORDER BY rank LIMIT 10", (or_match(w),)).fetchall()
                raw_t.append(time.perf_counter() - t)
                assert hits, (kind, w)
        df = con.execute("SELECT count(*) FROM f WHERE f MATCH ?", (or_match(words[0]),)).fetchone()[0]
        q = statistics.quantiles
        r = {
            "example": words[0], "example_docs": df,
            "ours_p50_ms": statistics.median(ours_t) * 1e3, "ours_p95_ms": q(ours_t, n=20)[18] * 1e3 if len(ours_t) > 1 else ours_t[0] * 1e3,
            "raw_p50_ms": statistics.median(raw_t) * 1e3, "raw_p95_ms": q(raw_t, n=20)[18] * 1e3 if len(raw_t) > 1 else raw_t[0] * 1e3,
        }  # fmt: skip
        res["search"][kind] = r
        print(f"search {kind:13s} ({words[0]!r} in {df:,} msgs): ours p50 {r['ours_p50_ms']:.2f} ms p95 {r['ours_p95_ms']:.2f} ms;"
              f" bare FTS5 rank p50 {r['raw_p50_ms']:.2f} ms p95 {r['raw_p95_ms']:.2f} ms", flush=True)  # fmt: skip

    # --- grep over the first 10M tokens ---
    m = min(n, 10_000_000 // WORDS_PER_MESSAGE)
    until = T0 + timedelta(seconds=m - 1)
    sub = texts[:m]
    res["grep"] = {"messages": m, "tokens": sum(len(s.split()) for s in sub)}
    for name, pat in (("literal_prefilter", rf"{terms['mid'][0]} \w+"), ("no_literal", r"\b[bcd]a[a-z]*x\b [a-z]+ze\b")):
        t = time.perf_counter()
        ghits = log.grep(pat, limit=1_000_000, until=until, timeout_s=60)
        ours = time.perf_counter() - t
        rx = re.compile(pat)
        t = time.perf_counter()
        base = [i for i, s in enumerate(sub) if rx.search(s)]
        raw = time.perf_counter() - t
        assert len(ghits) == len(base), (name, len(ghits), len(base))
        res["grep"][name] = {"pattern": pat, "hits": len(ghits), "ours_s": ours, "raw_re_loop_s": raw, "ratio": raw / ours}
        print(f"grep {name} over {m:,} msgs / {res['grep']['tokens']:,} tokens ({len(ghits):,} hits): ours {ours:.3f} s,"
              f" bare re loop over in-memory strings {raw:.3f} s, ratio {raw / ours:.2f}", flush=True)  # fmt: skip
    res["load_avg_1min_at_end"] = os.getloadavg()[0]
    con.close()
    db.close()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--out", default="")
    ap.add_argument("--dir", default="", help="where to build the databases (default: a temp dir)")
    a = ap.parse_args()
    out: dict[str, Any] = {"sqlite": sqlite3.sqlite_version, "results": []}
    with tempfile.TemporaryDirectory(dir=a.dir or None) as d:
        for n in (int(s) for s in a.sizes.split(",")):
            out["results"].append(bench_size(n, Path(d)))
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
