"""Reading chat transcripts: JSON lines and Claude Code session files, as streams of messages.

Two formats are read:

* ``jsonl``: one JSON object per line with ``role`` and ``content`` (a string, or a list of
  Anthropic-style blocks whose text is joined), and optionally ``id``, ``timestamp`` (ISO 8601
  or Unix seconds), ``session_id``, ``tool_name``, ``tool_args`` and ``metadata``.
* ``claude-code``: the session files Claude Code writes under ``~/.claude/projects/<project>/``
  (``<session>.jsonl`` and ``<session>/subagents/agent-<id>.jsonl``); what becomes a message is
  decided in ``agents.integrations.claude_code_reader``.

Rules this module keeps:

* **Identity.** Every message carries its record's identity as ``key``: a Claude Code
  record's ``uuid``; a JSON-lines record's ``id`` (or ``uuid``), else a hash of its role,
  session, time and content.
* **Streams.** ``iter_file`` yields messages as lines are read; a file is never held whole
  (``read_file`` collects one for callers that want a list).
* **Tolerant reading.** A line that is not JSON, not an object or not a record of the format
  is skipped and reported (file, line, why); the rest of the file is read. A last line
  without its newline is a line still being written: ``follow=True`` (hooks) leaves it for the
  next read, a one-off import reports it. A file where *no* line is of the named format is a
  ``ValidationError`` (it is some other kind of file), never "0 imported".
* Readers never touch a store. Text is cleaned at this edge: NUL characters removed, lone
  surrogates become U+FFFD.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agents.integrations.lines import (
    Reading,
    TranscriptMessage,
    clean,
    clean_json,
    content_hash,
    ident,
    json_lines,
    parse_time,
)
from memory.errors import NotFoundError, ValidationError

__all__ = [
    "FORMATS", "ImportSummary", "TranscriptMessage", "check_format", "check_paths", "detect_format", "expand_paths", "iter_file",
    "read_file", "read_transcript",
]

Format = Literal["jsonl", "claude-code"]
FORMATS: tuple[str, ...] = ("jsonl", "claude-code")

_ROLE_ALIASES = {
    "user": "user", "human": "user", "assistant": "assistant", "ai": "assistant", "bot": "assistant",
    "model": "assistant", "system": "system", "tool": "tool", "function": "tool",
}  # fmt: skip


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


def detect_format(path: str | Path) -> Format:
    """``claude-code`` when the first readable record looks like a Claude Code event, else ``jsonl``."""
    from agents.integrations.claude_code_reader import is_claude_code_record

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


def check_format(fmt: str) -> None:
    """``ValidationError`` unless ``fmt`` is a format this module reads."""
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
    check_format(reading.format)
    if reading.format == "jsonl":
        yield from _iter_jsonl(p, reading)
    else:
        from agents.integrations.claude_code_reader import iter_claude_code

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
        check_format(format)
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


def check_paths(
    paths: Iterable[str | Path], format: str | None = None
) -> list[list[tuple[Path, bool, str | None]]]:
    """The files to import, grouped by session, after checking that every file the caller
    named is of its format (``ValidationError`` otherwise; reads only until a first record).

    Each file comes as ``(path, named, format)``: the format a named file was checked as
    (``format``, else detected), None for a file found in a directory (detected when read).
    A Claude Code session file and the ``<session>/subagents/*.jsonl`` beside it form one group.
    """
    from agents.integrations.claude_code_reader import is_claude_code_record

    groups: dict[tuple[Path, str], list[tuple[Path, bool, str | None]]] = {}
    for p, named in _expand(paths):
        fmt: str | None = None
        if named:
            fmt = format or detect_format(p)
            check_format(fmt)
            scratch = Reading(str(p), fmt)
            ok = any(is_claude_code_record(o) if fmt == "claude-code" else _is_jsonl_record(o)
                     for _n, o in json_lines(p, scratch))
            if scratch.lines and not ok:
                read_file(p, fmt)  # raises, with the reason of the first bad line
        sub = p.parent.name == "subagents"
        key = (p.parent.parent.parent, p.parent.parent.name) if sub else (p.parent, p.stem)
        groups.setdefault(key, []).append((p, named, fmt))
    return list(groups.values())
