"""What a crash-harness child process does until it is killed.

Rules this module keeps:

* A workload runs forever (the harness ends it with SIGKILL). It writes ``{"ready": ...}`` to
  its acknowledgement file once the store is open, then one line per call that *returned*:
  the line is written and fsync'd after the call, so every acknowledged item is one the
  store promised to keep. A kill between the call and the line only loses the line.
* Every generated text is unique and self-describing (``c<attempt> n<seq>`` or
  ``c<attempt> b<batch> i<i>/<size>``), so the checker can tell what each row should be and
  whether a batch is complete, without the child's memory.
* Models are faked (``FunctionLM``); stores, Chroma and (for ``archival_model``) the
  embedding model are real.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

__all__ = ["VOCAB", "Acks", "make_text", "run_workload"]

VOCAB = (
    "alpha", "beta", "gamma", "delta", "invoice", "teal", "amber", "Zürich", "naïve",
    "日本語", "ελληνικά", "emoji😀", "O'Brien", "AND", "NOT", "x*", "-minus", "key:value",
    "\"quoted\"", "(paren", "tab\there", "line\nbreak",
)  # fmt: skip


class Acks:
    """Append-only acknowledgement file; each line is durable before ``write`` returns."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, obj: dict[str, Any]) -> None:
        os.write(self.fd, (json.dumps(obj) + "\n").encode())
        os.fsync(self.fd)


def make_text(rng: random.Random, head: str, *, big: float = 0.03) -> str:
    words = " ".join(rng.choice(VOCAB) for _ in range(rng.randint(1, 25)))
    tail = " " + "filler " * 15_000 if rng.random() < big else ""
    return f"{head} {words}{tail}"


def _manager(store: Path, model: bool = False, chroma: bool = True) -> Any:
    from memory.manager import MemoryManager
    from memory.vectors.embeddings import HashEmbedder

    mem = MemoryManager.open(
        store, embedder=None if model else HashEmbedder(), background_embed=True
    )
    if chroma:  # open the index before "ready", so kills land in index writes, not in imports
        _ = mem.archival.index.collection, mem.recall_search.index.collection  # type: ignore[union-attr]
    return mem


def _recall(
    store: Path, attempt: int, rng: random.Random, acks: Acks, *, batch: bool, pg_url: str
) -> None:
    if pg_url:
        from memory.db import Database
        from memory.recall.log import RecallLog

        log = RecallLog(Database.open(pg_url))
    else:
        log = _manager(store, chroma=False).recall
    acks.write({"ready": os.getpid()})
    n = 0
    while True:
        n += 1
        if not batch:
            content = make_text(rng, f"c{attempt} n{n}")
            m = log.append(
                content, role=rng.choice(("user", "assistant")), session_id=f"s{attempt}"
            )
            acks.write({"ids": [m.id], "cs": [content]})
            continue
        size = rng.randint(1, 40)
        items = [
            {
                "content": make_text(rng, f"c{attempt} b{n} i{i}/{size}", big=0.005),
                "session_id": f"s{attempt}",
            }
            for i in range(size)
        ]
        ms = log.append_many(items)
        acks.write({"ids": [m.id for m in ms], "cs": [it["content"] for it in items]})


def _archival(store: Path, attempt: int, rng: random.Random, acks: Acks, *, model: bool) -> None:
    mem = _manager(store, model=model)
    docs = store / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    acks.write({"ready": os.getpid()})
    n = 0
    while True:
        n += 1
        if rng.random() < 0.7:
            size = rng.randint(1, 30)
            texts = [make_text(rng, f"c{attempt} b{n} i{i}/{size}", big=0.0) for i in range(size)]
            ids = mem.archival.insert_many(
                [{"text": t, "tags": [f"t{attempt}", f"b{n}"]} for t in texts]
            )
            acks.write({"ids": ids, "cs": texts})
        else:
            path = docs / f"c{attempt}-f{n}.md"
            words = [
                f"c{attempt}f{n}w{i} {rng.choice(VOCAB)}" for i in range(rng.randint(50, 1500))
            ]
            path.write_text("# doc\n\n" + " ".join(words) + "\n", encoding="utf-8")
            mem.archival.ingest(path, chunk_tokens=64, overlap=8, progress=False)
            acks.write({"file": str(path.resolve())})


def _agent_lm() -> Any:
    from rlm_core.lm import FunctionLM, LMRequest, LMResponse, ToolCall

    def reply(req: LMRequest) -> LMResponse | str:
        if not req.tools:  # a summary request
            return "Summary: the user sent numbered messages."
        last = req.messages[-1]
        if last.get("role") == "user" and isinstance(last.get("content"), str):
            tag = last["content"].split(" ")[:2]
            n = int(tag[1][1:]) if len(tag) == 2 and tag[1][1:].isdigit() else 0
            if n % 3 == 0:
                return LMResponse(
                    text="", tool_calls=[ToolCall(f"call{n}", "archival_insert",
                                                  {"text": f"fact {' '.join(tag)}", "tags": ["agent"]})],
                )  # fmt: skip
            return f"r {' '.join(tag)}"
        # after a tool result: answer in text, naming the step the tool ran for
        for m in reversed(req.messages):
            if m.get("role") == "user" and isinstance(m.get("content"), str):
                return f"r {' '.join(m['content'].split(' ')[:2])}"
        return "r ?"

    return FunctionLM(reply)


def _agent(store: Path, attempt: int, rng: random.Random, acks: Acks) -> None:
    from agents.agent.core import Agent
    from memory.errors import NotFoundError

    mem = _manager(store)
    lm = _agent_lm()
    try:
        agent = Agent.open("a", mem, lm)
    except NotFoundError:
        agent = Agent.create("a", mem, lm, context_budget_tokens=600, summary_limit=400)
    acks.write({"ready": os.getpid()})
    n = 0
    while True:
        n += 1
        text = make_text(rng, f"c{attempt} n{n}", big=0.0)
        reply = agent.step(text)
        acks.write(
            {"step": n, "user": text, "reply": reply.text, "ids": [m.id for m in reply.messages]}
        )


def run_workload(
    scenario: str, store: Path, ack_path: Path, seed: int, attempt: int, pg_url: str = ""
) -> None:
    rng = random.Random(seed * 1_000_003 + attempt)
    acks = Acks(ack_path)
    if scenario == "recall_single":
        _recall(store, attempt, rng, acks, batch=False, pg_url="")
    elif scenario == "recall_batch":
        _recall(store, attempt, rng, acks, batch=True, pg_url="")
    elif scenario == "recall_pg":
        _recall(store, attempt, rng, acks, batch=attempt % 2 == 1, pg_url=pg_url)
    elif scenario in ("archival", "archival_model"):
        _archival(store, attempt, rng, acks, model=scenario == "archival_model")
    elif scenario == "agent_step":
        _agent(store, attempt, rng, acks)
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
