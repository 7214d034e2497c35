"""Import streams: memory does not grow with the file, order and identity are what they were.

A real ``rlmem import`` process on a generated 30,000-message chat is killed part-way, run
again, and measured (its own peak RSS, ``os.wait4``) against the same command on a 2,000-message
file: the whole file held in memory, as import used to, costs about 2.6 KB a message (75 MB
here) and fails the bound. The external sort is checked with tiny runs against an in-memory
sort, on its own and inside an import of real-format Claude Code files.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cc_fixtures import coding_session, write_project
from transcript_gen import write_chat

import agents.integrations.spill as spill
from agents.integrations.spill import ExternalSort
from agents.integrations.transcripts import import_paths
from memory.manager import MemoryManager
from memory.vectors.embeddings import HashEmbedder

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "ANONYMIZED_TELEMETRY": "False", "HF_HUB_OFFLINE": "1"}
BIG = 30_000
GROWTH_MB = 40  # what a 20x bigger file may add to the peak, at most


def _cli(*argv: str, tmp: Path | None = None) -> subprocess.Popen[bytes]:
    env = ENV if tmp is None else {**ENV, "TMPDIR": str(tmp)}
    return subprocess.Popen([sys.executable, "-m", "agents.cli.main", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)


def _finish(proc: subprocess.Popen[bytes]) -> tuple[int, int, bytes]:
    """Exit status, peak RSS in bytes, stdout."""
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout.read()  # small: a summary per file
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    assert code in (0, -signal.SIGKILL), err.decode()[-2000:]
    return code, usage.ru_maxrss * 1024, out


def _count(store: Path) -> int:
    try:
        with sqlite3.connect(f"file:{store / 'memory.db'}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM recall_messages").fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # not created yet


def _import_rss(store: Path, path: Path, tmp: Path | None = None) -> tuple[int, list[dict]]:
    code, rss, out = _finish(_cli("import", "--store", str(store), "--no-embed", "--json", str(path), tmp=tmp))
    assert code == 0
    return rss, json.loads(out)


def test_a_big_file_imports_in_bounded_memory_and_a_killed_import_resumes(tmp_path: Path) -> None:
    big, small = tmp_path / "big.jsonl", tmp_path / "small.jsonl"
    write_chat(big, BIG)
    write_chat(small, 2_000)
    for s in ("a", "b"):
        assert _finish(_cli("init", "--store", str(tmp_path / s)))[0] == 0
    # Killed while storing: what was committed stays, whole transactions of it.
    runs = tmp_path / "tmp"
    runs.mkdir()
    proc = _cli("import", "--store", str(tmp_path / "a"), "--no-embed", str(big), tmp=runs)
    deadline = time.monotonic() + 60
    while _count(tmp_path / "a") < 4_000 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    _finish(proc)
    part = _count(tmp_path / "a")
    assert 0 < part < BIG and part % 2_000 == 0
    assert list(runs.glob("rlmem-sort-*"))  # the killed import's sorted runs are left behind
    rss_big, summary = _import_rss(tmp_path / "a", big, runs)
    assert not list(runs.iterdir())  # and the next import removed them with its own
    assert summary[0]["messages"] == BIG - part and summary[0]["already_present"] == part
    with sqlite3.connect(tmp_path / "a" / "memory.db") as conn:
        n, keys = conn.execute("SELECT COUNT(*), COUNT(DISTINCT msg_key) FROM recall_messages").fetchone()
        times = [r[0] for r in conn.execute("SELECT created_us FROM recall_messages ORDER BY id")]
    assert n == keys == BIG and times == sorted(times)  # nothing lost, nothing twice, in time order
    rss_small, _ = _import_rss(tmp_path / "b", small)
    assert rss_big - rss_small < GROWTH_MB * 1e6, (rss_big / 1e6, rss_small / 1e6)


def test_the_external_sort_gives_what_sorted_gives(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(spill, "FAN_IN", 3)
    monkeypatch.setattr(spill, "CHUNK", 4)
    rng = random.Random(3)
    records = [(rng.randint(0, 50), 0, n, f"payload {n}") for n in range(1_000)]
    for run_items in (7, 1_000_000):
        with ExternalSort(run_items=run_items, tmp_dir=str(tmp_path)) as order:
            for r in records:
                order.add(r, 10)
            assert list(order.sorted()) == sorted(records)
            assert (order.spilled > 0) == (run_items == 7)
        assert not list(tmp_path.iterdir())  # the runs are removed


def _stored(mem: MemoryManager) -> list[tuple]:
    # created_at left out: a record without a time is stored at the time of its batch
    return [(m.id, m.key, m.role, m.session_id, m.content, m.tool_name, m.tool_args, m.metadata)
            for m in mem.recall.range(0, 10**9)]


def test_tiny_runs_store_exactly_what_one_run_stores(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tree = write_project(tmp_path / "projects", noise=20)
    rows = [json.loads(line) for line in coding_session(200, session="s2")]
    random.Random(5).shuffle(rows)  # out of time order: the sort has work to do
    for r in rows[::9]:
        r.pop("timestamp")
    (tree["main"].parent / "s2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    got = []
    for run_items in (spill.RUN_ITEMS, 5):
        monkeypatch.setattr(spill, "RUN_ITEMS", run_items)
        monkeypatch.setattr(spill, "FAN_IN", 3)
        with MemoryManager.open(tmp_path / f"m{run_items}", embedder=HashEmbedder(), background_embed=False) as mem:
            summaries = import_paths(mem, [tmp_path / "projects"])
            got.append((_stored(mem), [s.to_dict() for s in summaries], mem.recall.count()))
    assert got[0] == got[1] and got[0][2] > 200


def test_progress_counts_bytes_up_to_the_total(tmp_path: Path) -> None:
    write_chat(tmp_path / "a.jsonl", 5_000)
    write_project(tmp_path / "projects")
    calls: list[tuple[int, int]] = []
    with MemoryManager.open(tmp_path / "m", embedder=HashEmbedder(), background_embed=False) as mem:
        import_paths(mem, [tmp_path / "a.jsonl", tmp_path / "projects"], progress=lambda d, t: calls.append((d, t)))
    total = sum(p.stat().st_size for p in tmp_path.rglob("*.jsonl"))
    assert len(calls) > 3 and {t for _, t in calls} == {total} and calls[-1] == (total, total)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
