"""Fusion settings scored in seconds: both legs' candidates dumped once, re-fused many times.

``dump`` ingests every haystack as ``bench/retrieval.py`` does (same protocol, same embedding
cache) and writes, for every question, what recall search's two legs return for it: the
text leg's and the vector leg's candidates (``RECALL_DEPTH`` each, with their scores), the
cosine of every stored message (what ``similarities`` gives a text candidate the vector leg
missed), and every message's unit, session and time. ``score`` re-fuses those lists with
``memory.fusion.hybrid_rank``, the time bonus and the session pooling, as
``RecallSearch.search`` and ``search_sessions`` do, under the settings given on the command
line, and prints the hybrid rows of ``bench/retrieval.py``'s table. With the default settings
its figures are ``bench/retrieval.py``'s hybrid figures exactly
(``tests/test_retrieval_bench.py`` checks that on a small file)::

    .venv/bin/python bench/fusion_replay.py dump /tmp/synthA.json.gz /tmp/A.replay.json.gz
    .venv/bin/python bench/fusion_replay.py score /tmp/A.replay.json.gz --text-weight 0.35

Only fusion settings can be replayed: a change to either leg (its query, its scoring) needs
a new dump.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import retrieval

from memory.fusion import RECALL_DEPTH, FusionConfig, hybrid_rank, pool_groups
from memory.manager import MemoryManager
from memory.recall.hybrid import default_fusion
from memory.text.temporal import parse_relative, time_prior


def dump_haystack(h: retrieval.Haystack, embedder: Any, workdir: Path) -> list[dict[str, Any]]:
    """Both legs' candidates for each question of ``h``, over a fresh store."""
    msgs, units = retrieval.messages_of(h)
    mem = MemoryManager.open(workdir / retrieval.store_name(h), embedder=embedder, background_embed=False)
    try:
        stored = mem.recall.append_many(msgs)
        mem.embed_pending()
        index = {m.id: j for j, m in enumerate(stored)}
        ids = [m.id for m in stored]
        common = {
            "units": [list(u) for u in units],
            "sessions": [m.session_id for m in stored],
            "times": [m.created_at.isoformat() for m in stored],
        }
        out = []
        for p in h.probes:
            c = mem.recall_search.candidates(p.question)
            vec = c.vector_search(RECALL_DEPTH) if c.vector_search is not None else []
            cos = c.similarities(ids) if c.similarities is not None else {}
            out.append({
                "qid": p.qid, "qtype": p.qtype, "question": p.question, "now": p.now.isoformat(),
                "gold_turns": [list(u) for u in p.gold_turns], "gold_sessions": sorted(p.gold_sessions),
                "text": [[index[i], s] for i, s in c.text_search(RECALL_DEPTH)],
                "vector": [[index[i], s] for i, s in vec],
                "cos": [cos.get(i) for i in ids],
                **common,
            })  # fmt: skip
        return out
    finally:
        mem.close()


def ranked(q: dict[str, Any], cfg: FusionConfig, level: str) -> list[Any]:
    """Turn units (top ``retrieval.DEPTH``) or session ids, as hybrid search ranks them."""
    c = cfg.for_sessions() if level == "session" else cfg
    k = c.depth if level == "session" else retrieval.DEPTH
    cos = q["cos"]
    text = [(i, s) for i, s in q["text"]]
    vec = [(i, s) for i, s in q["vector"]]
    pool = hybrid_rank(
        k=c.candidates(k, 0), offset=0, text_search=lambda n: text[:n], vector_search=lambda n: vec[:n],
        similarities=lambda ids: {i: cos[i] for i in ids if cos[i] is not None}, config=c,
    )  # fmt: skip
    target = parse_relative(q["question"], datetime.fromisoformat(q["now"]))
    if target is not None and c.time_weight > 0:
        at = [datetime.fromisoformat(t) for t in q["times"]]
        pool = [(i, s + c.time_weight * time_prior(at[i], target)) for i, s in pool]
        pool.sort(key=lambda x: (-x[1], x[0]))
    if level == "turn":
        return [tuple(q["units"][i]) for i, _ in pool[:k]]
    return [g for g, _, _ in pool_groups(pool, lambda i: q["sessions"][i], temperature=c.session_temperature)[: retrieval.DEPTH]]


def score(questions: list[dict[str, Any]], cfg: FusionConfig) -> dict[str, Any]:
    """``bench/retrieval.py``'s summary table, hybrid rows only."""
    rows = []
    for q in questions:
        row: dict[str, Any] = {"turn": {}, "session": {}}
        gold_turns = {tuple(u) for u in q["gold_turns"]}
        if gold_turns:
            row["turn"]["hybrid"] = retrieval.metrics(ranked(q, cfg, "turn"), gold_turns)
        row["session"]["hybrid"] = retrieval.metrics(ranked(q, cfg, "session"), set(q["gold_sessions"]))
        rows.append((q["qtype"], row))
    return retrieval.summarise(rows, modes=("hybrid",))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump", help="ingest every haystack and write both legs' candidates")
    d.add_argument("data")
    d.add_argument("out")
    d.add_argument("--cache", default=str(Path.home() / ".cache/rlm-memory/bench-embeddings.sqlite"))
    d.add_argument("--threads", type=int, default=1)
    d.add_argument("--encoder", choices=["torch", "onnx", "onnx-int8"], default="torch")
    s = sub.add_parser("score", help="re-fuse a dump under other settings")
    s.add_argument("dump")
    s.add_argument("--text-weight", type=float, help="BM25's weight for messages")
    s.add_argument("--time-weight", type=float, help="the relative-date bonus")
    s.add_argument("--session-text-weight", type=float, help="BM25's weight for messages pooled into sessions")
    s.add_argument("--combine", choices=["mean", "softmax"], help="how a message's two scores combine")
    s.add_argument("--session-temperature", type=float, help="how much a session's further messages add")
    s.add_argument("--depth", type=int, help="candidates fused (and pooled into sessions)")
    s.add_argument("--adaptive", action="store_true", help="shift BM25's weight per query by the lists' separation")
    s.add_argument("--select", help="only questions whose id matches this regular expression (a split)")
    args = ap.parse_args(argv)
    if args.cmd == "dump":
        embedder = retrieval.make_embedder(args.encoder, args.threads, args.cache)
        stacks = retrieval.haystacks(retrieval.load(args.data))
        out: list[dict[str, Any]] = []
        with tempfile.TemporaryDirectory(prefix="rlmem-replay-") as tmp:
            for n, h in enumerate(stacks, 1):
                out += dump_haystack(h, embedder, Path(tmp))
                print(f"\r{n}/{len(stacks)} haystacks", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        with gzip.open(args.out, "wt", encoding="utf-8") as fh:
            json.dump(out, fh)
        print(f"{len(out)} questions -> {args.out}")
        return 0
    with gzip.open(args.dump, "rt", encoding="utf-8") as fh:
        questions = json.load(fh)
    if args.select:
        questions = [q for q in questions if re.search(args.select, q["qid"])]
    cfg = default_fusion()
    changes = {
        "text_weight": args.text_weight, "time_weight": args.time_weight,
        "session_text_weight": args.session_text_weight, "combine": args.combine,
        "session_temperature": args.session_temperature, "depth": args.depth,
        "adaptive": True if args.adaptive else None,
    }  # fmt: skip
    cfg = replace(cfg, **{k: v for k, v in changes.items() if v is not None})
    t0 = time.perf_counter()
    table = score(questions, cfg)
    print(f"{len(questions)} questions, {time.perf_counter() - t0:.1f} s; {cfg}")
    retrieval.print_table(table, modes=("hybrid",))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
