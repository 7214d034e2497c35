"""Transcript importers: JSON lines and Claude Code session files, into a real recall log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.integrations.transcripts import (
    detect_format,
    import_transcript,
    read_file,
    read_transcript,
)
from memory.errors import NotFoundError, ValidationError
from memory.manager import MemoryManager
from memory.vectors.embeddings import HashEmbedder


@pytest.fixture()
def mem(tmp_path: Path) -> Iterator[MemoryManager]:
    m = MemoryManager.open(tmp_path / "store", embedder=HashEmbedder(), background_embed=False)
    yield m
    m.close()


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


SID = "c7d1fb1a-0885-4d8b-8427-0f09a0c1a94f"


def _claude_code_events() -> list[dict]:
    base = {"parentUuid": None, "isSidechain": False, "userType": "external", "cwd": "/home/u/app",
            "sessionId": SID, "version": "2.0.61", "gitBranch": "main"}
    return [
        {"type": "summary", "summary": "Fixing the build", "leafUuid": "x"},
        {"type": "file-history-snapshot", "messageId": "m0", "snapshot": {}},
        {**base, "type": "user", "isMeta": True, "uuid": "u0", "timestamp": "2025-06-01T10:00:00.000Z",
         "message": {"role": "user", "content": "Caveat: local command output follows"}},
        {**base, "type": "user", "uuid": "u1", "timestamp": "2025-06-01T10:00:01.000Z",
         "message": {"role": "user", "content": "Why does the build fail?"}},
        {**base, "type": "assistant", "uuid": "a1", "timestamp": "2025-06-01T10:00:05.000Z",
         "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                     "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"},
                                 {"type": "text", "text": "Let me look at the log."},
                                 {"type": "tool_use", "id": "toolu_1", "name": "Bash",
                                  "input": {"command": "make 2>&1 | tail"}}]}},
        {**base, "type": "user", "uuid": "u2", "timestamp": "2025-06-01T10:00:09.000Z",
         "message": {"role": "user", "content": [
             {"tool_use_id": "toolu_1", "type": "tool_result",
              "content": [{"type": "text", "text": "error: missing header foo.h"}], "is_error": False}]},
         "toolUseResult": {"stdout": "error: missing header foo.h"}},
        {**base, "type": "system", "subtype": "hook", "content": "hook ran", "uuid": "s1",
         "timestamp": "2025-06-01T10:00:10.000Z"},
        {**base, "type": "assistant", "uuid": "a2", "timestamp": "2025-06-01T10:00:12.000Z",
         "message": {"id": "msg_2", "role": "assistant", "model": "claude-sonnet-4-5",
                     "content": [{"type": "text", "text": "The header foo.h is missing; add it to include/."}]}},
    ]


def test_claude_code_session_is_read_as_messages(tmp_path: Path) -> None:
    path = _write(tmp_path / f"{SID}.jsonl", _claude_code_events())
    assert detect_format(path) == "claude-code"
    msgs = list(read_transcript(path))
    assert [(m.role, m.tool_name, m.metadata["kind"]) for m in msgs] == [
        ("user", None, "message"), ("assistant", None, "message"), ("tool", "Bash", "tool_call"),
        ("tool", "Bash", "tool_result"), ("assistant", None, "message"),
    ]
    assert msgs[0].content == "Why does the build fail?" and msgs[0].key == "u1"
    assert msgs[1].content == "Let me look at the log."  # the thinking block is left out
    assert msgs[2].tool_args == {"command": "make 2>&1 | tail"} and msgs[2].key == "a1#1"
    assert msgs[2].content == "Bash: make 2>&1 | tail"
    assert msgs[3].content == "error: missing header foo.h"
    assert msgs[3].metadata["tool_call_id"] == "toolu_1"
    assert all(m.session_id == SID for m in msgs)
    assert msgs[0].created_at is not None and msgs[0].created_at.isoformat() == "2025-06-01T10:00:01+00:00"
    assert msgs[4].metadata["model"] == "claude-sonnet-4-5" and msgs[4].metadata["uuid"] == "a2"
    assert msgs[4].metadata["cwd"] == "/home/u/app"


def test_jsonl_transcript_roles_times_and_blocks(tmp_path: Path) -> None:
    path = _write(tmp_path / "chat.jsonl", [
        {"role": "human", "content": "hello", "timestamp": "2024-03-01T09:00:00"},
        {"role": "assistant", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "there"}],
         "timestamp": 1709283605, "session_id": "s1"},
        {"role": "user", "content": "bye\x00", "metadata": {"lang": "en"}},
    ])
    assert detect_format(path) == "jsonl"
    msgs = list(read_transcript(path))
    assert [m.role for m in msgs] == ["user", "assistant", "user"]
    assert msgs[1].content == "hi\nthere" and msgs[1].session_id == "s1"
    assert msgs[1].created_at is not None and msgs[1].created_at.year == 2024
    assert msgs[2].content == "bye" and msgs[2].metadata == {"lang": "en"}


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("{not json", "not valid JSON"),
        ('{"role": "wizard", "content": "x"}', "'role' must be one of"),
        ('{"role": "user"}', "has no 'content'"),
        ('{"role": "user", "content": "x", "timestamp": "yesterday"}', "unreadable timestamp"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_malformed_lines_are_skipped_and_named(tmp_path: Path, line: str, needle: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"role": "user", "content": "fine"}\n' + line + "\n", encoding="utf-8")
    reading = read_file(path, "jsonl")
    assert [m.content for m in reading.messages] == ["fine"]
    assert reading.bad_count == 1 and reading.bad_lines[0][0] == 2 and needle in reading.bad_lines[0][1]
    # a file where no line is a record of the format is refused, naming the first bad line
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(ValidationError) as info:
        read_file(path, "jsonl")
    assert needle in str(info.value) and "bad.jsonl" in str(info.value) and "line 1" in str(info.value)


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        list(read_transcript(tmp_path / "nope.jsonl"))
    (tmp_path / "x.jsonl").write_text('{"role": "user", "content": "x"}\n')
    with pytest.raises(ValidationError, match="unknown transcript format"):
        read_transcript(tmp_path / "x.jsonl", "yaml")


def test_import_is_incremental_and_never_duplicates(tmp_path: Path, mem: MemoryManager) -> None:
    events = _claude_code_events()
    path = _write(tmp_path / f"{SID}.jsonl", events[:6])
    first = import_transcript(mem, path, agent_id="cc")
    assert first.format == "claude-code" and first.messages == 4 and first.sessions == [SID]
    again = import_transcript(mem, path, agent_id="cc")
    assert again.messages == 0 and again.already_present == 4
    _write(path, events)  # the session grew
    grown = import_transcript(mem, path, agent_id="cc")
    assert grown.messages == 1 and grown.already_present == 4
    stored = mem.recall.session(SID, agent_id="cc")
    assert [m.role for m in stored] == ["user", "assistant", "tool", "tool", "assistant"]
    assert stored[2].tool_name == "Bash" and stored[2].tool_args == {"command": "make 2>&1 | tail"}
    assert stored[0].created_at.isoformat() == "2025-06-01T10:00:01+00:00"
    hits = mem.search("header foo.h", tiers=("recall",), mode="text", k=5)
    assert [h.id for h in hits] == [stored[4].id]  # the tool result only when asked for
    hits = mem.search("header foo.h", tiers=("recall",), mode="text", k=5, include_tools=True)
    assert {h.id for h in hits} == {stored[3].id, stored[4].id}


def test_a_truncated_line_skips_only_itself(tmp_path: Path, mem: MemoryManager) -> None:
    path = tmp_path / "half.jsonl"
    path.write_text('{"role": "user", "content": "fine"}\n{"role": "user", "content": ', encoding="utf-8")
    summary = import_transcript(mem, path)
    assert summary.messages == 1 and summary.bad_count == 1
    assert summary.bad_lines[0][0] == 2 and "cut short" in summary.bad_lines[0][1]
    assert mem.recall.count() == 1


def test_sessions_default_to_the_file_name(tmp_path: Path, mem: MemoryManager) -> None:
    path = _write(tmp_path / "notes.jsonl", [{"role": "user", "content": "a"}, {"role": "user", "content": " "},
                                            {"role": "assistant", "content": "b"}])
    summary = import_transcript(mem, path)
    assert summary.sessions == ["import-notes"] and summary.messages == 2 and summary.skipped == 1
    # the same records under a forced session are still the same records: stored once
    forced = import_transcript(mem, path, session_id="mine")
    assert forced.sessions == ["mine"] and forced.messages == 0 and forced.already_present == 2
    other = _write(tmp_path / "other.jsonl", [{"role": "user", "content": "c", "id": "m-1"}])
    assert import_transcript(mem, other, session_id="mine").messages == 1
    assert mem.recall.get_by_key("m-1") is not None


def test_odd_bytes_nul_and_huge_messages(tmp_path: Path, mem: MemoryManager) -> None:
    path = tmp_path / "odd.jsonl"
    big = "word " * 400_000  # 2 MB in one message
    path.write_bytes(
        b'{"role": "user", "content": "caf\xe9 \\u0000 ok"}\n'       # Latin-1 byte, escaped NUL
        + json.dumps({"role": "assistant", "content": big}).encode() + b"\n"
    )
    summary = import_transcript(mem, path)
    assert summary.messages == 2
    first, second = mem.recall.session("import-odd")
    assert first.content == "caf\ufffd  ok" and len(second.content) == len(big)


def test_each_file_format_is_found_once(tmp_path: Path, mem: MemoryManager, monkeypatch: pytest.MonkeyPatch) -> None:
    from agents.integrations import reading, transcripts

    named = _write(tmp_path / f"{SID}.jsonl", _claude_code_events())
    folder = tmp_path / "chats"
    folder.mkdir()
    _write(folder / "chat.jsonl", [{"role": "user", "content": "my cat is called Miso"}])
    assert [[(p.name, n, f) for p, n, f in g] for g in transcripts.check_paths([named, folder])] == [
        [(named.name, True, "claude-code")], [("chat.jsonl", False, None)]]
    seen: list[str] = []

    def counted(path: str | Path) -> str:  # the real detection, counted per file
        seen.append(Path(path).name)
        return detect_format(path)

    monkeypatch.setattr(reading, "detect_format", counted)
    monkeypatch.setattr(transcripts, "detect_format", counted)
    out = transcripts.import_paths(mem, [named, folder], agent_id="cc")
    assert [(s.format, s.messages) for s in out] == [("claude-code", 5), ("jsonl", 1)]
    assert sorted(seen) == sorted([named.name, "chat.jsonl"])  # a named file is not detected twice
