"""Full-text search under the default filter (tool records left out): joined to every match
against checked on the ranked ids (what ``RecallLog.search_text`` does on SQLite), alternated
query by query in one process over the same log.

The log is ``bench/bench_recall.py``'s corpus (messages of 20 words from a Zipf-like
vocabulary), built once into ``--db`` and reused by later runs; the word classes are its own
(rare, mid-frequency, in 15 % of messages, the most common, questions of 12 words). The
joined side calls ``bounded_fts_ids`` with the filter as SQL, which is the ranking
``search_text`` used before; both sides return ``SearchHit``s with snippets::

    .venv/bin/python bench/bench_fts_filter.py --messages 1000000 --db /tmp/fts1m.db
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_recall

from memory.db import Database
from memory.recall.log import RECALL_FTS, RecallLog
from memory.text import fts
from memory.text.query import RecallFilter


def build(path: Path, n: int) -> dict[str, list[str]]:
    texts, terms = bench_recall.make_corpus(n)
    db = Database.open(str(path))
    log = RecallLog(db)
    for a in range(0, n, bench_recall.BATCH):
        log.append_many(bench_recall.message(i, texts[i]) for i in range(a, min(n, a + bench_recall.BATCH)))
    db.close()
    return terms


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--db", required=True, help="the log to build, or to reuse if it exists")
    ap.add_argument("--runs", type=int, default=2, help="passes over every word class")
    args = ap.parse_args()
    path, meta = Path(args.db), Path(args.db + ".terms.json")
    if not meta.exists():
        path.unlink(missing_ok=True)
        meta.write_text(json.dumps(build(path, args.messages)), encoding="utf-8")
    terms = json.loads(meta.read_text(encoding="utf-8"))
    db = Database.open(str(path))
    log = RecallLog(db)

    def joined(q: str) -> object:
        f = RecallFilter.of(None).sql()
        with db.read() as conn:
            found = fts.bounded_fts_ids(
                conn, db.dialect, fts.fts_phrases(q), RECALL_FTS, f.sql(), f.params, k=10, offset=0,
                common_docs=log.common_term_docs, max_candidates=log.max_candidates,
                score_phrases=fts.phrase_counts(q, name_weight=fts.NAME_WEIGHT),
            )  # fmt: skip
            return log.hits(found, q, conn)

    def after(q: str) -> object:
        return log.search_text(q, k=10)

    for run in range(args.runs):
        print(f"run {run + 1}")
        for kind, words in terms.items():
            a: list[float] = []
            b: list[float] = []
            for n, w in enumerate(words * max(1, 60 // len(words))):
                for fn, acc in ((joined, a), (after, b)) if n % 2 == 0 else ((after, b), (joined, a)):
                    t = time.perf_counter()
                    fn(w)
                    acc.append(time.perf_counter() - t)
            p50a, p50b = statistics.median(a) * 1e3, statistics.median(b) * 1e3
            p95a, p95b = (statistics.quantiles(x, n=20)[18] * 1e3 for x in (a, b))
            print(f"  {kind:13s} joined p50 {p50a:6.2f} p95 {p95a:6.2f} ms | after ranking p50 {p50b:6.2f}"
                  f" p95 {p95b:6.2f} ms | joined / after, p50 {p50a / p50b:.2f}")  # fmt: skip
    db.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
