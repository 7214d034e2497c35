"""The named encoders side by side (``embed_model``): ingest cost and query latency, as ratios.

Usage::

    .venv/bin/python bench/bench_encoders.py [DATA.json.gz] [--turns 300] [--chunks 60] [--runs 5]
        [--queries 20] [--models all-MiniLM-L6-v2,all-mpnet-base-v2] [--backend onnx]

For each model, alternating the models at every step so machine load hits them alike:

* ingest: a fresh store per model and round; ``--turns`` user turns of the data set's
  haystacks appended as recall messages (embedded passage by passage) and ``--chunks``
  archival chunks of their text, then ``embed_pending``; passages/s and chunks/s, the two
  rounds' mean;
* cold query: a new process opens the store (its ``rlmem.toml`` names the model) and runs
  one hybrid ``search``, ``--runs`` times; the process's wall time (p50), and whether it
  imported torch;
* warm query: in one process holding both stores, ``--queries`` distinct hybrid searches
  after a first one, the models alternated at every query; the median per query, and the
  median time to embed one query text on its own.

The one-time costs (unpacking the mpnet parts, the ONNX export) are paid before timing.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from memory.manager import MemoryManager
from memory.text import chunking

ROOT = Path(__file__).resolve().parent.parent
COLD = """
import sys, time
t0 = time.perf_counter()
from memory.manager import MemoryManager
from memory.text import chunking
with MemoryManager.open(sys.argv[1], background_embed=False) as m:
    hits = m.search(sys.argv[2], k=5, mode="hybrid")
print(time.perf_counter() - t0, "torch" in sys.modules, len(hits))
"""


def corpus(path: str, turns: int, chunks: int) -> tuple[list[str], list[str], list[str]]:
    with gzip.open(path) as fh:
        data = json.load(fh)
    seen: dict[str, None] = {}
    for q in data:
        for s in q["haystack_sessions"]:
            for t in s:
                if t["role"] == "user" and t["content"].strip():
                    seen.setdefault(t["content"], None)
    texts = list(seen)
    words = " ".join(texts[turns : turns + 4 * chunks]).split()
    cut = [" ".join(words[i : i + 180]) for i in range(0, 180 * chunks, 180)]
    questions = [q["question"] for q in data[: 1 + 20 * 4] if not q["question_id"].endswith("_abs")]
    return texts[:turns], cut[:chunks], questions


def ingest(store: Path, model: str, backend: str, turns: list[str], chunks: list[str]) -> dict[str, float]:
    store.mkdir(parents=True)
    (store / "rlmem.toml").write_text(f'embed_model = "{model}"\nembed_backend = "{backend}"\n')
    with MemoryManager.open(store, background_embed=False) as mem:
        mem.recall.append_many([{"content": t} for t in turns])
        t0 = time.perf_counter()
        mem.embed_pending()
        t1 = time.perf_counter()
        passages = sum(len(chunking.passages(t)) for t in turns)  # what the queue embeds
        mem.archival.insert_many(chunks)
        t2 = time.perf_counter()
        mem.embed_pending()
        t3 = time.perf_counter()
    return {"passages": passages, "passages_s": passages / (t1 - t0), "chunks_s": len(chunks) / (t3 - t2)}


def warm(stores: dict[str, Path], questions: list[str]) -> dict[str, tuple[float, float]]:
    """Median hybrid search and median query embedding per model, the models alternated at
    every query (the embedding of a text the search did not embed: no cached vector)."""
    mems = {m: MemoryManager.open(p, background_embed=False) for m, p in stores.items()}
    try:
        for mem in mems.values():
            mem.search("a first query", k=5, mode="hybrid")
        search: dict[str, list[float]] = {m: [] for m in mems}
        embed: dict[str, list[float]] = {m: [] for m in mems}
        for q in questions:
            for m, mem in mems.items():
                t0 = time.perf_counter()
                mem.search(q, k=5, mode="hybrid")
                t1 = time.perf_counter()
                mem.embedder.embed([q + " (again)"])
                t2 = time.perf_counter()
                search[m].append(t1 - t0)
                embed[m].append(t2 - t1)
        return {m: (statistics.median(search[m]), statistics.median(embed[m])) for m in mems}
    finally:
        for mem in mems.values():
            mem.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", nargs="?", default="/tmp/synthA.json.gz")
    ap.add_argument("--turns", type=int, default=300)
    ap.add_argument("--chunks", type=int, default=60)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--models", default="all-MiniLM-L6-v2,all-mpnet-base-v2")
    ap.add_argument("--backend", default="onnx")
    args = ap.parse_args()
    models = args.models.split(",")
    turns, chunks, questions = corpus(args.data, args.turns, args.chunks)
    print(f"load {os.getloadavg()[0]:.2f}; {len(turns)} turns ({sum(map(len, turns))} chars), "
          f"{len(chunks)} chunks, {args.backend}", flush=True)
    res: dict[str, dict[str, list[float]]] = {m: {} for m in models}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory(prefix="rlmem-enc-") as tmp:
        for m in models:  # one-time costs (unpack, export) outside the timings
            ingest(Path(tmp) / f"warmup-{m}", m, args.backend, turns[:8], chunks[:2])
        for r in range(2):
            for m in models:
                got = ingest(Path(tmp) / f"{m}-{r}", m, args.backend, turns, chunks)
                for k, v in got.items():
                    res[m].setdefault(k, []).append(v)
                print(f"ingest {m} round {r}: {got}", flush=True)
        for i in range(args.runs):
            for m in models:
                t0 = time.perf_counter()
                out = subprocess.run([sys.executable, "-c", COLD, str(Path(tmp) / f"{m}-0"), questions[i % len(questions)]],
                                     env=env, capture_output=True, text=True, check=True)
                wall = time.perf_counter() - t0
                inner, torch, _ = out.stdout.split()
                res[m].setdefault("cold_s", []).append(wall)
                res[m].setdefault("torch", []).append(float(torch == "True"))
                print(f"cold {m}: {wall:.2f} s (in-process {float(inner):.2f} s, torch imported: {torch})", flush=True)
        for m, (search_s, embed_s) in warm({m: Path(tmp) / f"{m}-0" for m in models}, questions[: args.queries]).items():
            res[m]["warm_s"], res[m]["embed_s"] = [search_s], [embed_s]
    print(f"\nload {os.getloadavg()[0]:.2f}")
    base = models[0]
    row = {m: {"passages_s": statistics.mean(res[m]["passages_s"]), "chunks_s": statistics.mean(res[m]["chunks_s"]),
               "cold_s": statistics.median(res[m]["cold_s"]), "warm_s": res[m]["warm_s"][0],
               "embed_s": res[m]["embed_s"][0], "torch": max(res[m]["torch"])} for m in models}
    print(f"{'model':22s} {'passages/s':>11s} {'chunks/s':>9s} {'cold p50 s':>11s} {'warm search s':>14s} "
          f"{'query embed s':>14s} torch")
    for m in models:
        r = row[m]
        print(f"{m:22s} {r['passages_s']:11.1f} {r['chunks_s']:9.2f} {r['cold_s']:11.2f} {r['warm_s']:14.3f} "
              f"{r['embed_s']:14.4f} {'yes' if r['torch'] else 'no'}")
        if m != base:
            b = row[base]
            print(f"{'  ratio to ' + base:22s} {r['passages_s'] / b['passages_s']:11.3f} {r['chunks_s'] / b['chunks_s']:9.3f} "
                  f"{r['cold_s'] / b['cold_s']:11.2f} {r['warm_s'] / b['warm_s']:14.2f} {r['embed_s'] / b['embed_s']:14.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
