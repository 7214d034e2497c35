"""Chat transcripts into the recall log: JSON lines and Claude Code session files.

Two formats are read:

* ``jsonl``: one JSON object per line with ``role`` and ``content`` (a string, or a list of
  Anthropic-style blocks whose text is joined), and optionally ``timestamp`` (ISO 8601 or
  Unix seconds), ``session_id``, ``tool_name``, ``tool_args`` and ``metadata``.
* ``claude-code``: the session files Claude Code writes under ``~/.claude/projects/*/*.jsonl``.
  Each line is an event; only ``user`` and ``assistant`` events are messages (summaries, file
  snapshots, system and queue events are skipped, as are ``isMeta`` notices). A user event's
  ``tool_result`` blocks become ``tool`` messages, an assistant event's ``tool_use`` blocks
  become assistant messages carrying ``tool_name``/``tool_args``; ``thinking`` blocks are left
  out. The event's ``sessionId`` is the session, its ``uuid`` goes to the message metadata.

Rules this module keeps:

* Parsing is separate from storing: ``read_transcript`` yields ``TranscriptMessage`` values and
  never touches a store, so a malformed file is refused before anything is written; the
  messages of one import are then appended in one transaction (all or nothing).
* Any JSON may arrive: a field of the wrong type is a ``ValidationError``, never a crash.
* A malformed line is a ``ValidationError`` naming the file and line number.
* Importing is incremental per session: a session that already holds ``n`` messages of this
  agent skips the first ``n`` messages of that session in the file, so importing a file again
  (or a Claude Code session that has grown since) adds only what is new.
* Text is cleaned at this edge: NUL characters are removed (no store keeps them), lone
  surrogates become U+FFFD, messages with no text left are skipped and counted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from memory.errors import NotFoundError, ValidationError

if TYPE_CHECKING:
    from memory.manager import MemoryManager

__all__ = [
    "FORMATS",
    "ImportSummary",
    "TranscriptMessage",
    "detect_format",
    "import_transcript",
    "read_transcript",
]

Format = Literal["jsonl", "claude-code"]
FORMATS: tuple[str, ...] = ("jsonl", "claude-code")

_ROLE_ALIASES = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "ai": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "system": "system",
    "tool": "tool",
    "function": "tool",
}
_CLAUDE_CODE_TYPES = {"user", "assistant", "summary", "system", "file-history-snapshot",
                      "queue-operation"}


@dataclass(frozen=True)
class TranscriptMessage:
    """One message read from a transcript, not yet stored."""

    role: str
    content: str
    created_at: datetime | None = None
    session_id: str | None = None
    tool_name: str | None = None
    tool_args: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImportSummary:
    """What ``import_transcript`` did."""

    path: str
    format: str
    messages: int = 0
    sessions: list[str] = field(default_factory=list)
    already_present: int = 0
    skipped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "messages": self.messages,
            "sessions": list(self.sessions),
            "already_present": self.already_present,
            "skipped": self.skipped,
        }


# --- reading -----------------------------------------------------------------------------


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        fh = path.open("r", encoding="utf-8", errors="replace")
    except FileNotFoundError as exc:
        raise NotFoundError(f"no such transcript file: {path}") from exc
    except IsADirectoryError as exc:
        raise ValidationError(f"{path} is a directory: give a transcript file") from exc
    with fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValidationError(
                    f"{path}:{lineno}: not valid JSON ({exc.msg}); a transcript holds one JSON "
                    "object per line"
                ) from exc
            if not isinstance(obj, dict):
                raise ValidationError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def detect_format(path: str | Path) -> Format:
    """``claude-code`` when the first event looks like a Claude Code event, else ``jsonl``."""
    for _lineno, obj in _lines(Path(path)):
        kind = obj.get("type")
        if isinstance(kind, str) and kind in _CLAUDE_CODE_TYPES and (
            "message" in obj or "sessionId" in obj or kind != "user"
        ):
            return "claude-code"
        return "jsonl"
    return "jsonl"


def _clean(text: str) -> str:
    """NUL characters removed, lone surrogates (JSON ``\\ud800``) replaced by U+FFFD."""
    text = text.replace("\x00", "")
    if not text.isascii():
        text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def _clean_json(value: Any) -> Any:
    """``_clean`` applied to every string (keys included) of a JSON value."""
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, dict):
        return {_clean(str(k)): _clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_json(v) for v in value]
    return value


def _ident(value: Any, what: str, where: str) -> str | None:
    """An id field (session, tool name) as text of 1-200 characters; None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValidationError(f"{where}: {what} must be text, got {type(value).__name__}")
    text = _clean(str(value)).strip()
    if not text or len(text) > 200:
        raise ValidationError(f"{where}: {what} must be 1 to 200 characters, got {len(text)}")
    return text


def _parse_time(value: Any, where: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(float(value), UTC)
        if isinstance(value, str):
            dt = datetime.fromisoformat(value.strip())
            return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise ValidationError(f"{where}: unreadable timestamp {value!r} ({exc})") from exc
    raise ValidationError(f"{where}: a timestamp must be ISO 8601 text or Unix seconds, got {value!r}")


def _block_text(content: Any) -> str:
    """The text of a string or a list of content blocks (images become ``[image]``)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for b in content:
            if isinstance(b, str):
                parts.append(b)
            elif isinstance(b, dict):
                if b.get("type") == "text" or "text" in b:
                    parts.append(str(b.get("text", "")))
                elif b.get("type") == "image":
                    parts.append("[image]")
                elif b.get("type") == "tool_result":
                    parts.append(_block_text(b.get("content")))
        return "\n".join(p for p in parts if p)
    if isinstance(content, dict):
        return _block_text([content])
    return str(content)


def _read_jsonl(path: Path) -> Iterator[TranscriptMessage]:
    for lineno, obj in _lines(path):
        where = f"{path}:{lineno}"
        raw_role = obj.get("role")
        if not isinstance(raw_role, str) or raw_role.lower() not in _ROLE_ALIASES:
            raise ValidationError(
                f"{where}: 'role' must be one of user, assistant, system, tool; got {raw_role!r}"
            )
        if "content" not in obj:
            raise ValidationError(f"{where}: the line has no 'content'")
        meta = obj.get("metadata") or {}
        if not isinstance(meta, dict):
            raise ValidationError(f"{where}: 'metadata' must be a JSON object")
        yield TranscriptMessage(
            role=_ROLE_ALIASES[raw_role.lower()],
            content=_clean(_block_text(obj["content"])),
            created_at=_parse_time(obj.get("timestamp", obj.get("created_at")), where),
            session_id=_ident(obj.get("session_id", obj.get("session")), "session_id", where),
            tool_name=_ident(obj.get("tool_name"), "tool_name", where),
            tool_args=_clean_json(obj.get("tool_args")),
            metadata=_clean_json(dict(meta)),
        )


def _compact_json(value: Any, limit: int = 2000) -> str:
    s = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return s if len(s) <= limit else s[:limit] + "…"


def _read_claude_code(path: Path) -> Iterator[TranscriptMessage]:
    tool_names: dict[str, str] = {}
    for lineno, obj in _lines(path):
        kind = obj.get("type")
        if kind not in ("user", "assistant") or obj.get("isMeta"):
            continue
        msg = obj.get("message")
        if not isinstance(msg, dict):
            continue
        where = f"{path}:{lineno}"
        when = _parse_time(obj.get("timestamp"), where)
        session = _ident(obj.get("sessionId"), "sessionId", where) or path.stem
        base: dict[str, Any] = {"source": "claude-code"}
        if obj.get("uuid"):
            base["uuid"] = _clean_json(obj["uuid"])
        if obj.get("isSidechain"):
            base["sidechain"] = True
        if kind == "assistant" and isinstance(msg.get("model"), str):
            base["model"] = _clean(msg["model"])
        content = msg.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list):
            continue
        texts: list[str] = []

        for b in blocks:
            if not isinstance(b, dict):
                continue
            btype = b.get("type")
            if btype == "text":
                if b.get("text"):
                    texts.append(_block_text(b["text"]))
            elif btype == "tool_use" and kind == "assistant":
                yield from _flush(texts, kind, when, session, base)
                name = _ident(b.get("name"), "tool name", where) or "tool"
                if b.get("id"):
                    tool_names[str(b["id"])] = name
                args = _clean_json(b.get("input")) if b.get("input") is not None else {}
                meta = dict(base, kind="tool_call", tool_call_id=_clean_json(b.get("id")))
                yield TranscriptMessage("assistant", _clean(f"{name}({_compact_json(args)})"),
                                        when, session, tool_name=name, tool_args=args,
                                        metadata=meta)
            elif btype == "tool_result":
                yield from _flush(texts, kind, when, session, base)
                call_id = _clean(str(b.get("tool_use_id") or ""))
                meta = dict(base, kind="tool_result", tool_call_id=call_id or None,
                            is_error=bool(b.get("is_error")))
                yield TranscriptMessage("tool", _clean(_block_text(b.get("content"))), when,
                                        session, tool_name=tool_names.get(call_id), metadata=meta)
            elif btype == "image":
                texts.append("[image]")
            # thinking / redacted_thinking and unknown blocks are not part of the conversation
        yield from _flush(texts, kind, when, session, base)


def _flush(
    texts: list[str], role: str, when: datetime | None, session: str, base: dict[str, Any]
) -> Iterator[TranscriptMessage]:
    """The text gathered so far as one message (text between tool blocks stays in order)."""
    if texts:
        yield TranscriptMessage(role, _clean("\n".join(texts)), when, session, metadata=dict(base))
        texts.clear()


def read_transcript(path: str | Path, format: str | None = None) -> Iterator[TranscriptMessage]:
    """Yield the messages of a transcript file; ``format`` is detected when ``None``."""
    p = Path(path).expanduser()
    fmt = format or detect_format(p)
    if fmt == "jsonl":
        return _read_jsonl(p)
    if fmt == "claude-code":
        return _read_claude_code(p)
    raise ValidationError(f"unknown transcript format {fmt!r}: use one of {', '.join(FORMATS)}")


# --- importing ---------------------------------------------------------------------------


def import_transcript(
    memory: MemoryManager,
    path: str | Path,
    *,
    format: str | None = None,
    agent_id: str = "default",
    session_id: str | None = None,
) -> ImportSummary:
    """Append a transcript's messages to ``memory.recall.log``; see the module rules.

    ``session_id`` overrides the sessions named in the file; messages that name none go to a
    session called after the file (``import-<file name>``).
    """
    p = Path(path).expanduser()
    fmt = format or detect_format(p)
    messages = list(read_transcript(p, fmt))  # parse it all first: a bad line writes nothing
    summary = ImportSummary(path=str(p), format=fmt)
    default_session = session_id or f"import-{p.stem}"
    seen: dict[str, int] = {}
    existing: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    for m in messages:
        if not m.content.strip():
            summary.skipped += 1
            continue
        sid = session_id or m.session_id or default_session
        if sid not in existing:
            existing[sid] = memory.recall.count(agent_id=agent_id, session_id=sid)
            summary.sessions.append(sid)
        seen[sid] = seen.get(sid, 0) + 1
        if seen[sid] <= existing[sid]:
            summary.already_present += 1
            continue
        row: dict[str, Any] = {
            "content": m.content,
            "role": m.role,
            "agent_id": agent_id,
            "session_id": sid,
            "metadata": m.metadata,
        }
        if m.created_at is not None:
            row["created_at"] = m.created_at
        if m.tool_name is not None:
            row["tool_name"] = m.tool_name
        if m.tool_args is not None:
            row["tool_args"] = m.tool_args
        rows.append(row)
    # One transaction: an import is stored whole or not at all.
    if rows:
        memory.recall.append_many(rows)
    summary.messages = len(rows)
    return summary
