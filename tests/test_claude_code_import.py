"""Claude Code transcript trees into the recall log: exact, tolerant, clean (real format, real store)."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cc_fixtures import AGENT, CWD, SID, write_project
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.cli.main import main
from agents.integrations.transcripts import import_paths, read_file, store_readings
from memory.errors import ValidationError
from memory.manager import MemoryManager
from memory.vectors.embeddings import HashEmbedder


@pytest.fixture()
def mem(tmp_path: Path) -> Iterator[MemoryManager]:
    m = MemoryManager.open(tmp_path / "store", embedder=HashEmbedder(), background_embed=False)
    yield m
    m.close()


@pytest.fixture()
def tree(tmp_path: Path) -> dict[str, Path]:
    return write_project(tmp_path / "projects")


def test_records_are_typed_and_cleaned(tree: dict[str, Path]) -> None:
    r = read_file(tree["main"])
    by_kind: dict[str, list[str]] = {}
    for m in r.messages:
        by_kind.setdefault(m.metadata["kind"], []).append(m.content)
    assert by_kind["command"] == ["/init --quick"]  # slash-command XML unwrapped
    assert by_kind["command_output"] == ["Created CLAUDE.md ✓"]  # ANSI removed
    assert by_kind["compact_summary"][0].startswith("This session is being continued")
    convo = by_kind["message"]
    assert convo[0] == "The login test is flaky on CI again, screenshot attached. Can you find out why?\n[image: image/png]"
    assert "Found it: the session cookie expired" in convo[3]
    assert by_kind["tool_call"][0] == f"Read: {CWD}/tests/test_login.py"
    assert any(c.startswith("FAILED tests/test_login.py") for c in by_kind["tool_result"])  # ANSI removed
    assert all("\x1b" not in m.content for m in r.messages)
    roles = {m.metadata["kind"]: m.role for m in r.messages}
    assert roles == {"command": "user", "command_output": "tool", "message": roles["message"], "tool_call": "tool",
                     "tool_result": "tool", "compact_summary": "system"}
    image_turn = next(m for m in r.messages if m.metadata.get("images"))
    assert image_turn.metadata["images"] == 1 and image_turn.role == "user"
    # what is not a message is counted, by kind
    assert r.not_messages["title lines"] == 1 and r.not_messages["thinking blocks"] == 1
    assert r.not_messages["meta notices"] == 1 and r.not_messages["system events"] == 2
    assert r.not_messages["file-history-snapshot events"] == 1
    # this project's own search result is not re-indexed; the call that asked is kept
    assert r.not_messages["own memory results"] == 1
    assert not any("The login test is flaky on CI again\"" in m.content for m in r.messages)
    assert any(m.tool_name == "mcp__rlm-memory__memory_search" for m in r.messages)
    # the truncated last line is reported, the rest read
    assert r.bad_count == 1 and r.bad_lines[0][0] == 30 and "cut short" in r.bad_lines[0][1]
    assert all(m.metadata["cwd"] == CWD and m.session_id == SID for m in r.messages)


def test_subagent_records_are_marked(tree: dict[str, Path]) -> None:
    r = read_file(tree["subagent"])
    assert r.messages and all(m.metadata["sidechain"] is True and m.metadata["agent"] == AGENT for m in r.messages)
    assert all(m.session_id == SID for m in r.messages)


def test_subagent_first_then_main_loses_nothing(tree: dict[str, Path], mem: MemoryManager) -> None:
    sub = import_paths(mem, [tree["subagent"]])[0]
    main_ = import_paths(mem, [tree["main"]])[0]
    assert sub.messages == 4 and main_.already_present == 0
    opening = mem.recall.grep("flaky on CI again", literal=True)
    assert len(opening) == 1 and opening[0].role == "user"
    n = mem.recall.count()
    again = import_paths(mem, [tree["main"].parent])  # the directory: main and subagent files
    assert sum(s.messages for s in again) == 0 and mem.recall.count() == n
    assert sum(s.already_present for s in again) == n


def test_directory_import_is_ordered_by_time(tree: dict[str, Path], mem: MemoryManager) -> None:
    summaries = import_paths(mem, [tree["main"].parent.parent])  # ~/.claude/projects
    assert sorted(Path(s.path).name for s in summaries) == sorted([f"{SID}.jsonl", f"agent-{AGENT}.jsonl"])
    stored = mem.recall.session(SID)
    assert [m.created_at for m in stored] == sorted(m.created_at for m in stored)
    sidechain = [m for m in stored if m.metadata.get("sidechain")]
    assert len(sidechain) == 4 and all(m.metadata["agent"] == AGENT for m in sidechain)


def test_wrong_format_is_an_error_not_zero(tmp_path: Path, tree: dict[str, Path]) -> None:
    chat = tmp_path / "chat.jsonl"
    chat.write_text('{"role": "user", "content": "hi"}\n', encoding="utf-8")
    with pytest.raises(ValidationError, match="not a claude-code transcript"):
        read_file(chat, "claude-code")
    with pytest.raises(ValidationError, match="not a jsonl transcript"):
        read_file(tree["subagent"], "jsonl")
    out, err = io.StringIO(), io.StringIO()
    code = main(["--store", str(tmp_path / "s"), "import", "--format", "claude-code", str(chat)], stdout=out, stderr=err)
    assert code == 2 and "not a claude-code transcript" in err.getvalue()
    assert not (tmp_path / "s").exists()  # refused before the store was opened


def test_cli_summary_names_every_file_and_bad_line(tmp_path: Path, tree: dict[str, Path]) -> None:
    store = tmp_path / "s"
    assert main(["init", str(store)], stdout=io.StringIO()) == 0
    out = io.StringIO()
    assert main(["--store", str(store), "import", str(tree["main"].parent)], stdout=out) == 0
    text = out.getvalue()
    assert f"{tree['main']}:30: skipped: not valid JSON" in text and "already present" in text
    assert "1 own memory results" in text and "1 thinking blocks" in text
    out = io.StringIO()
    assert main(["--store", str(store), "--json", "import", str(tree["main"])], stdout=out) == 0
    data = json.loads(out.getvalue())
    assert data[0]["messages"] == 0 and data[0]["already_present"] > 0 and data[0]["bad_count"] == 1


# --- the property: any order, any overlap, any re-runs -------------------------------------


def _prefix(src: Path, dst: Path, lines: int) -> Path:
    """The first ``lines`` lines of ``src`` (a session file as it was earlier in the session)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    kept = src.read_text(encoding="utf-8").splitlines(keepends=True)[:lines]
    dst.write_text("".join(kept), encoding="utf-8")
    return dst


_SNAPSHOT = st.tuples(st.sampled_from(["main", "subagent"]), st.integers(min_value=1, max_value=32))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=st.lists(st.lists(_SNAPSHOT, min_size=1, max_size=3), min_size=1, max_size=4))
def test_any_order_and_overlap_stores_each_record_once(tmp_path_factory: pytest.TempPathFactory, plan: list) -> None:
    root = tmp_path_factory.mktemp("prop")
    tree = write_project(root / "projects")
    store = MemoryManager.open(root / "store", embedder=HashEmbedder(), background_embed=False)
    try:
        expected: set[str] = set()
        for n, batch in enumerate(plan):  # each batch is one import call of several snapshots
            files = [_prefix(tree[which], root / f"b{n}" / str(i) / tree[which].name, lines)
                     for i, (which, lines) in enumerate(batch)]
            for f in files:
                expected |= {m.key for m in read_file(f).messages if m.content.strip() and m.key}
            import_paths(store, files)
        stored = [m.key for m in store.recall.range(limit=100_000)]
        assert len(stored) == len(set(stored)) and set(stored) == expected
    finally:
        store.close()
        shutil.rmtree(root, ignore_errors=True)


def test_a_directory_walk_leaves_other_files_out_with_the_reason(tree: dict[str, Path], mem: MemoryManager) -> None:
    stray = tree["main"].parent / SID / "notes.jsonl"
    stray.write_text('{"hello": "not a transcript"}\n', encoding="utf-8")
    summaries = import_paths(mem, [tree["main"].parent])
    left = [s for s in summaries if s.error]
    assert [Path(s.path).name for s in left] == ["notes.jsonl"] and "not a" in str(left[0].error)
    assert sum(s.messages for s in summaries) == mem.recall.count() > 0
    with pytest.raises(ValidationError):  # named explicitly, it is an error
        import_paths(mem, [stray])


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_BLOCK = st.fixed_dictionaries({"type": st.sampled_from(["text", "tool_use", "tool_result", "image", "thinking", "x"])},
                               optional={"text": _JSON, "name": _JSON, "id": _JSON, "input": _JSON,
                                         "tool_use_id": _JSON, "content": _JSON, "source": _JSON})
_EVENT = st.fixed_dictionaries(
    {"type": st.sampled_from(["user", "assistant", "summary", "system"]), "uuid": _JSON | st.text(max_size=300)},
    optional={"sessionId": _JSON, "timestamp": _JSON | st.just("2026-11-20T09:00:00.000Z"), "isSidechain": _JSON,
              "agentId": _JSON, "cwd": _JSON, "isMeta": _JSON, "isCompactSummary": _JSON,
              "message": st.fixed_dictionaries({}, optional={"content": _JSON | st.lists(_BLOCK, max_size=4),
                                                              "model": _JSON})},
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(evs=st.lists(_EVENT, min_size=1, max_size=6))
def test_any_field_of_any_type_is_read_or_reported_never_a_crash(
    tmp_path_factory: pytest.TempPathFactory, evs: list
) -> None:
    root = tmp_path_factory.mktemp("odd")
    path = root / "s.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in evs), encoding="utf-8")
    store = MemoryManager.open(root / "store", embedder=HashEmbedder(), background_embed=False)
    try:
        try:
            reading = read_file(path, "claude-code")
        except ValidationError as exc:
            assert "not a claude-code transcript" in str(exc)  # nothing in it was a record
            return
        summary = store_readings(store, [reading])[0]  # whatever was read, the store takes
        assert store.recall.count() == summary.messages
        assert summary.messages + summary.already_present + summary.skipped == len(reading.messages)
    finally:
        store.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.postgres
def test_exact_import_on_postgres(pg_url: str, tmp_path: Path, tree: dict[str, Path]) -> None:
    store = MemoryManager.open(tmp_path / "pg", embedder=HashEmbedder(), background_embed=False, database_url=pg_url)
    try:
        first = import_paths(store, [tree["subagent"]]) + import_paths(store, [tree["main"]])
        n = store.recall.count()
        assert sum(s.messages for s in first) == n == len({m.key for m in store.recall.range(limit=1000)})
        again = import_paths(store, [tree["main"].parent])
        assert sum(s.messages for s in again) == 0 and store.recall.count() == n
        assert len(store.recall.grep("flaky on CI again", literal=True)) == 1
        hits = store.search_recall("why was the login test flaky", k=5, mode="text")
        assert hits and all(h.role != "tool" for h in hits)
    finally:
        store.close()


def test_a_bad_named_file_stores_nothing_even_after_good_ones(tmp_path: Path, tree: dict[str, Path],
                                                              mem: MemoryManager) -> None:
    bad = tmp_path / "wizards.jsonl"
    bad.write_text('{"role": "wizard", "content": "x"}\n', encoding="utf-8")
    with pytest.raises(ValidationError, match="not a jsonl transcript"):
        import_paths(mem, [tree["main"], bad])
    assert mem.recall.count() == 0
