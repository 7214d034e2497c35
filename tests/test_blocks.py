"""Working-memory blocks on SQLite and PostgreSQL: edits, limits, history, rendering."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Iterator
from pathlib import Path

import pytest

from memory.blocks import Block, WorkingMemory
from memory.db import Database
from memory.errors import BlockLimitError, NotFoundError, ReadOnlyBlockError, ValidationError


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    url = str(tmp_path / "memory.db") if request.param == "sqlite" else request.getfixturevalue("pg_url")
    d = Database.open(url)
    yield d
    d.close()


@pytest.fixture()
def wm(db: Database) -> WorkingMemory:
    return WorkingMemory(db, agent_id="ada")


def test_create_get_list(wm: WorkingMemory) -> None:
    b = wm.create("persona", "I am Ada.", limit=100, description="who I am", metadata={"v": 1})
    assert isinstance(b, Block) and b.value == "I am Ada." and b.limit == 100 and not b.read_only
    assert wm.get("persona") == b
    wm.create("human", description="the user")
    assert [x.label for x in wm.list()] == ["persona", "human"]  # creation order
    assert wm.as_dict() == {"persona": "I am Ada.", "human": ""}
    assert b.to_dict()["metadata"] == {"v": 1}
    with pytest.raises(ValidationError, match="already exists"):
        wm.create("persona")
    with pytest.raises(NotFoundError, match="persona, human"):
        wm.get("nope")


def test_edits(wm: WorkingMemory) -> None:
    wm.create("notes", "")
    assert wm.append("notes", "first").value == "first"  # no separator on an empty block
    assert wm.append("notes", "second").value == "first\nsecond"
    assert wm.append("notes", "third", separator=" | ").value == "first\nsecond | third"
    assert wm.replace("notes", "second | third", "2nd").value == "first\n2nd"
    assert wm.insert("notes", "zero", line=0).value == "zero\nfirst\n2nd"
    assert wm.insert("notes", "one-and-a-half", line=2).value == "zero\nfirst\none-and-a-half\n2nd"
    assert wm.insert("notes", "last").value == "zero\nfirst\none-and-a-half\n2nd\nlast"
    assert wm.set("notes", "reset").value == "reset"
    assert wm.rethink("notes", "rethought").value == "rethought"
    assert wm.get("notes").value == "rethought"


def test_replace_needs_exactly_one_occurrence(wm: WorkingMemory) -> None:
    wm.create("b", "cat and cat")
    with pytest.raises(ValidationError, match="2 times"):
        wm.replace("b", "cat", "dog")
    with pytest.raises(ValidationError, match="0 times"):
        wm.replace("b", "cow", "dog")
    with pytest.raises(ValidationError):
        wm.replace("b", "", "dog")
    assert wm.get("b").value == "cat and cat"


def test_insert_line_bounds(wm: WorkingMemory) -> None:
    wm.create("b", "a\nb")
    with pytest.raises(ValidationError, match="past the end"):
        wm.insert("b", "x", line=3)
    with pytest.raises(ValidationError):
        wm.insert("b", "x", line=-2)
    assert wm.insert("b", "x", line=2).value == "a\nb\nx"


def test_limits_say_by_how_much(wm: WorkingMemory) -> None:
    wm.create("small", "12345", limit=8)
    with pytest.raises(BlockLimitError) as exc:
        wm.append("small", "6789")  # "12345\n6789" = 10 characters
    assert exc.value.overflow == 2 and "2 over its limit of 8" in str(exc.value)
    with pytest.raises(BlockLimitError):
        wm.set("small", "x" * 9)
    with pytest.raises(BlockLimitError):
        wm.create("big", "x" * 11, limit=10)
    with pytest.raises(BlockLimitError):
        wm.update_meta("small", limit=4)
    assert wm.get("small").value == "12345" and wm.get("small").limit == 8
    assert wm.set("small", "x" * 8).value == "x" * 8  # exactly at the limit is fine


def test_read_only(wm: WorkingMemory) -> None:
    wm.create("rules", "be kind", read_only=True)
    for edit in (
        lambda: wm.set("rules", "x"),
        lambda: wm.append("rules", "x"),
        lambda: wm.replace("rules", "kind", "x"),
        lambda: wm.insert("rules", "x"),
        lambda: wm.rethink("rules", "x"),
        lambda: wm.delete("rules"),
    ):
        with pytest.raises(ReadOnlyBlockError):
            edit()
    assert wm.get("rules").value == "be kind"
    wm.update_meta("rules", read_only=False, description="unlocked")
    assert wm.set("rules", "be brave").value == "be brave"


def test_history_keeps_everything(wm: WorkingMemory) -> None:
    wm.create("b", "v1")
    wm.set("b", "v2", actor="agent")
    wm.rethink("b", "v3", actor="user")
    wm.update_meta("b", limit=50)
    wm.delete("b", actor="user")
    h = wm.history("b")
    assert [e.action for e in h] == ["delete", "update_meta", "rethink", "set", "create"]
    assert (h[0].old_value, h[0].new_value) == ("v3", None)
    assert (h[2].actor, h[2].old_value, h[2].new_value) == ("user", "v2", "v3")
    assert '"limit": 50' in (h[1].new_value or "")
    assert h[0].at >= h[-1].at and h[0].to_dict()["label"] == "b"
    with pytest.raises(NotFoundError):
        wm.get("b")
    wm.create("b", "again")  # a label can be reused; history continues
    assert len(wm.history("b")) == 6 and len(wm.history(limit=2)) == 2


def test_agents_are_separate(db: Database) -> None:
    a = WorkingMemory(db, agent_id="a")
    b = WorkingMemory(db, agent_id="b")
    a.create("persona", "A")
    b.create("persona", "B")
    assert a.get("persona").value == "A" and b.get("persona").value == "B"
    a.delete("persona")
    assert b.get("persona").value == "B" and a.list() == [] and b.history() != []


def test_bad_input(wm: WorkingMemory) -> None:
    for label in ["", "has space", "1abc", "x" * 101, "a/b", "<tag>"]:
        with pytest.raises(ValidationError, match="label"):
            wm.create(label)
    with pytest.raises(ValidationError, match="NUL"):
        wm.create("b", "a\x00b")
    with pytest.raises(ValidationError, match="surrogate"):
        wm.create("b", "\ud800")
    with pytest.raises(ValidationError, match="bytes"):
        wm.create("b", b"bytes")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        wm.create("b", limit=0)
    with pytest.raises(ValidationError):
        wm.create("b", metadata={"x": object()})
    wm.create("b", "ok")
    with pytest.raises(ValidationError):
        wm.append("b", "\x00")
    assert wm.get("b").value == "ok" and len(wm.history("b")) == 1


def test_render_format(wm: WorkingMemory) -> None:
    wm.create("persona", "I am Ada.\nI like maths.", limit=100, description="who I am")
    wm.create("rules", "be kind", limit=20, read_only=True)
    assert wm.render() == (
        "<memory_blocks>\n"
        "<persona>\n<description>\nwho I am\n</description>\n"
        "<metadata>\n- chars_current=23\n- chars_limit=100\n- read_only=false\n</metadata>\n"
        "<value>\nI am Ada.\nI like maths.\n</value>\n</persona>\n"
        "<rules>\n<description>\n\n</description>\n"
        "<metadata>\n- chars_current=7\n- chars_limit=20\n- read_only=true\n</metadata>\n"
        "<value>\nbe kind\n</value>\n</rules>\n"
        "</memory_blocks>"
    )
    assert WorkingMemory(wm.db, agent_id="empty").render() == "<memory_blocks>\n</memory_blocks>"


def _appender(path: str, tag: str, n: int) -> None:
    wm = WorkingMemory(Database.open(path), agent_id="shared")
    for i in range(n):
        wm.append("log", f"{tag}-{i}", actor=tag)


def test_two_processes_append_without_losing_edits(tmp_path: Path) -> None:
    path = str(tmp_path / "memory.db")
    WorkingMemory(Database.open(path), agent_id="shared").create("log", limit=100_000)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_appender, args=(path, tag, 40)) for tag in ("p", "q")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    wm = WorkingMemory(Database.open(path), agent_id="shared")
    lines = wm.get("log").value.split("\n")
    assert sorted(lines) == sorted([f"p-{i}" for i in range(40)] + [f"q-{i}" for i in range(40)])
    assert [x for x in lines if x.startswith("p-")] == [f"p-{i}" for i in range(40)]
    assert len(wm.history("log", limit=1000)) == 81
