"""The recall log on SQLite and PostgreSQL: writing, reading, full text, grep, forget."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text

from memory.db import Database
from memory.errors import NotFoundError, QueryError, ValidationError
from memory.recall.log import RecallLog
from memory.types import Message

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    url = str(tmp_path / "memory.db") if request.param == "sqlite" else request.getfixturevalue("pg_url")
    d = Database.open(url)
    yield d
    d.close()


@pytest.fixture()
def log(db: Database) -> RecallLog:
    return RecallLog(db)


def _fill(log: RecallLog) -> list[Message]:
    return log.append_many(
        [
            {"content": "the cat sat on the mat", "session_id": "s1", "created_at": T0},
            {"content": "dogs chase cats in the park", "role": "assistant", "session_id": "s1",
             "created_at": T0 + timedelta(minutes=1)},
            {"content": "quarterly revenue grew by twelve percent", "session_id": "s2",
             "created_at": T0 + timedelta(minutes=2)},
            {"content": "call get_weather(city='Oslo')", "role": "tool", "session_id": "s2",
             "tool_name": "get_weather", "tool_args": {"city": "Oslo"}, "created_at": T0 + timedelta(minutes=3)},
            {"content": "the cat again, a cat of cats", "agent_id": "other", "session_id": "s9",
             "created_at": T0 + timedelta(minutes=4)},
        ]
    )


# --- writing -----------------------------------------------------------------------------


def test_append_round_trip(log: RecallLog) -> None:
    m = log.append(
        "hello", role="assistant", agent_id="a1", session_id="s1", tool_name="t",
        tool_args={"x": [1, 2]}, metadata={"k": "v"}, created_at=datetime(2025, 1, 2, 3, 4, 5, 6),
    )
    got = log.get(m.id)
    assert got == m
    assert got.created_at == datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC)  # naive taken as UTC
    assert got.tool_args == {"x": [1, 2]} and got.metadata == {"k": "v"}
    assert got.tokens == 2  # ceil(5 / 4)
    assert log.append("x" * 40, tokens=7).tokens == 7


def test_aware_timestamps_are_stored_as_utc(log: RecallLog) -> None:
    cet = timezone(timedelta(hours=1))
    m = log.append("tz", created_at=datetime(2025, 1, 1, 13, 0, tzinfo=cet))
    assert log.get(m.id).created_at == datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert log.get(m.id).created_at.tzinfo == UTC


def test_ids_increase_and_batches_are_atomic(log: RecallLog) -> None:
    ms = _fill(log)
    assert [m.id for m in ms] == list(range(ms[0].id, ms[0].id + 5))
    with pytest.raises(ValidationError, match="role"):
        log.append_many([{"content": "ok"}, {"content": "bad", "role": "robot"}])
    assert log.count() == 5
    assert log.append_many([]) == []
    assert log.append("next").id == ms[-1].id + 1


def test_append_accepts_message_objects(log: RecallLog) -> None:
    src = Message(id=999, agent_id="a", session_id="s", role="system", content="copied", created_at=T0)
    (m,) = log.append_many([src])
    assert m.id != 999 and m.content == "copied" and m.role == "system" and m.created_at == T0


def test_append_hook_runs_inside_the_transaction(log: RecallLog) -> None:
    seen: list[int] = []

    def hook(conn, msgs):  # type: ignore[no-untyped-def]
        n = conn.execute(text("SELECT count(*) FROM recall_messages")).scalar_one()
        seen.append(n)
        if any(m.content == "boom" for m in msgs):
            raise RuntimeError("hook failed")

    log.add_append_hook(hook)
    log.append_many([{"content": "a"}, {"content": "b"}])
    assert seen == [2]
    with pytest.raises(RuntimeError):
        log.append("boom")
    assert log.count() == 2  # the hook's failure rolled the append back


def test_unknown_role_and_filters_are_refused(log: RecallLog) -> None:
    with pytest.raises(ValidationError, match="unknown role"):
        log.append("x", role="robot")
    with pytest.raises(ValidationError, match="unknown role"):
        log.count(role="robot")
    with pytest.raises(ValidationError, match="unknown filter"):
        log.count(colour="red")
    with pytest.raises(ValidationError):
        log.append("x", metadata={"bad": object()})


# --- reading -----------------------------------------------------------------------------


def test_reads(log: RecallLog) -> None:
    ms = _fill(log)
    ids = [m.id for m in ms]
    with pytest.raises(NotFoundError):
        log.get(10_000)
    assert [m.id for m in log.get_many([ids[3], 10_000, ids[0]])] == [ids[3], ids[0]]
    assert [m.id for m in log.range(ids[1], ids[3])] == ids[1:4]
    assert [m.id for m in log.range(limit=2)] == ids[:2]
    assert [m.id for m in log.range(session_id="s2")] == ids[2:4]
    assert [m.id for m in log.session("s1")] == ids[:2]
    assert [m.id for m in log.session("s1", limit=1)] == [ids[1]]
    assert [m.id for m in log.page(limit=2)] == [ids[4], ids[3]]
    assert [m.id for m in log.page(before_id=ids[3], limit=10, agent_id="default")] == ids[2::-1]
    assert log.count() == 5 and log.count(agent_id="other") == 1 and log.count(role="tool") == 1
    assert log.count(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=2)) == 2
    assert log.count(session_id="nope") == 0
    assert log.agents() == ["default", "other"]
    assert log.max_id() == ids[-1]
    assert log.time_span() == (T0, T0 + timedelta(minutes=4))
    assert log.time_span(agent_id="nobody") is None
    s = {(i.agent_id, i.session_id): i for i in log.sessions()}
    assert s[("default", "s2")].message_count == 2
    assert s[("default", "s2")].first_at == T0 + timedelta(minutes=2)
    assert (s[("default", "s2")].first_id, s[("default", "s2")].last_id) == (ids[2], ids[3])
    assert [i.session_id for i in log.sessions(agent_id="other")] == ["s9"]


def test_around_stays_in_the_session(log: RecallLog) -> None:
    ms = log.append_many([{"content": f"m{i}", "session_id": "a" if i % 2 else "b"} for i in range(10)])
    a_ids = [m.id for m in ms if m.session_id == "a"]
    got = [m.id for m in log.around(a_ids[2], before=1, after=5)]
    assert got == a_ids[1:]
    with pytest.raises(NotFoundError):
        log.around(99_999)


def test_iter_messages_streams_in_batches(log: RecallLog) -> None:
    log.append_many([{"content": f"n{i}", "role": "user" if i % 3 else "assistant"} for i in range(25)])
    assert [m.content for m in log.iter_messages(batch=4)] == [f"n{i}" for i in range(25)]
    assert len(list(log.iter_messages(batch=4, role="assistant"))) == 9


# --- full text ---------------------------------------------------------------------------


def test_search_ranks_and_filters(log: RecallLog) -> None:
    ms = _fill(log)
    hits = log.search_text("cat")
    assert {h.id for h in hits} == {ms[0].id, ms[4].id}
    assert hits[0].id == ms[4].id  # more occurrences ranks higher
    assert hits[0].score >= hits[1].score and all(h.tier == "recall" for h in hits)
    assert "[cat]" in hits[0].snippet
    assert [h.id for h in log.search_text("cat", agent_id="default")] == [ms[0].id]
    assert [h.id for h in log.search_text("revenue", session_id="s2", role="user")] == [ms[2].id]
    assert log.search_text("revenue", role="assistant") == []
    assert [h.id for h in log.search_text("cat", until=T0)] == [ms[0].id]
    assert len(log.search_text("cat", k=1)) == 1 and log.search_text("cat", k=1, offset=1)[0].id == ms[0].id
    assert {h.id for h in log.search_text("revenue OR zebra")} == {ms[2].id}  # OR of terms


@pytest.mark.parametrize(
    "query",
    ['"', 'cat"', "AND", "cat AND", "NOT cat", "cat*", "*", "-cat", "col:cat", "content:cat", "(cat",
     "cat)", "^cat", "NEAR(cat dog)", "{content}: cat", "''", "\\", "%", "_", "cat' OR 1=1 --", "\x00cat"],
)
def test_any_string_is_a_query(log: RecallLog, query: str) -> None:
    _fill(log)
    hits = log.search_text(query)
    if any(re.fullmatch(r"\W*cat\W*", chunk) for chunk in query.replace("\x00", " ").split()):
        assert hits, query


def test_empty_queries_match_nothing(log: RecallLog) -> None:
    _fill(log)
    for q in ["", "   ", "!!!", "-- ** ()"]:
        assert log.search_text(q) == []


def test_very_common_words_stay_bounded(db: Database) -> None:
    log = RecallLog(db, common_term_docs=5, max_candidates=8)
    log.append("needle in the hay")
    log.append_many([{"content": f"the {'hay' if i % 3 == 0 else 'straw'} number {i}"} for i in range(60)])
    # "the" and "hay" are very common: a query with a rarer word is answered by the rarer word
    assert [h.text for h in log.search_text("the needle hay")] == ["needle in the hay"]
    # only common words: the newest max_candidates matches are ranked
    hits = log.search_text("hay", k=100)
    assert len(hits) == 8 and all(h.score > 0 for h in hits)
    assert {h.text for h in hits} == {f"the hay number {i}" for i in range(57, 57 - 24, -3)}
    # in (nearly) every message: the same weight for each (on SQLite a small positive one,
    # since the re-scoring's IDF log(1 + ...) stays positive; none on PostgreSQL), so equal
    # scores, and the newest come first
    hits = log.search_text("the", k=3)
    assert [h.id for h in hits] == [log.max_id(), log.max_id() - 1, log.max_id() - 2]
    assert len({round(h.score, 9) for h in hits}) == 1
    assert (hits[0].score > 0) if db.dialect == "sqlite" else hits[0].score == 0.0
    assert len(log.search_text("the", k=3, offset=60)) == 1


# --- grep --------------------------------------------------------------------------------


def test_grep_modes(log: RecallLog) -> None:
    ms = _fill(log)
    hits = log.grep(r"c[a-z]+s\b")
    assert [h.id for h in hits] == [ms[1].id, ms[4].id] and hits[0].match == "cats"
    assert [h.id for h in log.grep("CAT", ignore_case=True, agent_id="default")] == [ms[0].id, ms[1].id]
    assert log.grep("CAT") == []
    # tool records are left out unless asked for (include_tools, or role="tool")
    assert log.grep("get_weather(city=", literal=True) == []
    assert [h.id for h in log.grep("get_weather(city=", literal=True, include_tools=True)] == [ms[3].id]
    assert [h.id for h in log.grep(r"^the")] == [ms[0].id, ms[4].id]  # anchors apply per message
    assert [h.id for h in log.grep(r"mat$")] == [ms[0].id]
    assert len(log.grep("the", limit=2)) == 2
    assert [h.id for h in log.grep("e", role="tool")] == [ms[3].id]
    assert "twelve" in log.grep("twelve")[0].snippet


def test_grep_streams_many_batches(log: RecallLog) -> None:
    log.append_many([{"content": f"item {i}", "role": "user" if i % 2 else "assistant"} for i in range(300)])
    assert [h.match for h in log.grep(r"item \d*7\b", limit=1000)] == [f"item {i}" for i in range(300) if i % 10 == 7]
    assert len(log.grep(r"^item", limit=1000, role="user")) == 150  # per-message path
    hits = log.grep("item 29", literal=True, limit=1000)
    assert [h.snippet for h in hits] == ["item 29"] + [f"item 29{i}" for i in range(10)]


def test_grep_never_matches_across_messages(log: RecallLog) -> None:
    log.append_many([{"content": "ends with alpha"}, {"content": "beta starts here"}])
    assert log.grep(r"alpha\s+beta") == []
    assert log.grep(r"alpha.beta") == []
    assert log.grep("alpha\nbeta", literal=True) == []
    assert [h.match for h in log.grep(r"here|ends")] == ["ends", "here"]


def test_grep_case_folding_beyond_ascii(log: RecallLog) -> None:
    kelvin = "\u212a"  # KELVIN SIGN folds to k
    m = log.append(f"{kelvin}itten")
    assert [h.id for h in log.grep("kitten", ignore_case=True)] == [m.id]
    assert [h.id for h in log.grep("(?i)kitten")] == [m.id]


def test_grep_bad_patterns(log: RecallLog) -> None:
    _fill(log)
    for bad in ["(", "[a-", "a{2,1}", ""]:
        with pytest.raises(QueryError):
            log.grep(bad)
    assert log.grep("(", literal=True, include_tools=True) != []


def test_grep_catastrophic_backtracking_times_out(log: RecallLog) -> None:
    log.append("a" * 40 + "!")
    for pattern in (r"^(a|aa)+$", r"(a|aa)+c"):  # per-message path, then batch path
        with pytest.raises(QueryError, match="timeout_s"):
            log.grep(pattern, timeout_s=0.1)


# --- forget ------------------------------------------------------------------------------


def test_forget_is_explicit_and_audited(log: RecallLog) -> None:
    ms = _fill(log)
    with pytest.raises(ValidationError):
        log.forget(reason="everything")
    with pytest.raises(ValidationError):
        log.forget(ids=[ms[0].id], reason="  ")
    assert log.forget(ids=[ms[0].id, 12345], reason="user asked", actor="alice") == [ms[0].id]
    assert log.forget(session_id="s2", agent_id="default", reason="cleanup") == [ms[2].id, ms[3].id]
    assert log.forget(ids=[ms[1].id], agent_id="other", reason="no match") == []
    with pytest.raises(NotFoundError):
        log.get(ms[0].id)
    assert {h.id for h in log.search_text("cat")} == {ms[4].id}
    assert log.grep("revenue") == []
    audit = log.forget_log()
    assert [a["message_count"] for a in audit] == [1, 2, 0]
    assert audit[0]["actor"] == "alice" and audit[0]["reason"] == "user asked"
    assert audit[0]["message_ids"] == [ms[0].id] and audit[1]["selector"] == {"session_id": "s2", "agent_id": "default"}


def test_ids_are_never_reused(log: RecallLog) -> None:
    ms = log.append_many([{"content": "a"}, {"content": "b"}])
    log.forget(ids=[ms[1].id], reason="test")
    assert log.append("c").id == ms[1].id + 1


def test_forget_hook(log: RecallLog) -> None:
    seen: list[list[int]] = []
    log.add_forget_hook(lambda conn, ids: seen.append(ids))
    m = log.append("x")
    log.forget(ids=[m.id], reason="r")
    assert seen == [[m.id]]



def test_tool_records_left_out_after_ranking_give_the_joined_ranking(tmp_path: Path) -> None:
    """On SQLite the default filter (tool records left out) is checked on the ranked ids, not
    joined to every match; the results are those of the joined query, also when the best
    matches are nearly all tool records (the ranking is then redone with the join). A query of
    frequent words alone is ranked over the newest ``max_candidates`` matches of every role,
    tool records among them then left out."""
    from memory.recall.log import RECALL_FTS
    from memory.text.fts import bounded_fts_ids, fts_phrases, phrase_counts
    from memory.text.query import RecallFilter

    d = Database.open(str(tmp_path / "m.db"))
    log = RecallLog(d, common_term_docs=40, max_candidates=40)
    rows = []
    for i in range(400):
        tool = i % 3 != 0 or 300 <= i < 390  # the newest stretch is nearly all tool records
        body = "deploy " * (1 + i % 4) + ("ledger " if i % 17 == 0 else "") + f"item{i % 50} note"
        rows.append({"content": body, "role": "tool" if tool else "user", "session_id": "s",
                     "tool_name": "run" if tool else None, "created_at": T0 + timedelta(seconds=i)})  # fmt: skip
    log.append_many(rows)
    for query in ("ledger", "deploy", "deploy ledger item7", "note", "item3 note"):
        f = RecallFilter.of(None).sql()
        with d.read() as conn:
            joined = bounded_fts_ids(
                conn, d.dialect, fts_phrases(query), RECALL_FTS, f.sql(), f.params, k=60, offset=0,
                common_docs=40, max_candidates=40, score_phrases=phrase_counts(query, name_weight=1.5),
            )  # fmt: skip
        got = [(h.id, h.score) for h in log.search_text(query, k=60)]
        assert [i for i, _ in got] == [i for i, _ in joined], query
        assert all(h.role != "tool" for h in log.search_text(query, k=60))
    # "often": in every 4th row, frequent (over 40 matches) but not in half the rows.
    log.append_many([{"content": ("often " if i % 4 == 0 else "") + f"row{i} text", "session_id": "t",
                      "role": "tool" if i % 8 == 0 else "user", "created_at": T0 + timedelta(hours=1, seconds=i)}
                     for i in range(400)])  # fmt: skip
    with d.read() as conn:
        newest = [int(r[0]) for r in conn.execute(text(
            "SELECT rowid FROM recall_fts WHERE recall_fts MATCH 'often' ORDER BY rowid DESC LIMIT 40"))]  # fmt: skip
    got = log.search_text("often", k=100)
    assert {h.id for h in got} == {m.id for m in log.get_many(newest) if m.role != "tool"}
    assert len(got) == 20
    d.close()
