"""Message keys on SQLite and PostgreSQL: idempotent appends, per-agent scope, racing writers."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Iterator
from pathlib import Path

import pytest

from memory.db import Database
from memory.errors import ValidationError
from memory.recall.log import RecallLog
from memory.types import Message


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(tmp_path / "memory.db") if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))


@pytest.fixture()
def log(url: str) -> Iterator[RecallLog]:
    d = Database.open(url)
    yield RecallLog(d)
    d.close()


def test_append_with_key_is_idempotent(log: RecallLog) -> None:
    seen: list[list[Message]] = []
    log.add_append_hook(lambda conn, ms: seen.append(ms))
    first = log.append("the opening prompt", key="uuid-1", session_id="s")
    again = log.append("a different text under the same key", key="uuid-1", session_id="other")
    assert again == first and again.key == "uuid-1" and log.get(first.id).key == "uuid-1"
    assert log.count() == 1 and len(seen) == 1  # the hook saw only the stored one
    assert log.get_by_key("uuid-1") == first and log.get_by_key("nope") is None
    # scoped by agent: the same key under another agent is another message
    other = log.append("the opening prompt", key="uuid-1", agent_id="b")
    assert other.id != first.id and log.count() == 2
    assert log.keys_present(["uuid-1", "uuid-2"]) == {"uuid-1"}


def test_append_many_skips_stored_and_repeated_keys(log: RecallLog) -> None:
    log.append_many([{"content": "a", "key": "k1"}, {"content": "no key"}])
    out = log.append_many(
        [
            {"content": "a again", "key": "k1"},  # stored
            {"content": "b", "key": "k2"},
            {"content": "b twice in one batch", "key": "k2"},  # repeated: the first wins
            {"content": "no key"},  # keyless rows are never deduplicated
            {"content": "c", "key": "k3"},
        ]
    )
    assert [(m.content, m.key) for m in out] == [("b", "k2"), ("no key", None), ("c", "k3")]
    assert [m.content for m in log.range()] == ["a", "no key", "b", "no key", "c"]
    assert [m.id for m in log.range()] == sorted(m.id for m in log.range())
    assert log.append_many([{"content": "x", "key": "k3"}]) == []
    # a skipped last row leaves no hole in what the next append gets
    nxt = log.append("next")
    assert nxt.id > out[-1].id and log.count() == 6


@pytest.mark.parametrize("bad", ["", "x" * 201, "nul\x00key", 7])
def test_bad_keys_are_refused_and_nothing_is_written(log: RecallLog, bad: object) -> None:
    with pytest.raises(ValidationError):
        log.append_many([{"content": "ok", "key": "fine"}, {"content": "bad", "key": bad}])
    assert log.count() == 0


def test_message_copy_keeps_its_key(log: RecallLog, tmp_path: Path) -> None:
    m = log.append("carry me", key="k-copy")
    other = RecallLog(Database.open(str(tmp_path / "copy.db")))
    assert [c.key for c in other.append_many([m, m])] == ["k-copy"]
    other.db.close()


def _racer(url: str, start: int, barrier: object) -> None:
    d = Database.open(url)
    log = RecallLog(d)
    barrier.wait()  # type: ignore[attr-defined]
    for a in range(0, 200, 20):
        log.append_many([{"content": f"record {i}", "key": f"r{i}"} for i in range(a, a + 20)])
    d.close()


def test_two_processes_importing_the_same_records_store_each_once(url: str) -> None:
    RecallLog(Database.open(url)).db.close()  # migrate once, before the race
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_racer, args=(url, n, barrier)) for n in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    d = Database.open(url)
    log = RecallLog(d)
    keys = [m.key for m in log.range(limit=10_000)]
    assert sorted(keys, key=lambda k: int(str(k)[1:])) == [f"r{i}" for i in range(200)]
    d.close()
