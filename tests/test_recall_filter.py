"""One recall filter value: built once at the edge (ids checked, ISO dates parsed once), handed
unchanged through the operation, the manager, the recall search and the log, and meaning the
same in every search mode and over both tiers.

Real store (SQLite + embedded Chroma) with the deterministic ``HashEmbedder``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from memory.errors import ValidationError
from memory.manager import MemoryManager
from memory.ops.registry import call
from memory.ops.values import OpContext
from memory.text.query import RecallFilter
from memory.vectors.embeddings import HashEmbedder

MAY = datetime(2024, 5, 1, tzinfo=UTC)
JUNE = datetime(2024, 6, 1, tzinfo=UTC)


@pytest.fixture()
def mem(tmp_path: Path) -> Iterator[MemoryManager]:
    m = MemoryManager.open(tmp_path / "store", embedder=HashEmbedder(), background_embed=False)
    m.recall.append("teal kettle in may", session_id="s1", created_at=MAY)
    m.recall.append("teal kettle in june", session_id="s2", created_at=JUNE)
    m.recall.append("teal kettle tool output", role="tool", session_id="s2", created_at=JUNE)
    m.recall.append("teal kettle other agent", agent_id="other", session_id="o1", created_at=JUNE)
    m.archival.insert("teal kettle manual")
    m.embed_pending()
    yield m
    m.close()


def test_the_value_parses_and_checks_once() -> None:
    f = RecallFilter(session_id="s1", role="user", since="2024-05-01", until=date(2024, 6, 1))
    assert f.since == MAY and f.until == JUNE  # ISO text and dates become UTC datetimes
    assert RecallFilter(since="2024-05-01T02:00:00+02:00").since == datetime(2024, 5, 1, tzinfo=UTC)
    assert RecallFilter(since=datetime(2024, 5, 1)).since == MAY  # no zone: UTC
    assert RecallFilter(since=f.since) == RecallFilter(since=MAY)
    with pytest.raises(ValidationError, match="since must be an ISO 8601 date"):
        RecallFilter(since="last tuesday")
    with pytest.raises(ValidationError, match="unknown role 'robot'"):
        RecallFilter(role="robot")
    with pytest.raises(ValidationError, match="session_id must be str"):
        RecallFilter(session_id=7)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="unknown filter 'sesion_id'"):
        RecallFilter.of(None, sesion_id="s1")
    # keywords narrow a given value; the value itself never changes
    base = RecallFilter(agent_id="default")
    assert RecallFilter.of(base, role="user") == RecallFilter(agent_id="default", role="user")
    assert base.role is None
    assert RecallFilter.of(base) is base


def test_tool_records_are_left_out_of_searches_unless_asked() -> None:
    assert RecallFilter().leaves_out == "tool"
    assert RecallFilter(include_tools=True).leaves_out is None
    assert RecallFilter(role="tool").leaves_out is None


@pytest.mark.parametrize("mode", ["text", "vector", "hybrid"])
def test_every_layer_takes_the_same_value(mem: MemoryManager, mode: str) -> None:
    june = RecallFilter(agent_id="default", since="2024-05-15")
    want = {"teal kettle in june"}
    assert {h.text for h in mem.search_recall("teal kettle", mode=mode, where=june)} == want
    assert {h.text for h in mem.recall_search.search("teal kettle", mode=mode, where=june)} == want
    assert {h.text for h in mem.search("teal kettle", tiers=["recall"], mode=mode, where=june)} == want
    # keywords are the same filter written out
    kw = mem.search_recall("teal kettle", mode=mode, agent_id="default", since="2024-05-15")
    assert {h.text for h in kw} == want
    tools = RecallFilter.of(june, include_tools=True)
    assert {h.text for h in mem.search_recall("teal kettle", mode=mode, where=tools)} == want | {"teal kettle tool output"}


def test_text_search_and_grep_of_the_log_take_it(mem: MemoryManager) -> None:
    may = RecallFilter(until="2024-05-31")
    assert [h.text for h in mem.recall.search_text("kettle", where=may)] == ["teal kettle in may"]
    assert [h.snippet for h in mem.recall.grep("kettle in", where=may)] == ["teal kettle in may"]
    assert len(mem.recall.grep("kettle", where=RecallFilter(role="tool"))) == 1


def test_search_over_both_tiers_with_a_time_range(mem: MemoryManager) -> None:
    # Both tiers with since/until used to raise TypeError (the dates were passed twice).
    ctx = OpContext(mem)
    hits = call("search", ctx, {"query": "teal kettle", "tier": "all", "since": "2024-05-15", "until": "2030-01-01"})
    assert {(h.tier, h.text) for h in hits} == {("recall", "teal kettle in june"), ("archival", "teal kettle manual")}
    hits = call("search", ctx, {"query": "teal kettle", "tier": "all", "until": "2024-05-31"})
    assert {(h.tier, h.text) for h in hits} == {("recall", "teal kettle in may")}
    # the manager's own cross-tier search, keywords and value alike
    both = mem.search("teal kettle", since="2024-05-15", until="2030-01-01", agent_id="default")
    assert {h.text for h in both} == {"teal kettle in june", "teal kettle manual"}
    again = mem.search("teal kettle", where=RecallFilter(agent_id="default", since="2024-05-15", until="2030-01-01"))
    assert [h.id for h in again] == [h.id for h in both]


def test_the_operations_scope_reads_to_the_agent(mem: MemoryManager) -> None:
    ctx = OpContext(mem)
    assert ctx.recall_filter(role="user") == RecallFilter(agent_id="default", role="user")
    assert OpContext(mem, agent_scoped=False).recall_filter() == RecallFilter()
    grep = call("grep", ctx, {"pattern": "kettle", "tier": "recall", "since": "2024-05-15"})
    assert [h.snippet for h in grep] == ["teal kettle in june"]
    store_wide = call("grep", OpContext(mem, agent_scoped=False), {"pattern": "kettle", "tier": "recall", "since": "2024-05-15"})
    assert {h.agent_id for h in store_wide} == {"default", "other"}


def test_session_search_takes_it(mem: MemoryManager) -> None:
    found = mem.search_sessions("teal kettle", mode="text", where=RecallFilter(agent_id="default", until="2024-05-31"))
    assert [s.session_id for s in found] == ["s1"]


def test_forget_by_pattern_reaches_tool_records(mem: MemoryManager) -> None:
    # Every other selection (ids, session, time) already did; a pattern left them behind.
    ctx = OpContext(mem)
    result = call("forget", ctx, {"reason": "test", "pattern": "tool output", "dry_run": False})
    assert len(result.ids) == 1
    assert mem.recall.grep("tool output", where=RecallFilter(include_tools=True)) == []
