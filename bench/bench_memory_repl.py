"""Memory through the REPL against the same calls made directly in the parent process.

Builds (or reuses, ``--store``) a recall log of ``--tokens`` tokens (default 10M: 100,000
messages of 400 characters, one planted fact) plus ``--chunks`` archival chunks, then times,
in the same run:

* ``grep`` from model code in the sandbox worker (``sandbox.run("hits = grep(...)")``, the
  whole cell round trip) against ``RecallLog.grep`` called directly, for a pattern the SQL
  prefilter can narrow, a regex that must scan every message, and a common word that stops
  at ``limit`` hits. Target: REPL / direct <= 1.5x.
* ``search``, ``recall_search`` and ``archival_search`` through the REPL against
  ``MemoryManager.search*`` directly (p50 over the queries, each repeated).
* the lazy views: ``recall[a:b]`` (500 messages) against ``RecallLog.range``, and ``len(recall)``
  against ``RecallLog.count``.
* an empty cell, the fixed cost of one REPL round trip.

Usage: ``python bench/bench_memory_repl.py [--tokens 10000000] [--repeat 5]
[--embedder minilm|hash] [--store DIR] [--out results.json]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent.parent / "tests")]

from memory_corpus import fill_recall  # noqa: E402

from agents.repl.binding import bind_memory  # noqa: E402
from memory.manager import MemoryManager  # noqa: E402
from rlm_core.sandbox.repl import Sandbox, SandboxLimits  # noqa: E402

GREPS = {
    "literal (SQL prefilter)": "Heliotrope",
    "regex, every message scanned": r"\d{4}-\w+",
    "common word, stops at 100 hits": "budget",
}
QUERIES = [
    "vault combination",
    "budget review meeting",
    "deploy the server",
    "customer refund report",
]


def _p50(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _pair(direct: Callable[[], Any], repl: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Median times of two callables run alternately, so load on a shared machine hits both."""
    d: list[float] = []
    r: list[float] = []
    direct()
    repl()
    for _ in range(repeat):
        for fn, out in ((direct, d), (repl, r)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return statistics.median(d), statistics.median(r)


def _cell(sb: Sandbox, code: str) -> Callable[[], None]:
    def run() -> None:
        res = sb.run(code)
        if res.error:
            raise RuntimeError(res.render())

    return run


def _open(path: Path, embedder_name: str) -> MemoryManager:
    from memory.vectors.embeddings import HashEmbedder, SentenceTransformerEmbedder

    embedder = HashEmbedder() if embedder_name == "hash" else SentenceTransformerEmbedder(threads=1)
    return MemoryManager.open(path, embedder=embedder, embed_recall=False, background_embed=False)


def build(path: Path, tokens: int, chunks: int, embedder: str) -> dict[str, float]:
    mem = _open(path, embedder)
    try:
        if mem.recall.count():
            return {"build_s": 0.0}
        t0 = time.perf_counter()
        fill_recall(mem, tokens=tokens, needle_at=0.61)
        recall_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        mem.archival.insert_many(
            [{"text": f"Document {i}: notes on {QUERIES[i % len(QUERIES)]} number {i}.", "source": f"doc{i % 50}.md"}
             for i in range(chunks)]
        )  # fmt: skip
        mem.embed_pending()
        return {"recall_build_s": recall_s, "archival_build_s": time.perf_counter() - t0}
    finally:
        mem.close()


def measure(path: Path, repeat: int, embedder: str) -> dict[str, Any]:
    mem = _open(path, embedder)
    binding = bind_memory(mem)
    out: dict[str, Any] = {"messages": mem.recall.count(), "chunks": mem.archival.count()}
    limits = SandboxLimits(cell_timeout_s=600, cpu_seconds=None, memory_mb=4096)
    with Sandbox(functions=binding.functions, prelude=binding.prelude, limits=limits) as sb:
        out["empty_cell_s"] = _p50(_cell(sb, "pass"), repeat * 4)
        rows = []
        for name, pattern in GREPS.items():

            def grep_direct(p: str = pattern) -> Any:
                return mem.recall.grep(p, limit=100, timeout_s=binding.grep_timeout_s)

            direct, repl = _pair(
                grep_direct,
                _cell(sb, f"hits = grep({pattern!r}, limit=100)"),
                repeat,
            )
            hits = len(mem.recall.grep(pattern, limit=100))
            rows.append(
                {
                    "case": name,
                    "hits": hits,
                    "direct_s": direct,
                    "repl_s": repl,
                    "ratio": repl / direct,
                }
            )
        out["grep"] = rows
        mem.search("warm up the embedder", k=1)
        rows = []
        searches: list[tuple[str, Callable[[str], Any], str]] = [
            ("search (both tiers)", lambda q: mem.search(q, k=10), "search({q!r}, k=10)"),
            ("recall_search", lambda q: mem.search_recall(q, k=10), "recall_search({q!r}, k=10)"),
            (
                "archival_search",
                lambda q: mem.search_archival(q, k=10),
                "archival_search({q!r}, k=10)",
            ),
        ]
        for name, direct_fn, code in searches:
            pairs = [
                _pair(partial(direct_fn, q), _cell(sb, "h = " + code.format(q=q)), repeat)
                for q in QUERIES
            ]
            d = statistics.median(p[0] for p in pairs)
            r = statistics.median(p[1] for p in pairs)
            rows.append({"case": name, "direct_s": d, "repl_s": r, "ratio": r / d})
        n = out["messages"]
        mid = n // 2
        d, r = _pair(
            lambda: mem.recall.range(mid + 1, mid + 500, limit=500),
            _cell(sb, f"page = recall[{mid}:{mid + 500}]"),
            repeat * 4,
        )
        rows.append(
            {
                "case": "recall[a:a+500] vs RecallLog.range",
                "direct_s": d,
                "repl_s": r,
                "ratio": r / d,
            }
        )
        d, r = _pair(lambda: mem.recall.count(), _cell(sb, "n = len(recall)"), repeat * 4)
        rows.append(
            {"case": "len(recall) vs RecallLog.count", "direct_s": d, "repl_s": r, "ratio": r / d}
        )
        out["search_and_views"] = rows
    mem.close()
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=10_000_000)
    ap.add_argument("--chunks", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--embedder", choices=("minilm", "hash"), default="minilm")
    ap.add_argument("--store", type=Path, default=None, help="reuse (or create) the store here")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    path = args.store or Path(tempfile.mkdtemp(prefix="rlmem-bench-")) / "store"
    result: dict[str, Any] = {"tokens": args.tokens, "embedder": args.embedder, "store": str(path)}
    result.update(build(path, args.tokens, args.chunks, args.embedder))
    result.update(measure(path, args.repeat, args.embedder))
    print(f"store: {result['messages']:,} messages, {result['chunks']:,} chunks ({path})")
    if result.get("recall_build_s"):
        print(
            f"build: recall {result['recall_build_s']:.1f} s, archival {result['archival_build_s']:.1f} s"
        )
    print(f"empty cell round trip: {result['empty_cell_s'] * 1e3:.2f} ms")
    print(f"{'case':<40} {'direct ms':>10} {'REPL ms':>10} {'ratio':>7}")
    for row in result["grep"] + result["search_and_views"]:
        label = f"grep: {row['case']}" if "hits" in row else row["case"]
        print(
            f"{label:<40} {row['direct_s'] * 1e3:>10.2f} {row['repl_s'] * 1e3:>10.2f} {row['ratio']:>6.2f}x"
        )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
