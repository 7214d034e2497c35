"""`rlmem import` at real sizes: peak memory (RSS) and wall time, against the code of a baseline checkout.

Usage::

    git worktree add /tmp/imp-base 2001c9d    # the code before streaming import
    .venv/bin/python bench/bench_import.py --baseline /tmp/imp-base [--sizes 100000,1000000]

For each size, two inputs are generated once (``tests/transcript_gen.py``, seeded): a JSON-lines
chat in LongMemEval's shape, and a Claude Code project tree in the format Claude Code writes,
half its messages in one long session (with subagent files), the rest in sessions of 2,000
events. Each is imported by ``python -m agents.cli.main import --no-embed`` (only the
messages are stored; embedding waits for a later command, so the figure is the import's own)
into a fresh store, started from a fresh process, once with the baseline checkout on
``PYTHONPATH`` and once with this one, in the same run. Peak RSS is the child's own
(``os.wait4``'s ``ru_maxrss``); both runs must store the same rows (ids, keys, text,
metadata and times: a digest of the table). The figures are printed with the ratio
current/baseline.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from transcript_gen import write_chat, write_tree  # noqa: E402


def _run(code: Path, argv: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in bytes and stdout of one CLI process running ``code``."""
    env = {**os.environ, "PYTHONPATH": str(code), "ANONYMIZED_TELEMETRY": "False", "HF_HUB_OFFLINE": "1"}
    t = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen([sys.executable, "-m", "agents.cli.main", *argv], stdout=out,
                                stderr=subprocess.PIPE, env=env, cwd=code)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t
        err = proc.stderr.read().decode() if proc.stderr else ""
        out.seek(0)
        text = out.read().decode()
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}) with {code}: {err[-2000:]}")
    return wall, usage.ru_maxrss * 1024, text


def import_once(code: Path, src: Path, work: Path) -> tuple[float, int, str]:
    """Wall seconds, peak RSS and a digest of every stored row (ids and times included: every
    generated record has its own time)."""
    store = work / f"store-{code.name}-{src.name}"
    subprocess.run(["rm", "-rf", str(store)], check=True)
    _run(code, ["init", "--store", str(store)])
    wall, rss, _out = _run(code, ["import", "--store", str(store), "--no-embed", "--json", str(src)])
    digest = hashlib.sha256()
    with sqlite3.connect(store / "memory.db") as conn:
        n = conn.execute("SELECT COUNT(*) FROM recall_messages").fetchone()[0]
        for row in conn.execute("SELECT id, msg_key, role, session_id, content, tool_name, tool_args, metadata,"
                                " created_us, tokens FROM recall_messages ORDER BY id"):
            digest.update(repr(row).encode())
    subprocess.run(["rm", "-rf", str(store)], check=True)
    return wall, rss, f"{n}:{digest.hexdigest()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", type=Path, required=True, help="a checkout of the code to compare against")
    ap.add_argument("--sizes", default="100000,1000000", help="messages per input, comma-separated")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "rlmem-bench-import")
    ap.add_argument("--inputs", default="chat,tree", help="which inputs: chat, tree")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"rlmem import --no-embed, fresh process and store each; baseline {args.baseline}, current {ROOT}")
    print(f"{'input':<28}{'messages':>10}{'MB on disk':>12}{'base s':>9}{'cur s':>8}{'x':>6}"
          f"{'base RSS MB':>13}{'cur RSS MB':>12}{'x':>7}")
    for n in (int(s) for s in args.sizes.split(",")):
        for kind in args.inputs.split(","):
            src = args.work / (f"chat-{n}.jsonl" if kind == "chat" else f"tree-{n}")
            if not src.exists():
                if kind == "chat":
                    write_chat(src, n)
                else:
                    write_tree(src, n, long_session=0.5)
            size = sum(p.stat().st_size for p in ([src] if src.is_file() else src.rglob("*.jsonl")))
            bw, brss, bsum = import_once(args.baseline.resolve(), src, args.work)
            cw, crss, csum = import_once(ROOT, src, args.work)
            if bsum != csum:
                raise SystemExit(f"{src}: the stores differ (messages:digest): baseline {bsum}, current {csum}")
            cn = int(csum.split(":")[0])
            label = "JSON-lines chat" if kind == "chat" else "Claude Code tree"
            print(f"{label:<28}{cn:>10,}{size / 1e6:>12.0f}{bw:>9.1f}{cw:>8.1f}{cw / bw:>6.2f}"
                  f"{brss / 1e6:>13.0f}{crss / 1e6:>12.0f}{crss / brss:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
