"""Embedding cost of recall messages by passages against whole messages, same run.

Recall messages are embedded sentence by sentence (``memory.text.chunking.passages``); this
measures what that costs over one vector per message, on user turns of a LongMemEval-format
file (a random sample, the best of three rounds each)::

    .venv/bin/python bench/bench_passages.py [DATA.json(.gz)] [--sample 600] [--threads 1]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from retrieval import DEFAULT_DATA, load

from memory.text.chunking import passages
from memory.vectors.embeddings import SentenceTransformerEmbedder


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", nargs="?", default=DEFAULT_DATA)
    ap.add_argument("--sample", type=int, default=600)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    turns = [
        t["content"] for r in load(args.data) for s in r["haystack_sessions"] for t in s
        if t["role"] == "user" and t["content"].strip()
    ]
    sample = random.Random(7).sample(turns, min(args.sample, len(turns)))
    parts = [p for t in sample for p in passages(t)]
    emb = SentenceTransformerEmbedder(threads=args.threads)
    emb.embed(["warm up"])
    best = {"whole": float("inf"), "passages": float("inf")}
    for _ in range(3):
        for name, texts in (("whole", sample), ("passages", parts)):
            t0 = time.perf_counter()
            emb.embed(texts)
            best[name] = min(best[name], time.perf_counter() - t0)
    w, p = best["whole"], best["passages"]
    print(f"{len(sample)} messages -> {len(parts)} passages ({len(parts) / len(sample):.2f} per message)")
    print(f"whole messages: {w:.1f} s ({len(sample) / w:.1f} msg/s)")
    print(f"by passages:    {p:.1f} s ({len(sample) / p:.1f} msg/s): {p / w:.2f}x the time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
