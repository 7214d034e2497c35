"""Several processes on one store: nothing lost, nothing duplicated, no raw lock errors.

Writers append (single messages and batches) while a searcher runs full text, grep, count
and pages; the only acceptable error is ``StoreBusyError``, and only when a lock is held
artificially past the retry budget.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from memory.db import Database
from memory.errors import StoreBusyError
from memory.recall.log import RecallLog
from reliability.procs import run_writers


def _check(
    db_target: str,
    run_acked: list[tuple[int, str]],
    reports: list[dict[str, object]],
    expected: int,
) -> None:
    assert all("error" not in r for r in reports), reports
    assert sum(int(r["appended"]) for r in reports) == expected  # type: ignore[call-overload]
    db = Database.open(db_target)
    try:
        with db.read() as conn:
            rows: dict[int, str] = dict(
                conn.exec_driver_sql("SELECT id, content FROM recall_messages").all()
            )
        assert db.integrity_check() == "ok"
    finally:
        db.close()
    assert len(rows) == expected == len(run_acked)
    assert [c for c, n in Counter(rows.values()).items() if n > 1] == []
    for i, c in run_acked:
        assert rows.get(i) == c, f"acknowledged message {i} lost or changed"


@pytest.mark.parametrize("batch", [1, 7])
def test_four_writers_and_a_searcher(tmp_path: Path, batch: int) -> None:
    store = tmp_path / "store"
    run = run_writers(str(store), tmp_path / "run", writers=4, count=70, batch=batch)
    _check(str(store / "memory.db"), run.acked, run.reports, 4 * 70)
    assert run.search is not None and run.search["errors"] == [] and run.search["calls"] > 0


@pytest.mark.postgres
def test_four_writers_and_a_searcher_on_postgres(pg_url: str, tmp_path: Path) -> None:
    run = run_writers(pg_url, tmp_path / "run", writers=4, count=60, batch=3)
    _check(pg_url, run.acked, run.reports, 4 * 60)
    assert run.search is not None and run.search["errors"] == []
    ids = sorted(i for i, _ in run.acked)
    assert ids == sorted(set(ids))


def test_a_held_write_lock_gives_store_busy_after_a_bounded_wait(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    log = RecallLog(Database.open(path, busy_timeout_s=1.0))
    log.append("before the lock")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        t0 = time.monotonic()
        with pytest.raises(StoreBusyError, match="busy"):
            log.append("while locked")
        waited = time.monotonic() - t0
        assert 0.9 <= waited < 5.0
        assert log.count() == 1 and log.search_text("before")  # readers are not blocked (WAL)
        assert [h.id for h in log.grep("before")] == [1]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert log.append("after the lock").id == 2
    assert log.count() == 2 and log.db.integrity_check() == "ok"


def test_a_lock_released_within_the_budget_is_waited_for(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    log = RecallLog(Database.open(path, busy_timeout_s=10.0))
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    threading.Timer(0.5, lambda: holder.execute("ROLLBACK")).start()
    t0 = time.monotonic()
    m = log.append("waited")
    assert 0.4 <= time.monotonic() - t0 < 5.0 and log.get(m.id).content == "waited"
    holder.close()


def test_threads_of_one_process_share_a_store(tmp_path: Path) -> None:
    log = RecallLog(Database.open(tmp_path / "memory.db"))
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for n in range(40):
                log.append(f"t{t} n{n}") if n % 2 else log.append_many(
                    [{"content": f"t{t} n{n} b{j}"} for j in range(3)]
                )
                log.search_text(f"t{t}", k=3)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert log.count() == 6 * (20 + 20 * 3)
    ids = [m.id for m in log.iter_messages()]
    assert ids == sorted(set(ids))


def test_every_writing_operation_gives_store_busy_under_a_held_lock(tmp_path: Path) -> None:
    from memory.manager import MemoryManager
    from memory.vectors.embeddings import HashEmbedder

    mem = MemoryManager.open(
        tmp_path / "store", embedder=HashEmbedder(), background_embed=False, busy_timeout_s=0.5
    )
    mem.recall.append("kept")
    mem.blocks("default").create("human", "Ada", limit=50)
    holder = sqlite3.connect(tmp_path / "store" / "memory.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        for op in (
            lambda: mem.recall.append("x"),
            lambda: mem.recall.append_many([{"content": "y"}] * 3),
            lambda: mem.archival.insert("a chunk"),
            lambda: mem.blocks("default").append("human", "more"),
            lambda: mem.forget(ids=[1], reason="test"),
        ):
            with pytest.raises(StoreBusyError):
                op()
        assert mem.recall.count() == 1 and mem.archival.count() == 0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert mem.blocks("default").get("human").value == "Ada"
    mem.close()


@pytest.mark.parametrize("with_ids", [True, False])
def test_two_imports_of_one_file_racing_store_each_record_once(tmp_path: Path, with_ids: bool) -> None:
    """Two ``rlmem import`` processes started together on one transcript: every record once,
    whether records carry their own ids or are keyed by a hash of their content."""
    import json
    import subprocess
    import sys

    from reliability.harness import ROOT
    from reliability.served import cli, cli_env

    store = tmp_path / "store"
    assert cli("init", str(store)).returncode == 0
    path = tmp_path / "t.jsonl"
    n = 150
    path.write_text("".join(json.dumps({"role": "user" if i % 2 == 0 else "assistant", "content": f"line {i} teal",
                                        "session_id": "race", **({"id": f"r{i}"} if with_ids else {})}) + "\n"
                            for i in range(n)), encoding="utf-8")
    cmd = [sys.executable, "-m", "agents.cli.main", "import", str(path), "--no-embed", "--store", str(store)]
    procs = [subprocess.Popen(cmd, env=cli_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    db = Database.open(store / "memory.db", read_only=True)
    try:
        with db.read() as conn:
            rows = [str(r[0]) for r in conn.exec_driver_sql("SELECT content FROM recall_messages")]
    finally:
        db.close()
    assert sorted(rows) == sorted(f"line {i} teal" for i in range(n))
