"""Bad input against the recall log: odd text, huge messages, hostile queries, two writers.

Each case is either stored correctly or refused with a clear ``memory.errors`` error, and the
store stays intact.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memory.db import Database
from memory.errors import NotFoundError, QueryError, UserError, ValidationError
from memory.recall.log import RecallLog


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    url = str(tmp_path / "memory.db") if request.param == "sqlite" else request.getfixturevalue("pg_url")
    d = Database.open(url)
    yield d
    d.close()


@pytest.fixture()
def log(db: Database) -> RecallLog:
    return RecallLog(db)


def test_bytes_are_refused_with_a_hint(log: RecallLog) -> None:
    with pytest.raises(ValidationError, match="decode"):
        log.append(b"\xff\xfe not utf-8")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="must be str"):
        log.append(42)  # type: ignore[arg-type]
    assert log.count() == 0


def test_lone_surrogates_are_refused(log: RecallLog) -> None:
    for bad in ["half \ud800 pair", "\udcff"]:
        with pytest.raises(ValidationError, match="surrogate"):
            log.append(bad)
    with pytest.raises(ValidationError):
        log.append("ok", session_id="\ud800")
    with pytest.raises(UserError):
        log.search_text("\ud800")
    assert log.count() == 0
    # surrogates inside JSON metadata are escaped by JSON and survive
    m = log.append("ok", metadata={"k": "\ud800"})
    assert log.get(m.id).metadata == {"k": "\ud800"}


def test_nul_characters(log: RecallLog, db: Database) -> None:
    text = "before\x00after"
    if db.dialect == "postgresql":
        with pytest.raises(ValidationError, match="NUL"):
            log.append(text)
        assert log.count() == 0
        log.append("before after")
        assert log.grep("e\x00a") == [] and log.grep("\x00", literal=True) == []
        assert len(log.search_text("before\x00after")) == 1
    else:
        m = log.append(text)
        assert log.get(m.id).content == text
        assert [h.id for h in log.search_text("after")] == [m.id]
        assert [h.id for h in log.grep("e\x00a")] == [m.id]
    with pytest.raises(ValidationError, match="NUL"):
        log.append("x", agent_id="a\x00b")


def test_ten_megabyte_message(log: RecallLog) -> None:
    big = ("lorem ipsum dolor " * 600_000)[:10_000_000] + " zanzibar"
    m = log.append(big)
    got = log.get(m.id)
    assert got.content == big and got.tokens == (len(big) + 3) // 4
    assert [h.match for h in log.grep("zanzibar")] == ["zanzibar"]
    assert log.search_text("lorem")[0].id == m.id
    small = RecallLog(log.db, max_message_chars=1000)
    with pytest.raises(ValidationError, match="max_message_chars"):
        small.append("x" * 1001)


def test_empty_content_is_stored(log: RecallLog) -> None:
    m = log.append("", role="assistant", tool_name="lookup", tool_args={"q": 1})
    assert log.get(m.id).content == "" and log.get(m.id).tokens == 0


def test_unknown_ids(log: RecallLog) -> None:
    log.append("hello")
    assert log.session("no-such-session") == []
    assert log.search_text("hello", agent_id="nobody") == []
    assert log.grep("hello", session_id="nobody") == []
    assert log.sessions(agent_id="nobody") == []
    for bad in [0, -1, 2**70]:
        with pytest.raises(NotFoundError):
            log.get(bad)
    with pytest.raises(NotFoundError):
        log.get("1")  # type: ignore[arg-type]


def _writer(path: str, tag: str, n: int) -> None:
    log = RecallLog(Database.open(path))
    for i in range(n):
        if i % 10 == 0:
            log.append_many([{"content": f"{tag} batch {i} {j}", "session_id": tag} for j in range(5)])
        else:
            log.append(f"{tag} single {i}", session_id=tag)


def test_two_processes_append_concurrently(tmp_path: Path) -> None:
    path = str(tmp_path / "memory.db")
    RecallLog(Database.open(path))  # migrate once up front
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, tag, 60)) for tag in ("p1", "p2")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    db = Database.open(path)
    log = RecallLog(db)
    msgs = list(log.iter_messages())
    expected = 2 * (54 + 6 * 5)
    assert len(msgs) == expected and len({m.id for m in msgs}) == expected
    assert len({m.content for m in msgs}) == expected
    assert [m.id for m in msgs] == sorted(m.id for m in msgs)
    for tag in ("p1", "p2"):  # each writer's messages keep their order
        mine = [m.content for m in log.session(tag)]
        assert mine[0] == f"{tag} batch 0 0" and mine[-1] == f"{tag} single 59"
    assert log.count() == expected and len(log.search_text("single", k=1000)) == 108
    assert db.integrity_check() == "ok"


# --- hypothesis --------------------------------------------------------------------------

_OPS = st.sampled_from([*'"*-:()^+{}[]~\'\\%_.,;!?', "AND", "OR", "NOT", "NEAR", " "])
_QUERY = st.lists(st.one_of(_OPS, st.text(max_size=6)), max_size=8).map("".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.text(max_size=200), min_size=1, max_size=5))
def test_text_round_trips(log: RecallLog, texts: list[str]) -> None:
    if log.db.dialect == "postgresql":
        texts = [t.replace("\x00", "") for t in texts]
    ms = log.append_many([{"content": t} for t in texts])
    assert [m.content for m in log.get_many([m.id for m in ms])] == texts


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=_QUERY)
def test_any_query_runs(log: RecallLog, query: str) -> None:
    if log.count() == 0:
        log.append_many([{"content": c} for c in ["alpha beta", "AND OR NOT", "e-mail: x*y", "(paren) \"quoted\""]])
    hits = log.search_text(query, k=5)
    assert isinstance(hits, list)
    words = [w for w in query.split() if w.isalpha() and w.lower() in {"alpha", "beta"}]
    if words:
        assert hits


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pattern=_QUERY, ignore_case=st.booleans(), literal=st.booleans())
def test_any_pattern_runs_or_is_refused(log: RecallLog, pattern: str, ignore_case: bool, literal: bool) -> None:
    if log.count() == 0:
        log.append_many([{"content": c} for c in ["alpha beta", "AND OR NOT", "e-mail: x*y", "(paren) \"quoted\""]])
    try:
        hits = log.grep(pattern, ignore_case=ignore_case, literal=literal, timeout_s=2)
    except QueryError:
        return
    if literal and pattern:
        expect = [c for c in ["alpha beta", "AND OR NOT", "e-mail: x*y", '(paren) "quoted"']
                  if (pattern.lower() in c.lower() if ignore_case else pattern in c)]
        if pattern.isascii():
            assert len(hits) == len(expect)
