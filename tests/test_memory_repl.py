"""The memory tiers inside the REPL: views, functions, writes, safety and the prompt summary.

Real stores (SQLite + embedded Chroma, hashing embedder), the real sandbox worker; no LLM.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from memory_corpus import open_store

from agents.repl.binding import MemoryBinding, bind_memory
from agents.repl.prompt import memory_summary
from rlm_core.sandbox.repl import Sandbox

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def _populate(m: Any) -> None:
    rows = []
    for i in range(1230):  # more than two pages of the views
        rows.append(
            {
                "content": f"message {i} talks about topic{i % 7}",
                "role": "user" if i % 2 == 0 else "assistant",
                "session_id": f"s{i // 100:02d}",
                "created_at": T0 + timedelta(minutes=i),
            }
        )
    rows[640]["content"] = "the blue heron nests by the old mill"
    m.recall.append_many(rows)
    m.archival.insert(
        "Heron field guide: herons nest in colonies.", source="guide.md", tags=("birds",)
    )
    m.archival.insert("Mill history: the old mill was built in 1820.", source="history.md")
    m.working.create("persona", "I keep notes on birds.", limit=200)
    m.working.create("human", "Name: Ada.", limit=60)
    m.embed_pending()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One populated store, copied by the tests that change it."""
    path = tmp_path_factory.mktemp("template") / "store"
    m = open_store(path, embed_recall=True)
    _populate(m)
    m.close()
    return path


@pytest.fixture(scope="module")
def shared(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A REPL over a copy of the template, for the tests that only read."""
    path = tmp_path_factory.mktemp("shared") / "store"
    shutil.copytree(template, path)
    m = open_store(path, embed_recall=True)
    b = bind_memory(m)
    with Sandbox(functions=b.functions, prelude=b.prelude) as sb:
        yield sb
    m.close()


@pytest.fixture()
def mem(template: Path, tmp_path: Path) -> Iterator[Any]:
    shutil.copytree(template, tmp_path / "store")
    m = open_store(tmp_path / "store", embed_recall=True)
    yield m
    m.close()


@pytest.fixture()
def binding(mem: Any) -> MemoryBinding:
    return bind_memory(mem)


@pytest.fixture()
def repl(binding: MemoryBinding) -> Iterator[Sandbox]:
    with Sandbox(functions=binding.functions, prelude=binding.prelude) as sb:
        yield sb


def run(sb: Sandbox, code: str) -> str:
    res = sb.run(code)
    return res.render()


def ok(sb: Sandbox, code: str) -> str:
    res = sb.run(code)
    assert res.error is None, res.render()
    return res.stdout.strip()


# --- the views ---------------------------------------------------------------------------


def test_recall_view_is_a_lazy_sequence(shared: Sandbox) -> None:
    repl = shared
    assert ok(repl, "len(recall)") == "1230"
    assert ok(repl, "recall[0].content") == "'message 0 talks about topic0'"
    assert ok(repl, "recall[-1].id, recall[1229].id") == "(1230, 1230)"
    assert ok(repl, "[m.id for m in recall[-3:]]") == "[1228, 1229, 1230]"
    assert ok(repl, "[m.id for m in recall[10:1010:250]]") == "[11, 261, 511, 761]"
    assert ok(repl, "[m.id for m in recall[::-600]]") == "[1230, 630, 30]"
    assert ok(repl, "len(recall[100:1300])") == "1130"  # crosses pages, clipped at the end
    assert ok(repl, "sum(1 for _ in recall)") == "1230"
    assert ok(repl, "recall.get(641).content") == "'the blue heron nests by the old mill'"
    # one message prints on one line, with id, time, session and role
    assert (
        ok(repl, "recall[640]")
        == "#641 [2024-05-01 20:40 s06 user] the blue heron nests by the old mill"
    )


def test_recall_sessions_and_transcripts(shared: Sandbox) -> None:
    repl = shared
    assert ok(repl, "len(recall.sessions())") == "13"
    assert (
        ok(repl, "recall.sessions(1)[0].session_id, recall.sessions(1)[0].message_count")
        == "('s12', 30)"
    )
    out = ok(repl, "print(recall.text(session='s06', max_chars=300))")
    assert out.startswith("[#601 2024-05-01 20:00 user] message 600 talks about topic5")
    assert "cut at max_chars=300" in out
    assert ok(repl, "print(recall.text(640, 642))").splitlines() == [
        "[#641 2024-05-01 20:40 user] the blue heron nests by the old mill",
        "[#642 2024-05-01 20:41 assistant] message 641 talks about topic4",
    ]
    assert "1,230 messages in 13 sessions" in ok(repl, "print(repr(recall))")


def test_view_errors_are_readable(shared: Sandbox) -> None:
    repl = shared
    assert "IndexError: recall index 5000 out of range: it holds 1230 messages" in run(
        repl, "recall[5000]"
    )
    assert "recall indices must be integers or slices" in run(repl, "recall['x']")
    assert "no message with id 99999" in run(repl, "recall.get(99999)")
    assert "no session 'nope'" in run(repl, "recall.session('nope')")
    assert "working memory is read-only here: use note(label, text)" in run(
        repl, "working['human'] = 'x'"
    )


def test_archival_and_working_views(shared: Sandbox) -> None:
    repl = shared
    assert ok(repl, "len(archival)") == "2"
    assert ok(repl, "[c.source for c in archival]") == "['guide.md', 'history.md']"
    assert ok(repl, "archival.sources()") == "[('guide.md', 1), ('history.md', 1)]"
    assert ok(repl, "archival.get(2).text") == "'Mill history: the old mill was built in 1820.'"
    assert (
        ok(repl, "dict(working)") == "{'persona': 'I keep notes on birds.', 'human': 'Name: Ada.'}"
    )
    assert ok(repl, "working.blocks()[1].limit") == "60"


def test_archival_iteration_pages(mem: Any) -> None:
    mem.archival.insert_many([f"chunk {i}" for i in range(1100)])
    b = bind_memory(mem)
    with Sandbox(functions=b.functions, prelude=b.prelude) as sb:
        assert (
            ok(sb, "ids = [c.id for c in archival]; len(ids), ids == sorted(set(ids))")
            == "(1102, True)"
        )


def test_agent_scope_maps_positions_past_other_agents(mem: Any) -> None:
    mem.recall.append_many(
        [
            {"content": f"{a} says {i}", "agent_id": a, "session_id": f"{a}-1"}
            for i in range(5)
            for a in ("ann", "bob")
        ]
    )
    b = bind_memory(mem, agent_id="bob")
    with Sandbox(functions=b.functions, prelude=b.prelude) as sb:
        assert (
            ok(sb, "len(recall), [m.content for m in recall[1:3]]")
            == "(5, ['bob says 1', 'bob says 2'])"
        )
        assert ok(sb, "recall[-1].content, len(recall.sessions())") == "('bob says 4', 1)"
        assert "for agent 'bob'" in run(sb, "recall.get(1)")
        assert ok(sb, "len(grep('says'))") == "5"


# --- the functions -----------------------------------------------------------------------


def test_grep_tiers_and_filters(shared: Sandbox) -> None:
    repl = shared
    assert ok(repl, "[h.id for h in grep('heron', tier='recall')]") == "[641]"
    assert ok(repl, "len(grep('HERON'))") == "0"  # case matters unless asked
    assert (
        ok(repl, "[(h.tier, h.id) for h in grep('(?i)HERON')]")  # every tier by default
        == "[('recall', 641), ('archival', 1)]"
    )
    assert ok(repl, "len(grep('(?i)heron', ignore_case=True, limit=1))") == "1"  # one limit, all tiers
    assert ok(repl, "len(grep('topic3', session_id='s01'))") == "15"
    assert ok(repl, "len(grep('topic3', 'recall', False, False, 100, 's01', 'user'))") == "7"
    assert (
        ok(repl, "len(grep('topic', since='2024-05-01T20:00', until='2024-05-01 20:09'))") == "10"
    )
    assert ok(repl, "len(grep('topic', limit=5))") == "5"
    hit = ok(repl, "h = grep('heron')[0]; h.session_id, h.role, h.match, h.created_at.isoformat()")
    assert hit == "('s06', 'user', 'heron', '2024-05-01T20:40:00+00:00')"
    assert ok(repl, "grep('heron')").startswith("#641 recall [2024-05-01 20:40 s06 user]: ")


def test_function_errors_reach_the_model_readably(shared: Sandbox) -> None:
    repl = shared
    assert "QueryError: invalid regular expression '('" in run(repl, "grep('(')")
    assert "ValidationError: grep: argument 'tier' must be one of 'all', 'recall', 'archival'" in run(
        repl, "grep('x', tier='everything')"
    )
    assert "'since' must be an ISO 8601 date or time such as 2024-05-01" in run(
        repl, "grep('x', since='last tuesday')"
    )
    assert "'limit' must be less than or equal to 1000" in run(repl, "grep('x', limit=10**6)")
    assert "'limit' must be less than or equal to 1000" in run(repl, "grep('x', limit=2**70)")
    assert "'k' must be an integer" in run(repl, "search('x', k='ten')")
    assert "'k' must be a finite integer" in run(repl, "search('x', k=float('nan'))")
    assert "at most 9 positional" in run(repl, "grep(*range(10))")
    assert "is not plain data" in run(repl, "grep(object())")


def test_search_functions(shared: Sandbox) -> None:
    repl = shared
    out = ok(repl, "[(h.tier, h.id) for h in search('heron mill', k=4)]")
    assert "('recall', 641)" in out and ("('archival', 1)" in out or "('archival', 2)" in out)
    assert ok(repl, "{h.tier for h in recall_search('heron', k=3)}") == "{'recall'}"
    assert ok(repl, "[h.source for h in archival_search('heron', k=1)]") == "['guide.md']"
    assert ok(repl, "[h.id for h in archival_search('mill', tags=['birds'])]") == "[1]"
    assert ok(repl, "search('heron', tier='recall')[0].id") == "641"
    assert ok(repl, "[m.id for m in peek(641, 2, 1)]") == "[639, 640, 641, 642]"
    assert ok(repl, "[m.id for m in peek(601, 2, 1)]") == "[601, 602]"  # first of its session


def test_search_failure_inside_the_parent_is_readable(mem: Any, binding: MemoryBinding) -> None:
    from memory.errors import IndexError_

    def broken(*_a: Any, **_k: Any) -> Any:
        raise IndexError_("the vector index disagrees with SQLite; run rlmem reindex")

    mem.search_recall = broken
    with Sandbox(functions=binding.functions, prelude=binding.prelude) as sb:
        out = run(sb, "recall_search('heron')")
        assert "IndexError_: the vector index disagrees with SQLite; run rlmem reindex" in out
        assert ok(sb, "len(grep('heron', tier='recall'))") == "1"  # the REPL goes on


# --- writes ------------------------------------------------------------------------------


def test_remember_and_note_are_the_logged_writes(
    mem: Any, repl: Sandbox, binding: MemoryBinding
) -> None:
    cid = int(ok(repl, "remember('Ada prefers tea', tags=['prefs'])"))
    chunk = mem.archival.get(cid)
    assert chunk.text == "Ada prefers tea" and chunk.tags == ("prefs",) and chunk.source == "rlm"
    assert chunk.metadata["written_by"] == "rlm"
    assert ok(repl, "print(note('human', 'Likes tea.'))") == "block 'human' now holds 21 characters"
    assert mem.working.get("human").value == "Name: Ada.\nLikes tea."
    assert mem.working.history("human")[0].actor == "rlm"
    assert [w["op"] for w in binding.writes] == ["remember", "note"]
    # refused edits change nothing and say why
    out = run(repl, "note('human', 'x' * 100)")
    assert (
        "BlockLimitError: block 'human' would hold 122 characters, 62 over its limit of 60" in out
    )
    assert ok(repl, "note('fresh', 'first line')") == "\"block 'fresh' now holds 10 characters\""
    assert mem.working.get("fresh").value == "first line"  # created on first write
    assert "non-empty string" in run(repl, "remember('')")
    assert mem.working.get("human").value == "Name: Ada.\nLikes tea."
    assert ok(repl, "working['human']") == "'Name: Ada.\\nLikes tea.'"


# --- safety ------------------------------------------------------------------------------


def _fingerprint(mem: Any) -> str:
    h = hashlib.sha256()
    for m in mem.recall.iter_messages(batch=5000):
        h.update(f"{m.id}|{m.session_id}|{m.role}|{m.content}".encode())
    return h.hexdigest()


def test_model_code_cannot_change_stored_messages(mem: Any, repl: Sandbox, tmp_path: Path) -> None:
    before = _fingerprint(mem)
    db = str(mem.config.db_target)
    attempts = {
        "sqlite": f"import sqlite3\nc = sqlite3.connect({db!r})\nc.execute('DELETE FROM recall_messages')\nc.commit()",
        "sqlite uri": f"import sqlite3\nsqlite3.connect('file:{db}?mode=rw', uri=True).execute('DELETE FROM recall_messages')",
        "open": f"open({db!r}, 'r+b').write(b'x' * 4096)",
        "truncate": f"import os\nos.truncate({db!r}, 0)",
        "remove": f"import os\nos.remove({db!r})",
        "symlink": f"import os, sqlite3\nos.symlink({db!r}, 'link.db')\nsqlite3.connect('link.db').execute('DELETE FROM recall_messages')",
        "private op": "_memory('forget')",
        "private dunder": "_memory('__init__', None)",
        "bad args": "_memory('recall_slice', 'a', [1])",
        "bad session": "_memory('recall_session', None)",
        "ctypes": "import ctypes",
        "subprocess": f"import subprocess\nsubprocess.run(['sqlite3', {db!r}, 'DELETE FROM recall_messages'])",
        "patch view": "recall._call['recall_slice'] = lambda *a: [{'id': 1}]",
        "repoint view": "recall._call = {}",
    }
    for name, code in attempts.items():
        res = repl.run(code)
        assert res.error is not None, f"{name}: no error:\n{res.render()}"
    ok(repl, "grep = None\nrecall = []\n_memory = print")
    # one private call never ships more than a page
    assert ok(repl, "len(_memory('recall_slice', 0, 10**12)['messages'])") == "1000"
    # names the scaffold owns come back after the cell; stored data never changed
    assert ok(repl, "len(grep('heron', tier='recall'))") == "1"
    assert ok(repl, "len(recall), recall[640].id") == "(1230, 641)"
    assert mem.recall.count() == 1230
    assert _fingerprint(mem) == before
    # an in-memory database for the model's own analysis is still allowed
    assert (
        ok(repl, "import sqlite3; sqlite3.connect(':memory:').execute('select 1').fetchone()")
        == "(1,)"
    )


# --- the root-prompt summary -------------------------------------------------------------


def test_summary_is_bounded(mem: Any) -> None:
    mem.working.create("notes", "n" * 5000, limit=10_000)
    for i in range(30):
        mem.archival.insert(f"doc {i}", source=f"docs/file{i:02d}.md")
    text = memory_summary(bind_memory(mem))
    assert (
        "- recall: 1,230 messages in 13 sessions, 2024-05-01 10:00 .. 2024-05-01 06:29" not in text
    )
    assert "1,230 messages in 13 sessions, 2024-05-01 10:00 .. 2024-05-02 06:29 UTC" in text
    assert "'s12': 30 messages #1201..#1230" in text and "'s04'" not in text
    assert "and 24 more: archival.sources()" in text
    assert "<persona>\nI keep notes on birds.\n</persona>" in text
    assert "more characters: working['notes']" in text
    assert len(text) < 6000


@pytest.mark.postgres
def test_views_and_grep_on_postgres(pg_url: str, tmp_path: Path) -> None:
    m = open_store(tmp_path / "pg", database_url=pg_url, embed_recall=True)
    try:
        _populate(m)
        b = bind_memory(m)
        with Sandbox(functions=b.functions, prelude=b.prelude) as sb:
            assert ok(sb, "len(recall), recall[-1].id - recall[0].id") == "(1230, 1229)"
            assert (
                ok(sb, "[m.content for m in recall[640:641]]")
                == "['the blue heron nests by the old mill']"
            )
            assert (
                ok(sb, "[h.id for h in grep('heron', tier='all')]")
                == f"[{ok(sb, 'recall[640].id')}, 1]"
            )
            assert ok(sb, "len(recall.sessions()), len(archival)") == "(13, 2)"
            assert "BlockLimitError" in run(sb, "note('human', 'x' * 100)")
    finally:
        m.close()
