"""Retrieval quality of the recall tier on LongMemEval-format data (full text, vector, hybrid).

Protocol (see the data README): one fresh store per question; the question's haystack
sessions are appended in date order as recall messages (each session's date as the message
time) through ``MemoryManager``; then the question is searched with ``search_recall`` in
each mode. As in the standard protocol only user turns are indexed (``--all-turns`` appends
the assistant turns too, and then searches are filtered to ``role="user"`` at turn level).

* Turn level: units are user turns; gold = user turns with ``has_answer`` in the evidence
  sessions.
* Session level: units are sessions, ranked by ``search_sessions`` (the scores of a
  session's matching messages pooled, in the same mode); gold = ``answer_session_ids``.

Questions ending in ``_abs`` and questions with an empty gold set at a level are skipped.

Usage::

    .venv/bin/python bench/retrieval.py [DATA.json(.gz)] [--limit N] [--all-turns] [--json OUT]
        [--encoder torch|onnx|onnx-int8]

Embeddings are cached on disk keyed by model and SHA-256 of the text
(``--cache``, default ``~/.cache/rlm-memory/bench-embeddings.sqlite``), so only the first run
pays for embedding every haystack; the output says how many came from the cache. The ONNX
fp32 encoder shares the torch model's name (the same vectors), so compare it with
``--no-cache``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from memory.manager import MemoryManager
from memory.vectors.embeddings import CachedEmbedder, SentenceTransformerEmbedder

DEFAULT_DATA = "/work/shared/data/longmemeval_s_dev100.json.gz"
MODES = ("text", "vector", "hybrid")
METRICS = ("recall_any@5", "recall_any@10", "recall_all@5", "ndcg@10", "mrr")
DEPTH = 50  # ranked units kept per query


def load(path: str) -> list[dict[str, Any]]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
        data = json.load(fh)
    if not isinstance(data, list):
        raise SystemExit(f"{path}: expected a JSON list of LongMemEval records")
    return data


def parse_date(s: str) -> datetime:
    for fmt in ("%Y/%m/%d (%a) %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(s, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return datetime(1970, 1, 1, tzinfo=UTC)


def metrics(ranked: Sequence[Any], gold: set[Any]) -> dict[str, float]:
    def rec_any(k: int) -> float:
        return float(any(u in gold for u in ranked[:k]))

    dcg = sum(1 / math.log2(i + 2) for i, u in enumerate(ranked[:10]) if u in gold)
    idcg = sum(1 / math.log2(i + 2) for i in range(min(len(gold), 10)))
    first = next((i for i, u in enumerate(ranked) if u in gold), None)
    return {
        "recall_any@5": rec_any(5),
        "recall_any@10": rec_any(10),
        "recall_all@5": float(gold <= set(ranked[:5])),
        "ndcg@10": dcg / idcg if idcg else 0.0,
        "mrr": 1 / (first + 1) if first is not None else 0.0,
    }


def run_question(rec: dict[str, Any], embedder: Any, workdir: Path, *, all_turns: bool = False) -> dict[str, Any]:
    """Ingest one haystack into a fresh store; rank turns and sessions in every mode."""
    order = sorted(
        range(len(rec["haystack_sessions"])), key=lambda i: parse_date(rec["haystack_dates"][i])
    )
    msgs: list[dict[str, Any]] = []
    units: list[tuple[str, int]] = []
    for i in order:
        sid = str(rec["haystack_session_ids"][i])
        base = parse_date(rec["haystack_dates"][i])
        for t, turn in enumerate(rec["haystack_sessions"][i]):
            if turn["role"] != "user" and not all_turns:
                continue
            msgs.append(
                {"content": turn["content"], "role": turn["role"], "session_id": sid,
                 "created_at": base + timedelta(seconds=t), "metadata": {"turn": t}}
            )
            units.append((sid, t))
    answer_sessions = {str(s) for s in rec["answer_session_ids"]}
    gold_turn = {
        (str(rec["haystack_session_ids"][i]), t)
        for i in range(len(rec["haystack_sessions"]))
        if str(rec["haystack_session_ids"][i]) in answer_sessions
        for t, turn in enumerate(rec["haystack_sessions"][i])
        if turn["role"] == "user" and turn.get("has_answer")
    }
    t0 = time.perf_counter()
    store = workdir / rec["question_id"]
    mem = MemoryManager.open(store, embedder=embedder, background_embed=False)
    try:
        stored = mem.recall.append_many(msgs)
        unit_of = {m.id: u for m, u in zip(stored, units, strict=True)}
        t1 = time.perf_counter()
        mem.embed_pending()
        t2 = time.perf_counter()
        out: dict[str, Any] = {"ingest_s": t1 - t0, "embed_s": t2 - t1, "turn": {}, "session": {}}
        now = parse_date(rec["question_date"])  # relative dates in questions count from here
        for mode in MODES:
            q0 = time.perf_counter()
            role = "user" if all_turns else None
            hits = mem.search_recall(rec["question"], k=DEPTH, mode=mode, role=role, now=now)
            turn_rank = [unit_of[h.id] for h in hits]
            sessions = mem.search_sessions(rec["question"], k=DEPTH, mode=mode, now=now)
            out.setdefault("search_s", {})[mode] = time.perf_counter() - q0
            session_rank = [s.session_id for s in sessions]
            if gold_turn:
                out["turn"][mode] = metrics(turn_rank, gold_turn)
            out["session"][mode] = metrics(session_rank, answer_sessions)
    finally:
        mem.close()
    return out


def summarise(rows: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for level in ("turn", "session"):
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for qtype, r in rows:
            if r[level]:
                groups["overall"].append(r[level])
                groups[qtype].append(r[level])
        table[level] = {
            g: {
                "n": len(rs),
                **{m: {k: sum(x[m][k] for x in rs) / len(rs) for k in METRICS} for m in MODES},
            }
            for g, rs in groups.items()
        }
    return table


def print_table(table: dict[str, Any]) -> None:
    for level, groups in table.items():
        print(f"\n== {level} level ==")
        print(f"{'group':28s} {'n':>3s} {'method':7s} " + " ".join(f"{m:>13s}" for m in METRICS))
        for g in ["overall", *sorted(k for k in groups if k != "overall")]:
            row = groups[g]
            for mode in MODES:
                vals = " ".join(f"{row[mode][m]:13.3f}" for m in METRICS)
                flag = ""
                if mode == "hybrid":
                    lose = [m for m in METRICS if row["hybrid"][m] + 1e-9 < max(row["text"][m], row["vector"][m])]
                    flag = "  < single on " + ",".join(lose) if lose else "  >= both"
                print(f"{g:28s} {row['n']:3d} {mode:7s} {vals}{flag}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", nargs="?", default=DEFAULT_DATA, help="LongMemEval-format JSON(.gz)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N questions")
    ap.add_argument("--stride", type=int, default=1, help="every STRIDE-th question (a spread subset)")
    ap.add_argument("--cache", default=str(Path.home() / ".cache/rlm-memory/bench-embeddings.sqlite"))
    ap.add_argument("--no-cache", action="store_true", help="embed everything afresh")
    ap.add_argument("--threads", type=int, default=1, help="embedding threads")
    ap.add_argument("--encoder", choices=["torch", "onnx", "onnx-int8"], default="torch",
                    help="sentence-transformers (torch), or the ONNX graph in fp32 or int8")
    ap.add_argument("--all-turns", action="store_true", help="index assistant turns too")
    ap.add_argument("--json", help="write the summary table here")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    records = [r for r in load(args.data) if not str(r["question_id"]).endswith("_abs")]
    records = records[:: max(1, args.stride)]
    if args.limit:
        records = records[: args.limit]
    base: Any = SentenceTransformerEmbedder(threads=args.threads)
    if args.encoder != "torch":
        from memory.vectors.onnx import OnnxEmbedder

        base = OnnxEmbedder(threads=args.threads, quantize=args.encoder == "onnx-int8")
    embedder: Any = base if args.no_cache else CachedEmbedder(base, args.cache)
    rows: list[tuple[str, dict[str, Any]]] = []
    totals: dict[str, float] = defaultdict(float)
    with tempfile.TemporaryDirectory(prefix="rlmem-bench-") as tmp:
        for n, rec in enumerate(records, 1):
            r = run_question(rec, embedder, Path(tmp), all_turns=args.all_turns)
            rows.append((rec["question_type"], r))
            totals["ingest_s"] += r["ingest_s"]
            totals["embed_s"] += r["embed_s"]
            for mode, s in r["search_s"].items():
                totals[f"search_{mode}_s"] += s
            print(f"\r{n}/{len(records)} questions", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    table = summarise(rows)
    wall = time.perf_counter() - t_start
    print(f"data: {args.data}  questions: {len(records)} (abstention questions skipped)")
    if isinstance(embedder, CachedEmbedder):
        print(
            f"embeddings: {embedder.name}, disk cache {args.cache}: "
            f"{embedder.hits} cached, {embedder.misses} computed"
        )
    print_table(table)
    print(
        f"\ntime: total {wall:.1f} s; ingest (SQL) {totals['ingest_s']:.1f} s; embed+index "
        f"{totals['embed_s']:.1f} s; search " + ", ".join(
            f"{m} {totals[f'search_{m}_s']:.1f} s" for m in MODES
        )
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"data": args.data, "questions": len(records),
                                               "seconds": wall, "table": table}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
