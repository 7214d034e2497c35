"""Schema migrations of the recall and blocks components: fresh databases and upgrades; how the
database reads a full disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from memory import blocks as blocks_mod
from memory.blocks import WorkingMemory
from memory.db import Database, Migration
from memory.errors import MigrationError
from memory.recall import schema as recall_schema
from memory.recall.log import RecallLog


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    url = str(tmp_path / "memory.db") if request.param == "sqlite" else request.getfixturevalue("pg_url")
    d = Database.open(url)
    yield d
    d.close()


def test_fresh_database_migrates_from_empty(db: Database) -> None:
    assert db.schema_version("recall") == 0 and db.schema_version("blocks") == 0
    log = RecallLog(db)
    wm = WorkingMemory(db)
    assert db.schema_version("recall") == len(recall_schema.MIGRATIONS) == 5
    assert db.schema_version("blocks") == len(blocks_mod.MIGRATIONS) == 2
    # opening again is a no-op
    RecallLog(db)
    WorkingMemory(db)
    m = log.append("fresh start")
    assert log.search_text("fresh")[0].id == m.id
    assert wm.create("b", "x", metadata={"k": 1}).metadata == {"k": 1}
    assert db.integrity_check() == "ok"


def test_recall_upgrades_from_version_1_and_keeps_rows(db: Database) -> None:
    db.migrate("recall", recall_schema.MIGRATIONS[:1])
    with db.write() as conn:
        for i, content in enumerate(["an old message about zebras", "another old one"]):
            conn.execute(
                text(
                    "INSERT INTO recall_messages (agent_id, session_id, role, content, created_us, tokens,"
                    " metadata) VALUES ('a', 's', 'user', :c, :t, 3, '{}')"
                ),
                {"c": content, "t": 1_700_000_000_000_000 + i},
            )
    assert db.schema_version("recall") == 1
    log = RecallLog(db)
    assert db.schema_version("recall") == 5
    assert [m.content for m in log.session("s")] == ["an old message about zebras", "another old one"]
    assert [h.text for h in log.search_text("zebras")] == ["an old message about zebras"]  # indexed by v2
    new = log.append("a new message about zebras", session_id="s", agent_id="a")
    assert new.id == 3
    assert len(log.search_text("zebras")) == 2
    assert log.forget(ids=[1], reason="upgrade test") == [1]  # v3 audit table exists
    assert len(log.forget_log()) == 1
    # v5: rows written before keys existed have none; new keyed rows are unique per agent
    assert all(m.key is None for m in log.session("s"))
    assert log.append("keyed", session_id="s", agent_id="a", key="k1").key == "k1"
    assert log.append("keyed again", session_id="s", agent_id="a", key="k1").content == "keyed"
    assert log.count(agent_id="a") == 3


def test_blocks_upgrade_from_version_1_and_keep_rows(db: Database) -> None:
    db.migrate("blocks", blocks_mod.MIGRATIONS[:1])
    with db.write() as conn:
        conn.execute(
            text(
                "INSERT INTO memory_blocks (agent_id, label, value, char_limit, description, read_only,"
                " created_us, updated_us) VALUES ('default', 'persona', 'old value', 100, 'd', 0, 1, 1)"
            )
        )
    wm = WorkingMemory(db)
    assert db.schema_version("blocks") == 2
    b = wm.get("persona")
    assert (b.value, b.limit, b.metadata) == ("old value", 100, {})
    assert wm.append("persona", "more").value == "old value\nmore"


def test_a_newer_schema_is_refused(db: Database) -> None:
    def noop(conn, dialect):  # type: ignore[no-untyped-def]
        return None

    db.migrate("recall", [*recall_schema.MIGRATIONS, Migration(len(recall_schema.MIGRATIONS) + 1, "from the future", noop)])
    with pytest.raises(MigrationError, match="newer"):
        RecallLog(db)


def test_the_write_path_and_is_disk_full_read_one_list_of_full_disk_texts(tmp_path: Path) -> None:
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from memory.db import is_disk_full

    d = Database.open(str(tmp_path / "memory.db"))
    try:
        for said in ("database or disk is full", "[Errno 28] No space left on device"):
            exc = OperationalError("INSERT ...", {}, sqlite3.OperationalError(said))
            assert is_disk_full(exc), said
            assert "is full" in (d._disk_full(exc) or ""), said  # the write path agrees
        other = OperationalError("INSERT ...", {}, sqlite3.OperationalError("no such table: x"))
        assert not is_disk_full(other) and d._disk_full(other) is None
    finally:
        d.close()
    # PostgreSQL's SQLSTATE 53100 text, from a served database: the HTTP layer reads it as full too
    assert is_disk_full(RuntimeError('could not extend file "base/16384/2619": disk full'))
