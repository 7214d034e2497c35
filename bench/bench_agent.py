"""Overhead of an agent step, against appending the same messages to recall directly.

Usage::

    .venv/bin/python bench/bench_agent.py [--history 100000] [--steps 50]

A store holds ``--history`` earlier messages of one agent (in sessions of 100). Each step
of a scripted model (no model time) compiles the context (blocks, statistics, buffer), calls
the model once and writes two messages; the baseline appends the same two messages with
``RecallLog.append`` in the same run. Reported: median and p95 per step, the ratio to the
baseline, and the same with overflow (a small context budget: summarising steps included).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.agent.core import Agent  # noqa: E402
from memory.manager import MemoryManager  # noqa: E402
from memory.vectors.embeddings import HashEmbedder  # noqa: E402
from rlm_core.lm import ScriptedLM  # noqa: E402


def _fill(mem: MemoryManager, agent_id: str, n: int) -> None:
    """``n`` messages filed under ``agent_id`` (sessions of 100)."""
    batch = []
    for i in range(n):
        batch.append({"content": f"earlier message {i} about topic {i % 97} " + "filler " * 12,
                      "role": "user" if i % 2 == 0 else "assistant", "agent_id": agent_id,
                      "session_id": f"s{i // 100}"})
        if len(batch) == 10_000:
            mem.recall.append_many(batch)
            batch = []
    if batch:
        mem.recall.append_many(batch)


def _pct(ts: list[float], p: float) -> float:
    ts = sorted(ts)
    return ts[min(len(ts) - 1, round(p * (len(ts) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--history", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        mem = MemoryManager.open(Path(tmp) / "store", embedder=HashEmbedder(), background_embed=False,
                                 embed_recall=False)
        try:
            t0 = time.perf_counter()
            _fill(mem, "bench-own", args.history)
            print(f"filled {args.history} messages in {time.perf_counter() - t0:.1f} s")
            rows = {}
            for label, name, budget in (
                ("agent step, new agent", "bench-new", 32_000),
                ("agent step, overflowing", "bench-small", 1_500),
                (f"agent step, {args.history} own messages", "bench-own", 32_000),
            ):
                agent = Agent.create(name, mem, ScriptedLM(default="an answer of a few words"),
                                     tools=(), context_budget_tokens=budget)
                times = []
                for i in range(args.steps):
                    s = time.perf_counter()
                    agent.step(f"step {i}: " + "words " * 20)
                    times.append(time.perf_counter() - s)
                rows[label] = times
            base = []
            for i in range(args.steps):
                s = time.perf_counter()
                mem.recall.append(f"step {i}: " + "words " * 20, agent_id="base", session_id="b")
                mem.recall.append("an answer of a few words", role="assistant", agent_id="base", session_id="b")
                base.append(time.perf_counter() - s)
            rows["baseline: 2 x RecallLog.append"] = base
            b = statistics.median(base)
            print(f"{'':34} {'median ms':>10} {'p95 ms':>8} {'x baseline':>11}")
            for label, ts in rows.items():
                med = statistics.median(ts)
                print(f"{label:34} {med * 1e3:10.1f} {_pct(ts, 0.95) * 1e3:8.1f} {med / b:11.1f}")
        finally:
            mem.close()


if __name__ == "__main__":
    main()
