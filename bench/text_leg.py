"""The full-text leg alone against a plain BM25 over the same units, on LongMemEval-format data.

Protocol as ``bench/retrieval.py`` (user turns indexed, one store per question, turn and
session level), but only the text mode is run, so no embedding model is needed: each store is
opened with a hashing embedder that is never asked to embed. The baseline is Okapi BM25
(k1 = 1.2, b = 0.75, IDF ``log(1 + (N - n + 0.5) / (n + 0.5))``) over lowercase word tokens
of the same user turns, computed here in Python; sessions are ranked by their best turn.

    .venv/bin/python bench/text_leg.py /tmp/synth.json.gz [--limit N]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import regex
from retrieval import METRICS, load, metrics, parse_date

from memory.manager import MemoryManager
from memory.vectors.embeddings import HashEmbedder

WORD = regex.compile(r"[^\W_]+")
DEPTH = 50


def bm25_rank(docs: list[str], query: str, k1: float = 1.2, b: float = 0.75) -> list[int]:
    toks = [[w.casefold() for w in WORD.findall(d)] for d in docs]
    n = len(toks)
    avg = sum(map(len, toks)) / max(1, n)
    df: Counter[str] = Counter()
    for t in toks:
        df.update(set(t))
    q = [w.casefold() for w in WORD.findall(query)]
    scores = []
    for t in toks:
        tf = Counter(t)
        s = 0.0
        for w in q:
            if tf[w]:
                idf = math.log(1 + (n - df[w] + 0.5) / (df[w] + 0.5))
                s += idf * tf[w] * (k1 + 1) / (tf[w] + k1 * (1 - b + b * len(t) / avg))
        scores.append(s)
    return [i for i in sorted(range(n), key=lambda i: -scores[i]) if scores[i] > 0][:DEPTH]


def run(rec: dict[str, Any], workdir: Path) -> dict[str, Any]:
    order = sorted(
        range(len(rec["haystack_sessions"])), key=lambda i: parse_date(rec["haystack_dates"][i])
    )
    msgs, units = [], []
    for i in order:
        sid = str(rec["haystack_session_ids"][i])
        base = parse_date(rec["haystack_dates"][i])
        for t, turn in enumerate(rec["haystack_sessions"][i]):
            if turn["role"] == "user":
                msgs.append({"content": turn["content"], "role": "user", "session_id": sid,
                             "created_at": base + timedelta(seconds=t)})  # fmt: skip
                units.append((sid, t))
    answer_sessions = {str(s) for s in rec["answer_session_ids"]}
    gold = {(str(rec["haystack_session_ids"][i]), t) for i in range(len(rec["haystack_sessions"]))
            if str(rec["haystack_session_ids"][i]) in answer_sessions
            for t, turn in enumerate(rec["haystack_sessions"][i])
            if turn["role"] == "user" and turn.get("has_answer")}  # fmt: skip
    mem = MemoryManager.open(
        workdir / rec["question_id"], embedder=HashEmbedder(), background_embed=False
    )
    try:
        stored = mem.recall.append_many(msgs)
        unit_of = {m.id: u for m, u in zip(stored, units, strict=True)}
        now = parse_date(rec["question_date"])
        ours = [
            unit_of[h.id] for h in mem.search_recall(rec["question"], k=DEPTH, mode="text", now=now)
        ]
        ours_s = [
            s.session_id
            for s in mem.search_sessions(rec["question"], k=DEPTH, mode="text", now=now)
        ]
    finally:
        mem.close()
    plain = [units[i] for i in bm25_rank([m["content"] for m in msgs], rec["question"])]
    plain_s = list(dict.fromkeys(u[0] for u in plain))
    out: dict[str, Any] = {"session": {"ours": metrics(ours_s, answer_sessions),
                                       "bm25": metrics(plain_s, answer_sessions)}}  # fmt: skip
    if gold:
        out["turn"] = {"ours": metrics(ours, gold), "bm25": metrics(plain, gold)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data")
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()
    records = [r for r in load(args.data) if not str(r["question_id"]).endswith("_abs")]
    records = records[: args.limit] if args.limit else records
    sums: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        for n, rec in enumerate(records, 1):
            r = run(rec, Path(tmp))
            for level, by in r.items():
                for who, ms in by.items():
                    for m in METRICS:
                        sums[(level, "overall", who + ":" + m)].append(ms[m])
                        sums[(level, rec["question_type"], who + ":" + m)].append(ms[m])
            print(f"\r{n}/{len(records)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    for level in ("turn", "session"):
        print(f"\n== {level} ==  {'group':26s} " + " ".join(f"{m:>13s}" for m in METRICS))
        groups = sorted({g for lv, g, _ in sums if lv == level}, key=lambda g: (g != "overall", g))
        for g in groups:
            for who in ("bm25", "ours"):
                vals = [sums[(level, g, f"{who}:{m}")] for m in METRICS]
                print(
                    f"{who:12s} {g:26s} n={len(vals[0]):3d} "
                    + " ".join(f"{sum(v) / len(v):13.3f}" for v in vals)
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
