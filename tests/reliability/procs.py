"""Child processes for the concurrency tests and the throughput benchmark.

Rules this module keeps:

* ``writer`` appends unique messages (``w<tag> n<seq>``) and records each returned id in its
  acknowledgement file after the call returns; any exception is printed as one JSON line on
  stdout and the process exits 1, so the parent sees exactly what escaped to the caller.
* ``searcher`` runs full-text search, grep, count and reads until a stop file appears, and
  reports how many calls it made and every error it saw.
* Run as ``python -m reliability.procs writer|searcher ...`` with the repository root and
  ``tests/`` on ``PYTHONPATH`` (``reliability.harness._env`` sets it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Run", "run_writers", "searcher", "writer"]


def _log(store: str, busy_timeout_s: float) -> Any:
    from memory.db import Database
    from memory.manager import MemoryManager
    from memory.vectors.embeddings import HashEmbedder

    if "://" in store:
        from memory.recall.log import RecallLog

        return RecallLog(Database.open(store, busy_timeout_s=busy_timeout_s))
    mem = MemoryManager.open(
        store, embedder=HashEmbedder(), background_embed=False, busy_timeout_s=busy_timeout_s
    )
    return mem.recall


def writer(
    store: str, ack: Path, tag: str, count: int, seconds: float, batch: int, busy_timeout_s: float
) -> dict[str, Any]:
    """Append ``count`` messages (or for ``seconds`` when count is 0), ``batch`` per call."""
    log = _log(store, busy_timeout_s)
    fd = os.open(ack, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    start = Path(str(ack) + ".go")
    while not start.exists():  # all writers start together
        time.sleep(0.005)
    t0 = time.perf_counter()
    n = 0
    while (count and n < count) or (not count and time.perf_counter() - t0 < seconds):
        items = [
            {"content": f"w{tag} n{n + i} some words to index alpha beta", "session_id": f"w{tag}"}
            for i in range(batch)
        ]
        ms = (
            log.append_many(items)
            if batch > 1
            else [log.append(items[0]["content"], session_id=f"w{tag}")]
        )
        os.write(fd, ("".join(f"{m.id}\t{m.content}\n" for m in ms)).encode())
        n += len(ms)
    return {"appended": n, "seconds": time.perf_counter() - t0}


def searcher(store: str, stop: Path) -> dict[str, Any]:
    log = _log(store, 30.0)
    calls = 0
    errors: list[str] = []
    while not stop.exists():
        try:
            log.search_text("alpha words", k=5)
            log.grep(r"n1\d beta", limit=5)
            log.count()
            log.page(limit=20)
            calls += 4
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    return {"calls": calls, "errors": errors}


@dataclass
class Run:
    """What a group of writers (and a searcher) did: per-process reports and acknowledged rows."""

    reports: list[dict[str, Any]]
    acked: list[tuple[int, str]]
    search: dict[str, Any] | None
    seconds: float


def run_writers(
    store: str,
    workdir: Path,
    *,
    writers: int,
    count: int = 0,
    seconds: float = 0.0,
    batch: int = 1,
    busy_timeout_s: float = 30.0,
    search: bool = True,
    timeout: float = 300.0,
) -> Run:
    """Start ``writers`` writer processes together (plus a searcher), wait, collect."""
    from reliability.harness import ROOT, _env

    workdir.mkdir(parents=True, exist_ok=True)
    py = [sys.executable, "-m", "reliability.procs"]
    acks = [workdir / f"w{i}.ack" for i in range(writers)]
    procs = [
        subprocess.Popen([*py, "writer", store, str(a), str(i), str(count), str(seconds), str(batch), str(busy_timeout_s)],
                         env=_env(), cwd=ROOT, stdout=subprocess.PIPE)
        for i, a in enumerate(acks)
    ]  # fmt: skip
    stop = workdir / "stop"
    seeker = (
        subprocess.Popen(
            [*py, "searcher", store, str(stop)], env=_env(), cwd=ROOT, stdout=subprocess.PIPE
        )
        if search
        else None
    )
    time.sleep(2.0)  # let every process import and open the store before the start signal
    t0 = time.perf_counter()
    for a in acks:
        Path(str(a) + ".go").touch()
    reports = []
    for p in procs:
        out, _ = p.communicate(timeout=timeout)
        lines = out.decode().strip().splitlines()
        reports.append(
            json.loads(lines[-1]) if lines else {"error": "no report", "exit": p.returncode}
        )
    elapsed = time.perf_counter() - t0
    found = None
    if seeker is not None:
        stop.touch()
        out, _ = seeker.communicate(timeout=timeout)
        lines = out.decode().strip().splitlines()
        found = json.loads(lines[-1]) if lines else {"error": "no report"}
    acked = []
    for a in acks:
        if not a.exists():  # the writer failed before its first append: its report says why
            continue
        for line in a.read_text(encoding="utf-8").splitlines():
            i, c = line.split("\t", 1)
            acked.append((int(i), c))
    return Run(reports, acked, found, elapsed)


def main(argv: list[str]) -> int:
    try:
        if argv[0] == "writer":
            store, ack, tag, count, seconds, batch, busy = argv[1:8]
            out = writer(store, Path(ack), tag, int(count), float(seconds), int(batch), float(busy))
        else:
            out = searcher(argv[1], Path(argv[2]))
    except Exception as exc:
        print(
            json.dumps(
                {
                    "error": type(exc).__name__,
                    "message": str(exc),
                    "trace": traceback.format_exc()[-1500:],
                }
            )
        )
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
