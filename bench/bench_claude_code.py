"""Claude Code capture: hook latency per event and import throughput, on a 5,000-message session.

Usage::

    .venv/bin/python bench/bench_claude_code.py [--messages 5000] [--runs 15]

All in one run, each figure next to its baseline:

* **Import throughput**: reading the transcript with ``json.loads`` alone (the floor), then
  ``read_file`` (parsing into typed records), then a first import into a fresh store (parse,
  sort, store with keys, full-text index), then a re-import (everything already present).
* **Hook latency** (p50/p95 over ``--runs`` calls, each a subprocess fed the hook JSON on
  stdin, as Claude Code runs it) for Stop, SubagentStop, PreCompact and SessionEnd while the
  session grows by 20 events between calls, and SessionStart (prepared context, and computed
  on ``resume``); baseline: starting the same Python with ``-c pass``. The capture hooks hand
  the import to a detached worker: its time (``--foreground``, the same growth) is reported
  as well. The SessionStart context's size is reported in tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from cc_fixtures import CWD, SID, coding_session  # noqa: E402

from agents.integrations.transcripts import import_paths, read_file  # noqa: E402
from memory.manager import MemoryManager  # noqa: E402
from memory.vectors.embeddings import HashEmbedder  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _pct(xs: list[float]) -> tuple[float, float]:
    s = sorted(xs)
    return statistics.median(s), s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]


def _timed(argv: list[str], stdin: str = "") -> float:
    t = time.perf_counter()
    subprocess.run(argv, input=stdin, capture_output=True, text=True, env=ENV, timeout=300, check=True)
    return time.perf_counter() - t


def _settled(store: Path, path: Path, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            rec = json.loads((store / "claude-code" / "offsets.json").read_text())[str(path)]
            if rec.get("size") == path.stat().st_size:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)


def throughput(path: Path, n: int, work: Path) -> None:
    raw = path.read_bytes()
    t = time.perf_counter()
    for line in raw.splitlines():
        json.loads(line)
    base = time.perf_counter() - t
    t = time.perf_counter()
    reading = read_file(path)
    parse = time.perf_counter() - t
    mem = MemoryManager.open(work / "tp-store", embedder=HashEmbedder(), background_embed=False)
    t = time.perf_counter()
    first = import_paths(mem, [path])[0]
    store = time.perf_counter() - t
    t = time.perf_counter()
    again = import_paths(mem, [path])[0]
    rerun = time.perf_counter() - t
    mem.close()
    # the same rows appended with no keys: the cost of the store itself (FTS, queue), no dedup
    plain = MemoryManager.open(work / "plain-store", embedder=HashEmbedder(), background_embed=False)
    rows = [{"content": m.content, "role": m.role, "session_id": m.session_id or "s", "created_at": m.created_at,
             "metadata": m.metadata, "tool_name": m.tool_name, "tool_args": m.tool_args} for m in reading.messages]
    t = time.perf_counter()
    plain.recall.append_many(rows)
    bare = time.perf_counter() - t
    plain.close()
    mb = len(raw) / 1e6
    print(f"transcript: {n} events, {len(reading.messages)} records, {mb:.1f} MB")
    print(f"  json.loads alone      {base * 1e3:8.1f} ms  {n / base:10,.0f} events/s  (baseline)")
    print(f"  read_file (parse)     {parse * 1e3:8.1f} ms  {n / parse:10,.0f} events/s  x{parse / base:.1f}")
    print(f"  append_many, no keys  {bare * 1e3:8.1f} ms  {n / bare:10,.0f} events/s  x{bare / base:.1f}"
          "  (the store's own cost, parsed rows)")
    print(f"  first import (store)  {store * 1e3:8.1f} ms  {n / store:10,.0f} events/s  x{store / base:.1f}"
          f"  ({first.messages} imported)")
    print(f"  re-import (all known) {rerun * 1e3:8.1f} ms  {n / rerun:10,.0f} events/s  x{rerun / base:.1f}"
          f"  ({again.already_present} already present)")


def hooks(lines: list[str], runs: int, work: Path) -> None:
    store = work / "hook-store"
    py = [sys.executable, "-m", "agents.cli.main", "--store", str(store)]
    subprocess.run([*py, "init"], capture_output=True, env=ENV, check=True)
    proj = work / "projects" / "-home-dev-shop"
    proj.mkdir(parents=True)
    path = proj / f"{SID}.jsonl"
    start = len(lines) - (runs + 1) * 20 * 2
    path.write_text("\n".join(lines[:start]) + "\n", encoding="utf-8")
    base = [_timed([sys.executable, "-c", "pass"]) for _ in range(runs)]
    b50, b95 = _pct(base)
    print(f"hook latency (p50 / p95), {runs} calls each; python startup baseline {b50 * 1e3:.0f} / {b95 * 1e3:.0f} ms")
    payload = {"session_id": SID, "transcript_path": str(path), "cwd": CWD, "permission_mode": "default"}
    cold = _timed([*py, "claude-code", "hook", "Stop", "--foreground"],
                  json.dumps({**payload, "hook_event_name": "Stop"}))
    print(f"  first capture of a {start}-event transcript (worker): {cold * 1e3:.0f} ms")
    pos = start

    def grow() -> None:
        nonlocal pos
        with path.open("a", encoding="utf-8") as fh:
            fh.write("\n".join(lines[pos : pos + 20]) + "\n")
        pos += 20

    for event in ("Stop", "SubagentStop", "PreCompact", "SessionEnd"):
        hook_t, worker_t = [], []
        ev = json.dumps({**payload, "hook_event_name": event})
        for _ in range(max(1, runs // 4)):
            grow()
            hook_t.append(_timed([*py, "claude-code", "hook", event], ev))
            _settled(store, path)  # let the detached worker finish before the next growth
            grow()
            worker_t.append(_timed([*py, "claude-code", "hook", event, "--foreground"], ev))
        h50, h95 = _pct(hook_t)
        w50, w95 = _pct(worker_t)
        print(f"  {event:<13} hook {h50 * 1e3:6.0f} / {h95 * 1e3:6.0f} ms (x{h50 / b50:.1f} startup)"
              f"   worker {w50 * 1e3:6.0f} / {w95 * 1e3:6.0f} ms")
    ss = json.dumps({**payload, "session_id": "next", "hook_event_name": "SessionStart", "source": "startup"})
    prepared = [_timed([*py, "claude-code", "hook", "SessionStart"], ss) for _ in range(runs)]
    resume = json.dumps({**payload, "hook_event_name": "SessionStart", "source": "resume"})
    computed = [_timed([*py, "claude-code", "hook", "SessionStart"], resume) for _ in range(max(1, runs // 3))]
    p50, p95 = _pct(prepared)
    c50, c95 = _pct(computed)
    out = subprocess.run([*py, "claude-code", "hook", "SessionStart"], input=ss, capture_output=True, text=True,
                         env=ENV, check=True).stdout
    ctx = json.loads(out)["hookSpecificOutput"]["additionalContext"]
    print(f"  SessionStart  prepared {p50 * 1e3:6.0f} / {p95 * 1e3:6.0f} ms (x{p50 / b50:.1f} startup)"
          f"   computed (resume) {c50 * 1e3:6.0f} / {c95 * 1e3:6.0f} ms")
    print(f"  SessionStart context: {(len(ctx) + 3) // 4} tokens ({len(ctx)} characters)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=12)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        lines = coding_session(a.messages)
        path = work / f"{SID}.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        throughput(path, a.messages, work)
        hooks(lines, a.runs, work)


if __name__ == "__main__":
    main()
