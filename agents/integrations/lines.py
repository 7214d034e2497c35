"""Reading transcript files line by line: the shared edge of every transcript format.

Rules this module keeps:

* A file is read as bytes from a byte offset, one line at a time, decoded as UTF-8 with
  replacement; a line that is not JSON or not an object is recorded in the ``Reading`` (line
  number and why; the count is exact, the list stops at ``MAX_BAD_REPORTED``) and skipped.
* ``follow=True`` leaves a last line without its newline unread (it is still being written);
  otherwise such a line is read, and reported as cut short when it is not JSON.
* ``Reading.end_offset``/``end_line`` say where reading stopped, so the next read can start
  there. ``max_lines`` bounds one read.
* Text is cleaned here: NUL characters removed, lone surrogates become U+FFFD.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from memory.errors import NotFoundError, ValidationError

__all__ = ["MAX_BAD_REPORTED", "Reading", "TranscriptMessage", "clean", "clean_json", "content_hash", "ident", "json_lines", "parse_time"]

MAX_BAD_REPORTED = 50  # per file: the count is exact, the list of lines stops here


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
class Reading:
    """What reading one file gave: messages, lines skipped and why, where reading stopped."""

    path: str
    format: str
    messages: list[TranscriptMessage] = field(default_factory=list)
    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    bad_count: int = 0
    not_messages: Counter[str] = field(default_factory=Counter)  # records that are not messages, by kind
    lines: int = 0  # non-empty lines read
    recognised: int = 0  # lines that are records of the format
    end_offset: int = 0  # byte offset after the last line consumed
    end_line: int = 0

    def bad(self, lineno: int, why: str) -> None:
        self.bad_count += 1
        if len(self.bad_lines) < MAX_BAD_REPORTED:
            self.bad_lines.append((lineno, why))


def clean(text: str) -> str:
    """NUL characters removed, lone surrogates (JSON ``\\ud800``) replaced by U+FFFD."""
    text = text.replace("\x00", "")
    if not text.isascii():
        text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def clean_json(value: Any) -> Any:
    """``clean`` applied to every string (keys included) of a JSON value."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {clean(str(k)): clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_json(v) for v in value]
    return value


def ident(value: Any, what: str) -> str | None:
    """An id field (session, tool name) as text of 1-200 characters; None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{what} must be text, got {type(value).__name__}")
    text = clean(str(value)).strip()
    if not text or len(text) > 200:
        raise ValueError(f"{what} must be 1 to 200 characters, got {len(text)}")
    return text


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 text or Unix seconds as UTC; ``ValueError`` when unreadable."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(float(value), UTC)
        if isinstance(value, str):
            dt = datetime.fromisoformat(value.strip())
            return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise ValueError(f"unreadable timestamp {value!r} ({exc})") from None
    raise ValueError(f"a timestamp must be ISO 8601 text or Unix seconds, got {value!r}")


def content_hash(*parts: Any) -> str:
    data = json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str)
    return "h:" + hashlib.sha256(data.encode("utf-8", "replace")).hexdigest()[:40]


def json_lines(
    path: Path, reading: Reading, *, start: int = 0, start_line: int = 0, follow: bool = False,
    max_lines: int | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """The JSON objects of ``path`` from byte ``start`` (at most ``max_lines`` lines); bad lines
    go to ``reading``."""
    try:
        fh = path.open("rb")
    except FileNotFoundError as exc:
        raise NotFoundError(f"no such transcript file: {path}") from exc
    except IsADirectoryError as exc:
        raise ValidationError(f"{path} is a directory: give a transcript file") from exc
    with fh:
        fh.seek(start)
        offset, lineno = start, start_line
        for raw in fh:
            if max_lines is not None and lineno - start_line >= max_lines:
                break
            complete = raw.endswith(b"\n")
            if not complete and follow:
                break  # still being written: read it whole next time
            lineno += 1
            offset += len(raw)
            reading.end_offset, reading.end_line = offset, lineno
            line = raw.decode("utf-8", "replace").strip()
            if not line:
                continue
            reading.lines += 1
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                tail = "" if complete else " (the last line is cut short: the file is still being written or was truncated)"
                reading.bad(lineno, f"not valid JSON: {exc.msg}{tail}")
                continue
            if not isinstance(obj, dict):
                reading.bad(lineno, f"expected a JSON object, got {type(obj).__name__}")
                continue
            yield lineno, obj
