"""End-to-end question answering over memory: RLM over memory against retrieval, full context
and the Agent, judged per question type.

Usage::

    ANTHROPIC_API_KEY=... .venv/bin/python bench/qa.py DATA.json(.gz) \
        [--methods rlm,retrieval,full,agent] [--limit N] [--budget-usd X] \
        [--model M] [--sub-model M] [--judge-model M] [--base-url URL] [--json OUT]

``DATA`` is LongMemEval (the oracle file or ``_S`` haystacks) or any LoCoMo-format file.

Rules this module keeps:

* One store per haystack (a LongMemEval question's sessions, a LoCoMo conversation), built
  once through ``MemoryManager`` with each session's date as its messages' time, and reused by
  every method and every later run (``--stores``). Methods that can write to memory (``rlm``,
  ``agent``) work on a copy, so no method sees another's traces.
* Methods: ``rlm`` (``agents.ask``: the root model explores memory in the REPL), ``retrieval``
  (one call with the top ``--k`` hybrid hits in the prompt), ``full`` (one call with the whole
  haystack, when it fits in ``--full-max-tokens``; otherwise the question is marked
  ``skipped: does not fit``), ``agent`` (``Agent`` with its memory tools, one step).
* Every answer and every verdict is cached by method, question, model and settings
  (``--cache``, SQLite), so a crash, a budget stop or a rerun costs nothing twice.
* Tokens and cost are counted by wrapping each model (``Metered``): every call of a method,
  the RLM's sub-calls included, is in its question's figures. ``--budget-usd`` stops before
  the next uncached call once the run has spent that much (answers and judging together).
* Judging follows ``qa_judge``: a per-type rubric, abstention questions included. A method
  that failed (an error from the model or the store) is counted wrong without asking the judge.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from qa_judge import judge_prompt, parse_verdict

from rlm_core.lm import LM, LMResponse, Usage, content_text, count_tokens

METHODS = ("rlm", "retrieval", "full", "agent")
AGENT = "qa"
ANSWER_SYSTEM = (
    "You answer questions about past conversations with a user. Use only the conversation "
    "excerpts given. If they do not contain the answer, say that the information is not "
    "available. Answer briefly."
)


@dataclass
class Question:
    qid: str
    qtype: str
    question: str
    answer: str
    date: str
    haystack: str  # key of its haystack
    abstention: bool


@dataclass
class Session:
    session_id: str
    date: datetime
    turns: list[tuple[str, str]]  # (role, text)


@dataclass
class Data:
    questions: list[Question] = field(default_factory=list)
    haystacks: dict[str, list[Session]] = field(default_factory=dict)


def parse_date(s: str) -> datetime:
    for fmt in ("%Y/%m/%d (%a) %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d",
                "%I:%M %p on %d %B, %Y", "%I:%M %p on %d %b, %Y"):  # fmt: skip
        try:
            return datetime.strptime(s.strip(), fmt).replace(tzinfo=UTC)
        except (ValueError, AttributeError):
            continue
    return datetime(1970, 1, 1, tzinfo=UTC)


def load(path: str | Path) -> Data:
    """LongMemEval or LoCoMo records as questions over haystacks."""
    p = str(path)
    opener: Any = gzip.open if p.endswith(".gz") else open
    with opener(p, "rt", encoding="utf-8") as fh:
        records = json.load(fh)
    if not isinstance(records, list) or not records or not isinstance(records[0], dict):
        raise SystemExit(f"{p}: expected a JSON list of LongMemEval or LoCoMo records")
    data = Data()
    if "haystack_sessions" in records[0]:
        for r in records:
            key = f"lme:{r['question_id']}"
            data.haystacks[key] = sorted(
                (Session(sid, parse_date(d), [(t["role"], t["content"]) for t in turns])
                 for sid, d, turns in zip(r["haystack_session_ids"], r["haystack_dates"],
                                          r["haystack_sessions"], strict=True)),
                key=lambda s: s.date,
            )  # fmt: skip
            data.questions.append(Question(
                r["question_id"], r["question_type"], r["question"], str(r["answer"]),
                r.get("question_date", ""), key, r["question_id"].endswith("_abs"),
            ))  # fmt: skip
    elif "conversation" in records[0] and "qa" in records[0]:
        for n, r in enumerate(records):
            sample = str(r.get("sample_id", n))
            conv = r["conversation"]
            a = conv.get("speaker_a", "A")
            sessions = []
            for name, turns in conv.items():
                if not name.startswith("session_") or not isinstance(turns, list):
                    continue
                date = parse_date(str(conv.get(f"{name}_date_time", "")))
                sessions.append(Session(f"{sample}:{name}", date, [
                    ("user" if t.get("speaker") == a else "assistant",
                     f"{t.get('speaker', '?')}: {t.get('text', '')}") for t in turns
                ]))  # fmt: skip
            key = f"locomo:{sample}"
            data.haystacks[key] = sorted(sessions, key=lambda s: (s.date, s.session_id))
            for i, qa in enumerate(r["qa"]):
                cat = int(qa.get("category", 0))
                gold = qa.get("answer", qa.get("adversarial_answer", ""))
                data.questions.append(Question(
                    f"{sample}:{i}", f"locomo-{cat}", qa["question"], str(gold), "", key,
                    cat == 5,
                ))  # fmt: skip
    else:
        raise SystemExit(
            f"{p}: records are neither LongMemEval (haystack_sessions) nor LoCoMo "
            "(conversation + qa)"
        )
    return data


class Metered:
    """An LM wrapper that adds up the usage and cost of every call through it."""

    def __init__(self, lm: LM) -> None:
        self.lm = lm
        self.name = lm.name
        self.usage = Usage()
        self.cost = 0.0
        self._lock = threading.Lock()

    def _count(self, r: LMResponse) -> LMResponse:
        with self._lock:
            self.usage = self.usage + r.usage
            self.cost += r.cost_usd
        return r

    def complete(self, messages: Sequence[Any], **kw: Any) -> LMResponse:
        return self._count(self.lm.complete(messages, **kw))

    async def acomplete(self, messages: Sequence[Any], **kw: Any) -> LMResponse:
        return self._count(await self.lm.acomplete(messages, **kw))

    def snapshot(self) -> tuple[int, float]:
        with self._lock:
            return self.usage.total_tokens, self.cost


class Cache:
    """Answers and verdicts by key, in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path))
        self.db.execute("CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, value TEXT)")

    def get(self, key: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT value FROM entries WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO entries VALUES (?, ?)", (key, json.dumps(value))
            )

    def close(self) -> None:
        self.db.close()


def render_session(s: Session) -> str:
    lines = [f"[session {s.session_id}, {s.date:%Y-%m-%d %H:%M}]"]
    lines += [f"{role}: {text}" for role, text in s.turns]
    return "\n".join(lines)


def question_text(q: Question) -> str:
    return f"{q.question}\n(Today is {q.date}.)" if q.date else q.question


class Runner:
    """Builds stores and runs one method on one question."""

    def __init__(self, data: Data, stores: Path, embedder: Any, *, k: int, full_max_tokens: int,
                 max_iterations: int) -> None:  # fmt: skip
        self.data, self.stores, self.embedder = data, stores, embedder
        self.k, self.full_max_tokens, self.max_iterations = k, full_max_tokens, max_iterations

    def store(self, key: str) -> Path:
        from memory.manager import MemoryManager

        path = self.stores / hashlib.sha256(key.encode()).hexdigest()[:16]
        if (path / "built").exists():
            return path
        shutil.rmtree(path, ignore_errors=True)
        mem = MemoryManager.open(path, embedder=self.embedder, agent_id=AGENT)
        try:
            for s in self.data.haystacks[key]:
                rows = [{"content": text, "role": role, "agent_id": AGENT, "created_at": s.date,
                         "session_id": s.session_id} for role, text in s.turns if text.strip()]  # fmt: skip
                if rows:
                    mem.recall.append_many(rows)
            mem.embed_pending()
        finally:
            mem.close()
        (path / "built").write_text(key)
        return path

    @contextlib.contextmanager
    def opened(self, key: str, copy: bool) -> Any:
        from memory.manager import MemoryManager

        src = self.store(key)
        tmp = Path(tempfile.mkdtemp(prefix="qa-")) if copy else None
        path = src
        if tmp is not None:
            path = tmp / "store"
            shutil.copytree(src, path)
        mem = MemoryManager.open(path, embedder=self.embedder, agent_id=AGENT)
        try:
            yield mem
        finally:
            mem.close()
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)

    def answer(self, method: str, q: Question, lm: Metered, sub: Metered) -> str:
        if method == "full":
            text = "\n\n".join(render_session(s) for s in self.data.haystacks[q.haystack])
            if count_tokens(text) > self.full_max_tokens:
                raise _Skip("does not fit")
            return self._one_call(lm, text, q)
        if method == "retrieval":
            with self.opened(q.haystack, copy=False) as mem:
                hits = mem.search(q.question, tiers=["recall"], k=self.k)
            text = "\n".join(
                f"[{h.created_at:%Y-%m-%d %H:%M}, session {h.session_id}] {h.role}: {h.text}"
                if h.created_at
                else f"{h.role}: {h.text}"
                for h in hits
            )
            return self._one_call(lm, text, q)
        if method == "rlm":
            from agents.ask import ask
            from rlm_core.limits import Limits

            with self.opened(q.haystack, copy=True) as mem:
                try:
                    result = ask(mem, question_text(q), root=lm, sub=sub, agent_id=AGENT,
                                 limits=Limits(max_iterations=self.max_iterations))  # fmt: skip
                except Exception as e:
                    partial = getattr(e, "result", None)
                    if partial is None:
                        raise
                    return str(partial.answer)
                return str(result.answer)
        if method == "agent":
            from agents.agent.core import Agent

            with self.opened(q.haystack, copy=True) as mem:
                agent = Agent.create(AGENT, mem, lm, sub_model=sub)
                try:
                    return agent.step(question_text(q)).text
                finally:
                    agent.close()
        raise SystemExit(f"unknown method {method!r}: choose from {', '.join(METHODS)}")

    def _one_call(self, lm: Metered, excerpts: str, q: Question) -> str:
        prompt = f"Conversation excerpts:\n{excerpts}\n\nQuestion: {question_text(q)}"
        return content_text(
            lm.complete(
                [{"role": "user", "content": prompt}], system=ANSWER_SYSTEM, max_tokens=512
            ).text
        )


class _Skip(Exception):
    pass


def run_benchmark(
    data_path: str | Path,
    *,
    lm: LM,
    judge: LM,
    sub: LM | None = None,
    methods: Sequence[str] = METHODS,
    limit: int | None = None,
    budget_usd: float | None = None,
    cache_path: str | Path,
    stores_dir: str | Path,
    embedder: Any = None,
    k: int = 10,
    full_max_tokens: int = 150_000,
    max_iterations: int = 12,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
) -> dict[str, Any]:
    """Answer and judge ``limit`` questions by each method; the report as a dict."""
    from memory.vectors.embeddings import SentenceTransformerEmbedder

    data = load(data_path)
    questions = data.questions[:limit] if limit else data.questions
    runner = Runner(data, Path(stores_dir), embedder or SentenceTransformerEmbedder(),
                    k=k, full_max_tokens=full_max_tokens, max_iterations=max_iterations)  # fmt: skip
    mlm, msub, mjudge = Metered(lm), Metered(sub or lm), Metered(judge)
    cache = Cache(cache_path)
    settings = f"k={k};full={full_max_tokens};it={max_iterations};sub={msub.name}"
    records: list[dict[str, Any]] = []
    stopped = ""
    try:
        for q in questions:
            for method in methods:
                akey = f"answer|{method}|{q.qid}|{mlm.name}|{settings}"
                rec = cache.get(akey)
                if rec is None:
                    if budget_usd is not None and _spent(mlm, msub, mjudge) >= budget_usd:
                        stopped = f"budget of ${budget_usd:.2f} reached"
                        break
                    t0, (tok0, c0) = time.perf_counter(), _totals(mlm, msub)
                    rec = {"method": method, "qid": q.qid, "qtype": q.qtype, "answer": "",
                           "skipped": "", "error": ""}  # fmt: skip
                    try:
                        rec["answer"] = runner.answer(method, q, mlm, msub)
                    except _Skip as e:
                        rec["skipped"] = str(e)
                    except Exception as e:  # a failed method is a wrong answer, recorded
                        rec["error"] = f"{type(e).__name__}: {e}"[:500]
                    tok1, c1 = _totals(mlm, msub)
                    rec.update(tokens=tok1 - tok0, cost_usd=c1 - c0,
                               seconds=round(time.perf_counter() - t0, 3))  # fmt: skip
                    cache.put(akey, rec)
                rec = dict(rec)
                if rec["error"]:  # a method that failed answered nothing: wrong, not judged
                    rec.update(correct=False, judge_reply="")
                elif not rec["skipped"]:
                    jkey = f"judge|{akey}|{mjudge.name}"
                    verdict = cache.get(jkey)
                    if verdict is None:
                        if budget_usd is not None and _spent(mlm, msub, mjudge) >= budget_usd:
                            stopped = f"budget of ${budget_usd:.2f} reached"
                            break
                        reply = mjudge.complete([{"role": "user", "content": judge_prompt(
                            q.question, q.answer, rec["answer"] or "(no answer)", q.qtype,
                            q.abstention)}], max_tokens=10).text  # fmt: skip
                        verdict = {"correct": parse_verdict(reply), "judge_reply": reply[:200]}
                        cache.put(jkey, verdict)
                    rec.update(verdict)
                records.append(rec)
            if stopped:
                log(f"stopped: {stopped}")
                break
    finally:
        cache.close()
    return {"data": str(data_path), "model": mlm.name, "judge": mjudge.name,
            "methods": list(methods), "questions": len(questions), "stopped": stopped,
            "spent_usd": round(_spent(mlm, msub, mjudge), 6), "summary": summarise(records),
            "records": records}  # fmt: skip


def _totals(*meters: Metered) -> tuple[int, float]:
    tok = cost = 0.0
    for m in {id(x): x for x in meters}.values():
        t, c = m.snapshot()
        tok, cost = tok + t, cost + c
    return int(tok), cost


def _spent(*meters: Metered) -> float:
    return _totals(*meters)[1]


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per method: accuracy overall and per type, mean tokens, cost and seconds per question."""
    out: dict[str, Any] = {}
    by_method: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_method[r["method"]].append(r)
    for method, rs in by_method.items():
        judged = [r for r in rs if not r["skipped"] and "correct" in r]
        types: dict[str, list[bool]] = defaultdict(list)
        for r in judged:
            types[r["qtype"]].append(bool(r["correct"]))
        n = max(1, len(judged))
        out[method] = {
            "judged": len(judged), "skipped": sum(1 for r in rs if r["skipped"]),
            "errors": sum(1 for r in rs if r["error"]),
            "accuracy": round(sum(r["correct"] for r in judged) / n, 4) if judged else None,
            "per_type": {t: round(sum(v) / len(v), 4) for t, v in sorted(types.items())},
            "tokens_per_q": round(sum(r["tokens"] for r in judged) / n, 1),
            "cost_per_q_usd": round(sum(r["cost_usd"] for r in judged) / n, 6),
            "seconds_per_q": round(sum(r["seconds"] for r in judged) / n, 3),
        }  # fmt: skip
    return out


def table(report: dict[str, Any]) -> str:
    summary = report["summary"]
    types = sorted({t for s in summary.values() for t in s["per_type"]})
    head = ["method", "judged", "accuracy", *types, "tokens/q", "$/q", "s/q"]
    rows = [head, ["---"] * len(head)]
    for method, s in summary.items():
        acc = "-" if s["accuracy"] is None else f"{s['accuracy']:.3f}"
        rows.append([method, str(s["judged"]), acc,
                     *[f"{s['per_type'][t]:.3f}" if t in s["per_type"] else "-" for t in types],
                     f"{s['tokens_per_q']:.0f}", f"{s['cost_per_q_usd']:.4f}",
                     f"{s['seconds_per_q']:.1f}"])  # fmt: skip
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def _build_lm(model: str | None, base_url: str | None) -> LM:
    if base_url:
        from rlm_core.lm import OpenAICompatibleLM

        return OpenAICompatibleLM(model or "local", base_url=base_url)
    from rlm_core.lm import AnthropicLM

    return AnthropicLM(model) if model else AnthropicLM()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--limit", type=int)
    ap.add_argument("--budget-usd", type=float)
    ap.add_argument("--model")
    ap.add_argument("--sub-model")
    ap.add_argument("--judge-model")
    ap.add_argument("--base-url", help="an OpenAI-compatible server for every model")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--full-max-tokens", type=int, default=150_000)
    ap.add_argument("--max-iterations", type=int, default=12)
    ap.add_argument("--cache", default=str(Path.home() / ".cache/rlm-memory/qa-cache.sqlite"))
    ap.add_argument("--stores", default=str(Path.home() / ".cache/rlm-memory/qa-stores"))
    ap.add_argument("--json", help="write the whole report here")
    args = ap.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        ap.error(f"unknown method {bad[0]!r}: choose from {', '.join(METHODS)}")
    lm = _build_lm(args.model, args.base_url)
    sub = _build_lm(args.sub_model, args.base_url) if args.sub_model else None
    judge = _build_lm(args.judge_model, args.base_url) if args.judge_model else lm
    report = run_benchmark(
        args.data,
        lm=lm,
        judge=judge,
        sub=sub,
        methods=methods,
        limit=args.limit,
        budget_usd=args.budget_usd,
        cache_path=args.cache,
        stores_dir=args.stores,
        k=args.k,
        full_max_tokens=args.full_max_tokens,
        max_iterations=args.max_iterations,
    )
    print(table(report))
    print(f"\n{report['questions']} questions; spent ${report['spent_usd']:.4f} this run"
          + (f"; {report['stopped']}" if report["stopped"] else ""))  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
