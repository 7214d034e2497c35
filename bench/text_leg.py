"""The full-text leg alone against a plain BM25 over the same units, on LongMemEval or LoCoMo
data.

Protocol and data reading as ``bench/retrieval.py`` (LongMemEval: user turns indexed, one store
per question; LoCoMo: every turn, one store per conversation; turn and session level), but
only the text mode is run, so no embedding model is needed: each store is opened with a
hashing embedder that is never asked to embed. The baseline is Okapi BM25
(k1 = 1.2, b = 0.75, IDF ``log(1 + (N - n + 0.5) / (n + 0.5))``) over lowercase word tokens
of the same stored turns, computed here in Python; sessions are ranked by their best turn.

    .venv/bin/python bench/text_leg.py /tmp/synth.json.gz [--limit N]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import regex
from retrieval import METRICS, Haystack, haystacks, load, messages_of, metrics, store_name

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


def run(h: Haystack, workdir: Path) -> list[dict[str, Any]]:
    """Rank one haystack's questions by the text leg and by plain BM25 over the same units."""
    msgs, units = messages_of(h)
    mem = MemoryManager.open(
        workdir / store_name(h), embedder=HashEmbedder(), background_embed=False
    )
    rows = []
    try:
        stored = mem.recall.append_many(msgs)
        unit_of = {m.id: u for m, u in zip(stored, units, strict=True)}
        docs = [m["content"] for m in msgs]
        for p in h.probes:
            hits = mem.search_recall(p.question, k=DEPTH, mode="text", now=p.now)
            ours = [unit_of[x.id] for x in hits]
            ours_s = [
                s.session_id
                for s in mem.search_sessions(p.question, k=DEPTH, mode="text", now=p.now)
            ]
            plain = [units[i] for i in bm25_rank(docs, p.question)]
            plain_s = list(dict.fromkeys(u[0] for u in plain))
            out: dict[str, Any] = {"qtype": p.qtype, "session": {"ours": metrics(ours_s, p.gold_sessions),
                                                              "bm25": metrics(plain_s, p.gold_sessions)}}  # fmt: skip
            if p.gold_turns:
                out["turn"] = {
                    "ours": metrics(ours, p.gold_turns),
                    "bm25": metrics(plain, p.gold_turns),
                }
            rows.append(out)
    finally:
        mem.close()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data")
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()
    hays = haystacks(load(args.data))
    hays = hays[: args.limit] if args.limit else hays
    sums: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        for n, h in enumerate(hays, 1):
            for r in run(h, Path(tmp)):
                for level in ("turn", "session"):
                    for who, ms in r.get(level, {}).items():
                        for m in METRICS:
                            sums[(level, "overall", who + ":" + m)].append(ms[m])
                            sums[(level, r["qtype"], who + ":" + m)].append(ms[m])
            print(f"\r{n}/{len(hays)}", end="", file=sys.stderr, flush=True)
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
