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

from collections.abc import Callable, Iterable, Iterator, Sequence
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
from agents.integrations.spill import ExternalSort
from memory.errors import NotFoundError, ValidationError
from memory.text.query import to_us

if TYPE_CHECKING:
    from memory.manager import MemoryManager

__all__ = [
    "BATCH",
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
    "iter_file",
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


def _iter_jsonl(path: Path, reading: Reading) -> Iterator[TranscriptMessage]:
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
        yield TranscriptMessage(
            role=role, content=content, created_at=when, session_id=session, tool_name=tool,
            tool_args=clean_json(obj.get("tool_args")), metadata=clean_json(dict(meta)), key=key,
        )  # fmt: skip


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValidationError(f"unknown transcript format {fmt!r}: use one of {', '.join(FORMATS)}")


def _not_of_format(reading: Reading) -> ValidationError | None:
    """The error for a file none of whose lines is a record of its format (None: it is one)."""
    if not reading.lines or reading.recognised:
        return None
    fmt = reading.format
    first = f" (line {reading.bad_lines[0][0]}: {reading.bad_lines[0][1]})" if reading.bad_lines else ""
    other = "jsonl" if fmt == "claude-code" else "claude-code"
    return ValidationError(
        f"{reading.path} is not a {fmt} transcript: none of its {reading.lines} lines is a {fmt} record{first}; "
        f"check the file, or try --format {other}"
    )


def iter_file(path: str | Path, reading: Reading) -> Iterator[TranscriptMessage]:
    """The messages of one transcript file as they are read, the file never held whole;
    ``reading`` (its path and format) collects the counts and bad lines, and at the end a file
    with no record of the format raises ``ValidationError``."""
    p = Path(path).expanduser()
    _check_format(reading.format)
    if reading.format == "jsonl":
        yield from _iter_jsonl(p, reading)
    else:
        from agents.integrations.claude_code.reader import iter_claude_code

        yield from iter_claude_code(p, reading)
    err = _not_of_format(reading)
    if err is not None:
        raise err


def read_file(path: str | Path, format: str | None = None) -> Reading:
    """Read one whole transcript file; ``ValidationError`` when it is not of ``format``."""
    p = Path(path).expanduser()
    reading = Reading(str(p), format or detect_format(p))
    reading.messages = list(iter_file(p, reading))
    return reading


def read_transcript(path: str | Path, format: str | None = None) -> Iterator[TranscriptMessage]:
    """Yield the messages of a transcript file as they are read; ``format`` is detected when ``None``."""
    p = Path(path).expanduser()
    if format is not None:
        _check_format(format)
    return iter_file(p, Reading(str(p), format or detect_format(p)))


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
            _check_format(fmt)
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


BATCH = 2_000  # messages a transaction
_RECORD_BYTES = 400  # what a record held in the sort costs beyond its source line, roughly
_FAR = to_us(datetime.max.replace(tzinfo=UTC))  # records without a time come last


def store_readings(
    memory: MemoryManager, readings: Sequence[Reading], *, agent_id: str = "default",
    session_id: str | None = None,
) -> list[ImportSummary]:
    """Append the messages already read into ``readings`` in time order; one summary each."""
    sources = [_Source(_summary(r), r, r.messages, named=True) for r in readings]
    _store_group(memory, sources, agent_id=agent_id, session_id=session_id)
    return [src.summary for src in sources]


@dataclass
class _Source:
    """One file of a session being imported: its summary, its reading, its messages."""

    summary: ImportSummary
    reading: Reading
    messages: Iterable[TranscriptMessage]
    named: bool  # the caller named this file (an error stops the import) or a directory held it


def _summary(r: Reading) -> ImportSummary:
    return ImportSummary(path=r.path, format=r.format)


def _store_group(
    memory: MemoryManager, sources: list[_Source], *, agent_id: str, session_id: str | None,
    progress: _Tally | None = None,
) -> None:
    """Read every file of one session into an external sort by (time, file, position), then
    append the messages in that order, ``BATCH`` a transaction; the summaries are filled in.

    Reading comes first, so a named file that turns out not to be of its format stores
    nothing of its session; a file found in a directory is left out with its reason."""
    with ExternalSort() as order:
        for f, src in enumerate(sources):
            s, r = src.summary, src.reading
            default_session = session_id or f"import-{Path(r.path).stem}"
            sessions = dict.fromkeys(s.sessions)
            done = r.end_offset
            try:
                for n, m in enumerate(src.messages):
                    kind = str(m.metadata.get("kind", "message"))
                    s.kinds[kind] = s.kinds.get(kind, 0) + 1
                    if not m.content.strip():
                        s.skipped += 1
                        continue
                    sid = session_id or m.session_id or default_session
                    sessions.setdefault(sid)
                    when = _FAR if m.created_at is None else to_us(m.created_at)
                    size, done = r.end_offset - done + _RECORD_BYTES, r.end_offset
                    order.add((when, f, n, m.role, m.content, m.created_at, sid, m.tool_name, m.tool_args,
                               m.metadata, m.key), size)
                    if progress is not None:
                        progress.read(size)
            except ValidationError as exc:
                if src.named:
                    raise
                src.summary = ImportSummary(path=r.path, format=r.format, error=str(exc))
                continue
            s.sessions = list(sessions)
            s.bad_lines, s.bad_count, s.not_messages = list(r.bad_lines), r.bad_count, dict(r.not_messages)
        batch: list[tuple[Any, ...]] = []
        for rec in order.sorted():
            batch.append(rec)
            if len(batch) >= BATCH:
                _append(memory, batch, sources, agent_id, progress)
                batch = []
        _append(memory, batch, sources, agent_id, progress)


def _append(memory: MemoryManager, batch: list[tuple[Any, ...]], sources: list[_Source], agent_id: str,
            progress: _Tally | None) -> None:
    if not batch:
        return
    rows = []
    for _t, _f, _n, role, content, when, sid, tool_name, tool_args, meta, key in batch:
        row: dict[str, Any] = {"content": content, "role": role, "agent_id": agent_id, "session_id": sid,
                               "metadata": meta, "key": key}
        if when is not None:
            row["created_at"] = when
        if tool_name is not None:
            row["tool_name"] = tool_name
        if tool_args is not None:
            row["tool_args"] = tool_args
        rows.append(row)
    stored = {m.key for m in memory.recall.append_many(rows)}
    seen: set[str | None] = set()
    for rec in batch:
        key, s = rec[-1], sources[rec[1]].summary
        if key in stored and key not in seen:
            s.messages += 1
            seen.add(key)
        else:
            s.already_present += 1
    if progress is not None:
        progress.stored(len(batch))


class _Tally:
    """Progress of an import as ``progress(done, total)`` in bytes of the files: reading a
    session's files counts half their size, storing its messages the other half."""

    def __init__(self, total: int, progress: Callable[[int, int], None]) -> None:
        self.total, self.progress = max(total, 1), progress
        self.done = 0.0
        self._group_bytes = self._group_read = 0
        self._group_rows = 0

    def group(self) -> None:
        self._group_bytes = self._group_read = self._group_rows = 0

    def read(self, size: int) -> None:
        self._group_read += size
        self._group_rows += 1
        self.done += size / 2
        if self._group_rows % BATCH == 0:
            self.progress(min(int(self.done), self.total), self.total)

    def stored(self, rows: int) -> None:
        self.done += self._group_read / 2 * rows / max(self._group_rows, 1)
        self.progress(min(int(self.done), self.total), self.total)


def import_paths(
    memory: MemoryManager, paths: Iterable[str | Path], *, format: str | None = None,
    agent_id: str = "default", session_id: str | None = None, progress: Callable[[int, int], None] | None = None,
) -> list[ImportSummary]:
    """Import files and directories (every ``*.jsonl`` under them), one summary per file.

    Files the caller named are checked first, so one of the wrong format stores nothing; a
    file of another kind found in a directory is left out, with its reason. Each session (a
    session file with its subagent files) is read as a stream into an external sort and
    stored in time order, ``BATCH`` messages a transaction: memory stays bounded whatever the
    size of a file or a tree. ``progress(done, total)`` counts bytes of the files.
    """
    groups = check_paths(paths, format)
    tally = None
    if progress is not None:
        tally = _Tally(sum(_size(p) for g in groups for p, _n in g), progress)
    out: list[ImportSummary] = []
    for group in groups:
        sources = []
        for p, named in group:
            reading = Reading(str(p), format or detect_format(p))
            sources.append(_Source(_summary(reading), reading, iter_file(p, reading), named))
        if tally is not None:
            tally.group()
        _store_group(memory, sources, agent_id=agent_id, session_id=session_id, progress=tally)
        out += [src.summary for src in sources]
    if progress is not None and tally is not None:
        progress(tally.total, tally.total)
    return out


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


def import_transcript(
    memory: MemoryManager, path: str | Path, *, format: str | None = None,
    agent_id: str = "default", session_id: str | None = None,
) -> ImportSummary:
    """Import one transcript file, streamed as ``import_paths`` does; see the module rules.

    ``session_id`` overrides the sessions named in the file; messages that name none go to a
    session called after the file (``import-<file name>``).
    """
    p = Path(path).expanduser()
    if p.is_dir():
        raise ValidationError(f"{p} is a directory: use import_paths for directories")
    if format is not None:
        _check_format(format)
    reading = Reading(str(p), format or detect_format(p))
    src = _Source(_summary(reading), reading, iter_file(p, reading), named=True)
    _store_group(memory, [src], agent_id=agent_id, session_id=session_id)
    return src.summary
