"""Cold start of ``rlmem`` commands, against ``python -c pass`` measured in the same run.

Usage::

    .venv/bin/python bench/bench_cli.py [--runs 15] [--messages 10000] [--store DIR]

Builds (or reuses) a store with ``--messages`` recall messages, then runs each command in a
fresh process ``--runs`` times, alternating commands so machine load hits them alike, and
prints the median and p95 wall time and the ratio of medians against the bare interpreter
start (and, for scale, the import of SQLAlchemy, which every store command needs). The
target: ``rlmem search --mode text`` under 1 s, and no torch import (checked).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _build_store(path: Path, n: int) -> None:
    sys.path.insert(0, str(ROOT))
    from memory.manager import MemoryManager
    from memory.vectors.embeddings import HashEmbedder

    mem = MemoryManager.open(path, embedder=HashEmbedder(), background_embed=False, embed_recall=False)
    try:
        have = mem.recall.count()
        words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu"]
        batch = []
        for i in range(have, n):
            text = " ".join(words[(i * 7 + j) % len(words)] for j in range(20)) + f" item{i}"
            batch.append({"content": text, "role": "user" if i % 2 else "assistant",
                          "session_id": f"s{i // 100}"})
            if len(batch) == 5000:
                mem.recall.append_many(batch)
                batch = []
        if batch:
            mem.recall.append_many(batch)
    finally:
        mem.close()


def _time(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--store", default=None, help="store directory (default: a temporary one)")
    args = ap.parse_args()

    tmp = None
    if args.store:
        store = Path(args.store)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="rlmem-bench-")
        store = Path(tmp.name) / "store"
    _build_store(store, args.messages)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RLMEM_STORE": str(store),
           "RLMEM_EMBED_RECALL": "false"}
    py = sys.executable
    commands = {
        "python -c pass (baseline)": [py, "-c", "pass"],
        "python -c 'import sqlalchemy'": [py, "-c", "import sqlalchemy, sqlite3"],
        "python -c 'import agents.cli.main'": [py, "-c", "import agents.cli.main"],
        "rlmem --help": [py, "-m", "agents.cli.main", "--help"],
        "rlmem search --mode text": [py, "-m", "agents.cli.main", "search", "item4242 gamma", "--mode", "text"],
        "rlmem grep": [py, "-m", "agents.cli.main", "grep", "item424[0-9]", "--limit", "5"],
        "rlmem stats": [py, "-m", "agents.cli.main", "stats"],
    }
    check = subprocess.run(
        [py, "-c", "import sys; from agents.cli.main import main; main(['search', 'x', '--mode', 'text']);"
                   " print('torch' in sys.modules)"],
        env=env, capture_output=True, text=True,
    )
    torch_loaded = check.stdout.strip().splitlines()[-1] if check.stdout.strip() else "?"
    times: dict[str, list[float]] = {name: [] for name in commands}
    for cmd in commands.values():  # one warm-up each (page cache, .pyc files)
        _time(cmd, env)
    for _ in range(args.runs):
        for name, cmd in commands.items():
            times[name].append(_time(cmd, env))
    base = statistics.median(times["python -c pass (baseline)"])
    print(f"store: {store} ({args.messages} messages), {args.runs} runs each, "
          f"cpu count {os.cpu_count()}, load avg {os.getloadavg()[0]:.2f}")
    print(f"{'command':34} {'median s':>9} {'p95 s':>8} {'x baseline':>11}")
    for name, ts in times.items():
        ts.sort()
        p95 = ts[min(len(ts) - 1, round(0.95 * (len(ts) - 1)))]
        med = statistics.median(ts)
        print(f"{name:34} {med:9.3f} {p95:8.3f} {med / base:11.1f}")
    print(f"torch imported by `rlmem search --mode text`: {torch_loaded}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
