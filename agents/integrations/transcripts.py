"""Chat transcripts into the recall log: JSON lines and Claude Code session files.

Two formats are read:

* ``jsonl``: one JSON object per line with ``role`` and ``content`` (a string, or a list of
  Anthropic-style blocks whose text is joined), and optionally ``id``, ``timestamp`` (ISO 8601
  or Unix seconds), ``session_id``, ``tool_name``, ``tool_args`` and ``metadata``.
* ``claude-code``: the session files Claude Code writes under ``~/.claude/projects/<project>/``
  (``<session>.jsonl`` and ``<session>/subagents/agent-<id>.jsonl``); what becomes a message is
  decided in ``agents.integrations.claude_code.reader``.

Rules this module keeps:

* **Exact and idempotent.** Every record is stored under its own identity, the recall log's
  message ``key``: a Claude Code record's ``uuid``; a JSON-lines record's ``id`` (or ``uuid``),
  else a hash of its role, session, time and content. Importing files in any order, with any
  overlap, any number of times, stores each distinct record exactly once (the log's unique
  key index decides, so two imports racing in two processes cannot duplicate either).
* **Ordered by time.** Each session of an import (its file and the ``subagents/`` files beside
  it) is one batch appended sorted by timestamp (ties keep file order), so a session's main and
  subagent records come out in the order things happened. Separate imports append in the
  order they run; every message keeps its ``created_at``. Memory use is bounded by the
  largest session, not by the whole tree.
* **Tolerant reading.** A line that is not JSON, not an object or not a record of the format
  is skipped and reported (file, line, why); the rest of the file is imported. A last line
  without its newline is a line still being written: ``follow=True`` (hooks) leaves it for the
  next read, a one-off import reports it. A file where *no* line is of the named format is a
  ``ValidationError`` (it is some other kind of file), never "0 imported".
* Parsing is separate from storing: readers never touch a store; each import call appends in
  one transaction (all or nothing).
* Text is cleaned at this edge: NUL characters removed, lone surrogates become U+FFFD.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from agents.integrations.lines import (
    Reading,
    clean,
    clean_json,
    content_hash,
    ident,
    json_lines,
    parse_time,
)
from memory.errors import NotFoundError, ValidationError

if TYPE_CHECKING:
    from memory.manager import MemoryManager

__all__ = [
    "FORMATS",
    "ImportSummary",
    "Reading",
    "TranscriptMessage",
    "check_paths",
    "clean",
    "clean_json",
    "detect_format",
    "expand_paths",
    "import_paths",
    "import_transcript",
    "json_lines",
    "parse_time",
    "read_transcript",
]

Format = Literal["jsonl", "claude-code"]
FORMATS: tuple[str, ...] = ("jsonl", "claude-code")

_ROLE_ALIASES = {
    "user": "user", "human": "user", "assistant": "assistant", "ai": "assistant", "bot": "assistant",
    "model": "assistant", "system": "system", "tool": "tool", "function": "tool",
}  # fmt: skip


@dataclass(frozen=True)
class TranscriptMessage:
    """One message read from a transcript, not yet stored; ``key`` is its identity."""

    role: str
    content: str
    created_at: datetime | None = None
    session_id: str | None = None
    tool_name: str | None = None
    tool_args: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    key: str | None = None


@dataclass
class ImportSummary:
    """What importing one file did."""

    path: str
    format: str
    messages: int = 0
    sessions: list[str] = field(default_factory=list)
    already_present: int = 0
    skipped: int = 0  # empty messages
    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    bad_count: int = 0
    not_messages: dict[str, int] = field(default_factory=dict)
    kinds: dict[str, int] = field(default_factory=dict)  # messages read, by metadata kind
    error: str | None = None  # a file found in a directory and left out, and why

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.error,
            "path": self.path, "format": self.format, "messages": self.messages,
            "sessions": list(self.sessions), "already_present": self.already_present,
            "skipped": self.skipped, "bad_count": self.bad_count,
            "bad_lines": [{"line": n, "why": w} for n, w in self.bad_lines],
            "not_messages": dict(self.not_messages), "kinds": dict(self.kinds),
        }  # fmt: skip


def _block_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]
    if isinstance(content, list):
        parts = []
        for b in content:
            if isinstance(b, str):
                parts.append(b)
            elif isinstance(b, dict):
                if b.get("type") == "image":
                    parts.append("[image]")
                elif "text" in b:
                    parts.append(str(b.get("text") or ""))
                elif b.get("type") == "tool_result":
                    parts.append(_block_text(b.get("content")))
        return "\n".join(p for p in parts if p)
    return str(content)


# --- reading -------------------------------------------------------------------------------


def detect_format(path: str | Path) -> Format:
    """``claude-code`` when the first readable record looks like a Claude Code event, else ``jsonl``."""
    from agents.integrations.claude_code.reader import is_claude_code_record

    scratch = Reading(str(path), "?")
    for _lineno, obj in json_lines(Path(path), scratch):
        return "claude-code" if is_claude_code_record(obj) else "jsonl"
    return "jsonl"


def _is_jsonl_record(obj: dict[str, Any]) -> bool:
    role = obj.get("role")
    return isinstance(role, str) and role.lower() in _ROLE_ALIASES and "content" in obj


def _read_jsonl(path: Path, reading: Reading) -> None:
    for lineno, obj in json_lines(path, reading):
        raw_role = obj.get("role")
        if not isinstance(raw_role, str) or raw_role.lower() not in _ROLE_ALIASES:
            reading.bad(lineno, f"'role' must be one of user, assistant, system, tool; got {raw_role!r}")
            continue
        if "content" not in obj:
            reading.bad(lineno, "the line has no 'content'")
            continue
        meta = obj.get("metadata") or {}
        try:
            if not isinstance(meta, dict):
                raise ValueError("'metadata' must be a JSON object")
            when = parse_time(obj.get("timestamp", obj.get("created_at")))
            session = ident(obj.get("session_id", obj.get("session")), "session_id")
            tool = ident(obj.get("tool_name"), "tool_name")
            own_id = ident(obj.get("id", obj.get("uuid")), "id")
        except ValueError as exc:
            reading.bad(lineno, str(exc))
            continue
        reading.recognised += 1
        role, content = _ROLE_ALIASES[raw_role.lower()], clean(_block_text(obj["content"]))
        key = own_id or content_hash(role, session, when, content, tool)
        reading.messages.append(TranscriptMessage(
            role=role, content=content, created_at=when, session_id=session, tool_name=tool,
            tool_args=clean_json(obj.get("tool_args")), metadata=clean_json(dict(meta)), key=key,
        ))  # fmt: skip


def read_file(path: str | Path, format: str | None = None) -> Reading:
    """Read one whole transcript file; ``ValidationError`` when it is not of ``format``."""
    p = Path(path).expanduser()
    fmt = format or detect_format(p)
    reading = Reading(str(p), fmt)
    if fmt == "jsonl":
        _read_jsonl(p, reading)
    elif fmt == "claude-code":
        from agents.integrations.claude_code.reader import read_claude_code

        read_claude_code(p, reading)
    else:
        raise ValidationError(f"unknown transcript format {fmt!r}: use one of {', '.join(FORMATS)}")
    if reading.lines and not reading.recognised:
        first = f" (line {reading.bad_lines[0][0]}: {reading.bad_lines[0][1]})" if reading.bad_lines else ""
        other = "jsonl" if fmt == "claude-code" else "claude-code"
        raise ValidationError(
            f"{p} is not a {fmt} transcript: none of its {reading.lines} lines is a {fmt} record{first}; "
            f"check the file, or try --format {other}"
        )
    return reading


def read_transcript(path: str | Path, format: str | None = None) -> Iterator[TranscriptMessage]:
    """Yield the messages of a transcript file; ``format`` is detected when ``None``."""
    return iter(read_file(path, format).messages)


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; a directory becomes every ``*.jsonl`` under it (subagent files too)."""
    return [p for p, _named in _expand(paths)]


def _expand(paths: Iterable[str | Path]) -> list[tuple[Path, bool]]:
    out: dict[Path, bool] = {}
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            found = sorted(q for q in p.rglob("*.jsonl") if q.is_file())
            if not found:
                raise NotFoundError(f"no *.jsonl transcript files under {p}")
            for q in found:
                out.setdefault(q, False)
        elif p.is_file():
            out[p] = True
        else:
            raise NotFoundError(f"no such transcript file or directory: {p}")
    return list(out.items())


def check_paths(paths: Iterable[str | Path], format: str | None = None) -> list[list[tuple[Path, bool]]]:
    """The files to import, grouped by session, after checking that every file the caller
    named is of its format (``ValidationError`` otherwise; reads only until a first record).

    A Claude Code session file and the ``<session>/subagents/*.jsonl`` beside it form one group.
    """
    from agents.integrations.claude_code.reader import is_claude_code_record

    groups: dict[tuple[Path, str], list[tuple[Path, bool]]] = {}
    for p, named in _expand(paths):
        if named:
            fmt = format or detect_format(p)
            if fmt not in FORMATS:
                raise ValidationError(f"unknown transcript format {fmt!r}: use one of {', '.join(FORMATS)}")
            scratch = Reading(str(p), fmt)
            ok = any(is_claude_code_record(o) if fmt == "claude-code" else _is_jsonl_record(o)
                     for _n, o in json_lines(p, scratch))
            if scratch.lines and not ok:
                read_file(p, fmt)  # raises, with the reason of the first bad line
        sub = p.parent.name == "subagents"
        key = (p.parent.parent.parent, p.parent.parent.name) if sub else (p.parent, p.stem)
        groups.setdefault(key, []).append((p, named))
    return list(groups.values())


# --- importing -----------------------------------------------------------------------------


def _row(m: TranscriptMessage, agent_id: str, session: str) -> dict[str, Any]:
    row: dict[str, Any] = {"content": m.content, "role": m.role, "agent_id": agent_id,
                           "session_id": session, "metadata": m.metadata, "key": m.key}
    if m.created_at is not None:
        row["created_at"] = m.created_at
    if m.tool_name is not None:
        row["tool_name"] = m.tool_name
    if m.tool_args is not None:
        row["tool_args"] = m.tool_args
    return row


def store_readings(
    memory: MemoryManager, readings: Sequence[Reading], *, agent_id: str = "default",
    session_id: str | None = None,
) -> list[ImportSummary]:
    """Append the messages of ``readings`` in one transaction, sorted by time; one summary each."""
    far = datetime.max.replace(tzinfo=UTC)
    pending: list[tuple[datetime, int, int, dict[str, Any]]] = []
    summaries: list[ImportSummary] = []
    for f, r in enumerate(readings):
        s = ImportSummary(path=r.path, format=r.format, bad_lines=list(r.bad_lines), bad_count=r.bad_count,
                          not_messages=dict(r.not_messages))
        summaries.append(s)
        default_session = session_id or f"import-{Path(r.path).stem}"
        for n, m in enumerate(r.messages):
            kind = str(m.metadata.get("kind", "message"))
            s.kinds[kind] = s.kinds.get(kind, 0) + 1
            if not m.content.strip():
                s.skipped += 1
                continue
            sid = session_id or m.session_id or default_session
            if sid not in s.sessions:
                s.sessions.append(sid)
            pending.append((m.created_at or far, f, n, _row(m, agent_id, sid)))
    pending.sort(key=lambda p: (p[0], p[1], p[2]))
    stored = {m.key for m in memory.recall.append_many([p[3] for p in pending])}
    seen: set[str] = set()
    for _t, f, _n, row in pending:
        if row["key"] in stored and row["key"] not in seen:
            summaries[f].messages += 1
            seen.add(row["key"])
        else:
            summaries[f].already_present += 1
    return summaries


def import_paths(
    memory: MemoryManager, paths: Iterable[str | Path], *, format: str | None = None,
    agent_id: str = "default", session_id: str | None = None,
) -> list[ImportSummary]:
    """Import files and directories (every ``*.jsonl`` under them), one summary per file.

    Files the caller named are checked first, so one of the wrong format stores nothing; a
    file of another kind found in a directory is left out, with its reason. Each session (a
    session file with its subagent files) is one batch, stored in time order, so memory use is
    bounded by the largest session, not the whole tree.
    """
    out: list[ImportSummary] = []
    for group in check_paths(paths, format):
        readings: list[Reading] = []
        for p, named in group:
            try:
                readings.append(read_file(p, format))
            except ValidationError as exc:
                if named:
                    raise
                out.append(ImportSummary(path=str(p), format=format or "?", error=str(exc)))
        if readings:
            out += store_readings(memory, readings, agent_id=agent_id, session_id=session_id)
    return out


def import_transcript(
    memory: MemoryManager, path: str | Path, *, format: str | None = None,
    agent_id: str = "default", session_id: str | None = None,
) -> ImportSummary:
    """Import one transcript file; see the module rules.

    ``session_id`` overrides the sessions named in the file; messages that name none go to a
    session called after the file (``import-<file name>``).
    """
    p = Path(path).expanduser()
    if p.is_dir():
        raise ValidationError(f"{p} is a directory: use import_paths for directories")
    return store_readings(memory, [read_file(p, format)], agent_id=agent_id, session_id=session_id)[0]
