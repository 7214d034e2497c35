"""Crash safety: SIGKILL a child process at seeded random moments while it writes, then check.

A few kills per scenario keep the suite fast; ``bench/reliability.py`` runs the full campaign
(50 or more kills per scenario) and prints the summary table of ``docs/reliability.md``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reliability.harness import run_campaign

KILLS = int(os.environ.get("RLMEM_TEST_KILLS", "6"))


@pytest.mark.parametrize("scenario", ["recall_single", "recall_batch"])
def test_recall_appends_survive_kills(scenario: str, tmp_path: Path) -> None:
    res = run_campaign(scenario, tmp_path, kills=KILLS, seed=11)
    assert res.failures == [], "\n".join(res.failures)
    assert res.attempts == KILLS and res.acknowledged > 0


@pytest.mark.slow
def test_archival_ingestion_survives_kills(tmp_path: Path) -> None:
    res = run_campaign("archival", tmp_path, kills=max(2, KILLS - 2), seed=12)
    assert res.failures == [], "\n".join(res.failures)
    assert res.acknowledged > 0


@pytest.mark.slow
def test_agent_steps_survive_kills(tmp_path: Path) -> None:
    res = run_campaign("agent_step", tmp_path, kills=max(2, KILLS - 2), seed=13)
    assert res.failures == [], "\n".join(res.failures)
    assert res.acknowledged > 0


@pytest.mark.postgres
def test_recall_on_postgres_survives_kills(pg_url: str, tmp_path: Path) -> None:
    res = run_campaign("recall_pg", tmp_path, kills=KILLS, seed=14, pg_url=pg_url)
    assert res.failures == [], "\n".join(res.failures)
    assert res.acknowledged > 0


def test_the_checker_catches_lost_duplicated_and_half_written_rows(tmp_path: Path) -> None:
    """The harness is only as good as its checks: break a store on purpose and expect reports."""
    from memory.db import Database
    from memory.recall.log import RecallLog
    from reliability.checks import check_sql

    db_path = tmp_path / "memory.db"
    log = RecallLog(Database.open(db_path))
    ms = log.append_many([{"content": f"c1 b1 i{i}/3 words"} for i in range(3)])
    single = log.append("c1 n2 more words")
    acks = [
        {"ids": [m.id for m in ms], "cs": [m.content for m in ms]},
        {"ids": [single.id], "cs": [single.content]},
    ]
    assert check_sql("recall_batch", str(db_path), acks) == []
    with log.db.write() as conn:
        conn.exec_driver_sql(f"DELETE FROM recall_messages WHERE id = {ms[1].id}")
        conn.exec_driver_sql("INSERT INTO recall_messages (agent_id, session_id, role, content, created_us, tokens)"
                             " VALUES ('default', 'default', 'user', 'c1 n2 more words', 0, 1)")  # fmt: skip
        conn.exec_driver_sql("INSERT INTO recall_messages (agent_id, session_id, role, content, created_us, tokens)"
                             " VALUES ('default', 'default', 'user', 'garbage', 0, 1)")  # fmt: skip
    fails = "\n".join(check_sql("recall_batch", str(db_path), acks))
    assert (
        "half-written" in fails
        and "missing" in fails
        and "more than once" in fails
        and "nobody wrote" in fails
    )
