"""Retrieval quality of the recall tier on LongMemEval or LoCoMo data (full text, vector, hybrid).

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

A LoCoMo-format file (``locomo10.json``: each record a ``conversation`` with ``session_N``
lists of ``{speaker, dia_id, text}`` and ``session_N_date_time``, and ``qa`` with
``evidence`` dia_ids) is read too: one store per conversation, every turn indexed as
``"<speaker>: <text>"``, all its questions asked of it (as of its last session's date);
units are turns (gold: the evidence dia_ids) and sessions (those holding the evidence);
types are ``locomo-<category>``. Questions without evidence are skipped.

Usage::

    .venv/bin/python bench/retrieval.py [DATA.json(.gz)] [--limit N] [--all-turns] [--json OUT]
        [--encoder torch|onnx|onnx-int8] [--model all-MiniLM-L6-v2|all-mpnet-base-v2]

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
import re
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from memory.manager import MemoryManager
from memory.vectors.embeddings import CachedEmbedder, SentenceTransformerEmbedder

DEFAULT_DATA = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "longmemeval_s_dev100.json.gz")  # ../shared/data
MODES = ("text", "vector", "hybrid")
METRICS = ("recall_any@5", "recall_any@10", "recall_all@5", "ndcg@10", "mrr")
DEPTH = 50  # ranked units kept per query


def load(path: str) -> list[dict[str, Any]]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
        data = json.load(fh)
    if not isinstance(data, list):
        raise SystemExit(f"{path}: expected a JSON list of LongMemEval or LoCoMo records")
    return data


def parse_date(s: str) -> datetime:
    for fmt in ("%Y/%m/%d (%a) %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d",
                "%I:%M %p on %d %B, %Y", "%I:%M %p on %d %b, %Y"):  # fmt: skip  (the last two: LoCoMo)
        try:
            return datetime.strptime(s.strip(), fmt).replace(tzinfo=UTC)
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


@dataclass
class Turn:
    role: str
    content: str
    unit: tuple[str, Any]  # (session id, turn index or LoCoMo dia_id)
    indexed: bool  # stored in the memory (user turns only, unless all turns are)


@dataclass
class Probe:
    qid: str
    qtype: str
    question: str
    now: datetime  # relative dates in the question count from here
    gold_turns: set[tuple[str, Any]]
    gold_sessions: set[str]


@dataclass
class Haystack:
    """One store's worth of data: sessions (date, turns) and the questions asked of it."""

    key: str
    sessions: list[tuple[str, datetime, list[Turn]]]
    probes: list[Probe] = field(default_factory=list)


def haystacks(records: list[dict[str, Any]], *, all_turns: bool = False) -> list[Haystack]:
    """LongMemEval records (one haystack per question) or LoCoMo records (one per
    conversation, all its questions), sessions in date order."""
    if records and "conversation" in records[0] and "qa" in records[0]:
        return [locomo_haystack(r, n) for n, r in enumerate(records)]
    out = []
    for rec in records:
        if str(rec["question_id"]).endswith("_abs"):
            continue
        answer = {str(s) for s in rec["answer_session_ids"]}
        sessions = []
        gold: set[tuple[str, Any]] = set()
        for sid, date, turns in zip(rec["haystack_session_ids"], rec["haystack_dates"],
                                    rec["haystack_sessions"], strict=True):  # fmt: skip
            sid = str(sid)
            sessions.append((sid, parse_date(date), [
                Turn(t["role"], t["content"], (sid, i), all_turns or t["role"] == "user")
                for i, t in enumerate(turns)
            ]))  # fmt: skip
            if sid in answer:
                gold |= {(sid, i) for i, t in enumerate(turns) if t["role"] == "user" and t.get("has_answer")}
        sessions.sort(key=lambda s: s[1])
        probe = Probe(rec["question_id"], rec["question_type"], rec["question"],
                      parse_date(rec["question_date"]), gold, answer)  # fmt: skip
        out.append(Haystack(rec["question_id"], sessions, [probe]))
    return out


_DIA_ID = re.compile(r"D\d+:\d+")


def locomo_haystack(rec: dict[str, Any], n: int) -> Haystack:
    """A LoCoMo conversation (``conversation``: ``speaker_a``, ``speaker_b``, ``session_N``
    lists of ``{speaker, dia_id, text}`` and ``session_N_date_time``; ``qa``: ``question``,
    ``category``, ``evidence`` dia_ids) as one haystack. Every turn is indexed, as
    ``"<speaker>: <text>"`` (a shared photo's caption appended), the first speaker as the user;
    the questions are asked as of the last session's date."""
    conv = rec["conversation"]
    sample = str(rec.get("sample_id", n))
    first = conv.get("speaker_a")
    sessions = []
    for name, turns in conv.items():
        if not re.fullmatch(r"session_\d+", name) or not isinstance(turns, list):
            continue
        sid = f"{sample}:{name}"
        ts = []
        for t in turns:
            body = f"{t.get('speaker', '?')}: {t.get('text', '')}"
            if t.get("blip_caption"):
                body += f" [shares a photo: {t['blip_caption']}]"
            ts.append(Turn("user" if t.get("speaker") == first else "assistant", body,
                           (sid, str(t.get("dia_id"))), True))  # fmt: skip
        sessions.append((sid, parse_date(str(conv.get(f"{name}_date_time", ""))), ts))
    sessions.sort(key=lambda s: (s[1], int(s[0].rsplit("_", 1)[1])))
    where = {t.unit[1]: t.unit for _, _, ts in sessions for t in ts}
    now = max((d for _, d, _ in sessions), default=datetime(1970, 1, 1, tzinfo=UTC))
    h = Haystack(f"locomo:{sample}", sessions)
    for i, qa in enumerate(rec.get("qa", [])):
        # Evidence is a list of dia_ids, sometimes several in one string ("D1:3; D2:5").
        ids = _DIA_ID.findall(" ".join(map(str, qa.get("evidence") or [])))
        gold = {where[d] for d in ids if d in where}
        if gold:
            h.probes.append(Probe(f"{sample}:{i}", f"locomo-{qa.get('category', '?')}", str(qa["question"]),
                                  now, gold, {u[0] for u in gold}))  # fmt: skip
    return h


def messages_of(h: Haystack) -> tuple[list[dict[str, Any]], list[tuple[str, Any]]]:
    """The recall messages a haystack is stored as (its indexed turns, the n-th turn of a
    session n seconds after the session's date), and each one's unit."""
    msgs: list[dict[str, Any]] = []
    units: list[tuple[str, Any]] = []
    for sid, base, turns in h.sessions:
        for t, turn in enumerate(turns):
            if not turn.indexed:
                continue
            msgs.append(
                {"content": turn.content, "role": turn.role, "session_id": sid,
                 "created_at": base + timedelta(seconds=t), "metadata": {"turn": t}}
            )
            units.append(turn.unit)
    return msgs, units


def store_name(h: Haystack) -> str:
    return re.sub(r"[^\w.-]", "_", h.key)


def make_embedder(encoder: str, threads: int, cache: str | None, model: str | None = None) -> Any:
    """The benchmark's embedder: sentence-transformers (torch) or the ONNX graph (fp32, int8)
    of ``model`` (default MiniLM), behind the disk cache unless ``cache`` is None."""
    from memory.vectors.models import DEFAULT_MODEL, canonical, model_dir

    model_path = None if model is None or canonical(model) == DEFAULT_MODEL else model_dir(model)
    base: Any = SentenceTransformerEmbedder(model_path, threads=threads)
    if encoder != "torch":
        from memory.vectors.onnx import OnnxEmbedder

        base = OnnxEmbedder(model_path, threads=threads, quantize=encoder == "onnx-int8")
    return base if cache is None else CachedEmbedder(base, cache)


def run_haystack(h: Haystack, embedder: Any, workdir: Path, *, all_turns: bool = False) -> list[dict[str, Any]]:
    """Ingest one haystack into a fresh store; rank turns and sessions in every mode, for
    each of its questions."""
    msgs, units = messages_of(h)
    t0 = time.perf_counter()
    mem = MemoryManager.open(workdir / store_name(h), embedder=embedder, background_embed=False)
    rows = []
    try:
        stored = mem.recall.append_many(msgs)
        unit_of = {m.id: u for m, u in zip(stored, units, strict=True)}
        t1 = time.perf_counter()
        mem.embed_pending()
        t2 = time.perf_counter()
        # A LongMemEval store holds user turns only unless --all-turns; then, and on LoCoMo
        # (every turn a unit), turns are ranked among user turns / all turns.
        role = "user" if all_turns and not h.key.startswith("locomo:") else None
        for p in h.probes:
            out: dict[str, Any] = {"qtype": p.qtype, "ingest_s": (t1 - t0) / len(h.probes),
                                   "embed_s": (t2 - t1) / len(h.probes), "turn": {}, "session": {}}  # fmt: skip
            for mode in MODES:
                q0 = time.perf_counter()
                hits = mem.search_recall(p.question, k=DEPTH, mode=mode, role=role, now=p.now)
                turn_rank = [unit_of[x.id] for x in hits]
                sessions = mem.search_sessions(p.question, k=DEPTH, mode=mode, now=p.now)
                out.setdefault("search_s", {})[mode] = time.perf_counter() - q0
                if p.gold_turns:
                    out["turn"][mode] = metrics(turn_rank, p.gold_turns)
                out["session"][mode] = metrics([s.session_id for s in sessions], p.gold_sessions)
            rows.append(out)
    finally:
        mem.close()
    return rows


def summarise(rows: list[tuple[str, dict[str, Any]]], modes: Sequence[str] = MODES) -> dict[str, Any]:
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
                **{m: {k: sum(x[m][k] for x in rs) / len(rs) for k in METRICS} for m in modes},
            }
            for g, rs in groups.items()
        }
    return table


def print_table(table: dict[str, Any], modes: Sequence[str] = MODES) -> None:
    for level, groups in table.items():
        print(f"\n== {level} level ==")
        print(f"{'group':28s} {'n':>3s} {'method':7s} " + " ".join(f"{m:>13s}" for m in METRICS))
        for g in ["overall", *sorted(k for k in groups if k != "overall")]:
            row = groups[g]
            for mode in modes:
                vals = " ".join(f"{row[mode][m]:13.3f}" for m in METRICS)
                flag = ""
                if mode == "hybrid" and "text" in row and "vector" in row:
                    lose = [m for m in METRICS if row["hybrid"][m] + 1e-9 < max(row["text"][m], row["vector"][m])]
                    flag = "  < single on " + ",".join(lose) if lose else "  >= both"
                print(f"{g:28s} {row['n']:3d} {mode:7s} {vals}{flag}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", nargs="?", default=DEFAULT_DATA, help="LongMemEval or LoCoMo JSON(.gz)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N haystacks (LongMemEval: questions)")
    ap.add_argument("--stride", type=int, default=1, help="every STRIDE-th haystack (a spread subset)")
    ap.add_argument("--cache", default=str(Path.home() / ".cache/rlm-memory/bench-embeddings.sqlite"))
    ap.add_argument("--no-cache", action="store_true", help="embed everything afresh")
    ap.add_argument("--threads", type=int, default=1, help="embedding threads")
    ap.add_argument("--encoder", choices=["torch", "onnx", "onnx-int8"], default="torch",
                    help="sentence-transformers (torch), or the ONNX graph in fp32 or int8")
    ap.add_argument("--model", default="all-MiniLM-L6-v2",
                    help="encoder (embed_model): all-MiniLM-L6-v2 or all-mpnet-base-v2 (the mpnet extra)")
    ap.add_argument("--all-turns", action="store_true", help="index assistant turns too")
    ap.add_argument("--json", help="write the summary table here")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    stacks = haystacks(load(args.data), all_turns=args.all_turns)
    stacks = stacks[:: max(1, args.stride)]
    if args.limit:
        stacks = stacks[: args.limit]
    n_questions = sum(len(h.probes) for h in stacks)
    embedder = make_embedder(args.encoder, args.threads, None if args.no_cache else args.cache, args.model)
    rows: list[tuple[str, dict[str, Any]]] = []
    totals: dict[str, float] = defaultdict(float)
    with tempfile.TemporaryDirectory(prefix="rlmem-bench-") as tmp:
        for n, h in enumerate(stacks, 1):
            for r in run_haystack(h, embedder, Path(tmp), all_turns=args.all_turns):
                rows.append((r["qtype"], r))
                totals["ingest_s"] += r["ingest_s"]
                totals["embed_s"] += r["embed_s"]
                for mode, s in r["search_s"].items():
                    totals[f"search_{mode}_s"] += s
            print(f"\r{n}/{len(stacks)} haystacks", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    table = summarise(rows)
    wall = time.perf_counter() - t_start
    print(f"data: {args.data}  questions: {n_questions} in {len(stacks)} haystacks "
          "(LongMemEval abstention questions and LoCoMo questions without evidence skipped)")
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
        Path(args.json).write_text(json.dumps({"data": args.data, "questions": n_questions,
                                               "seconds": wall, "table": table}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
