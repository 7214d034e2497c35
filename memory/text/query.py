"""Input handling for the recall log: validation, the recall filter, full-text queries, messages.

Rules this module keeps:

* Text is ``str`` that encodes to UTF-8. ``bytes`` are refused (decode them first, choosing
  how to treat bad bytes); a ``str`` holding lone surrogates is refused, because no database
  driver can store it. Nothing here raises anything but ``ValidationError``/``QueryError``.
* Any user string is a valid full-text query. It is split on whitespace; each chunk becomes one
  quoted FTS5 phrase (``"`` doubled), so operators (``AND``, ``OR``, ``NOT``, ``*``, ``-``,
  ``:``, parentheses, ``^``) are matched as plain words and never parsed. The phrases are
  OR-ed and ranked by BM25. ``e-mail`` therefore matches the phrase "e mail". A query with no
  word characters matches nothing; words after the first ``MAX_PHRASES`` (64) are ignored.
* A recall read is narrowed by one ``RecallFilter`` value (agent, session, role, time range,
  tool records), built once where the filters enter (ids checked, ISO dates parsed by
  ``parse_when``) and handed unchanged down every layer: the operation, the manager, the
  recall search, the log, its SQL and the vector index's ``where``.
* Token counts, when the caller has none, are ``memory.tokens.count_tokens`` estimates.
* grep patterns: ``memory.text.patterns``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from memory.errors import ValidationError
from memory.tokens import count_tokens
from memory.types import ROLES, Message

__all__ = [
    "MAX_ID",
    "MAX_PHRASES",
    "MESSAGE_FIELDS",
    "Filters",
    "RecallFilter",
    "check_key",
    "check_row_id",
    "check_text",
    "clamp",
    "count_arg",
    "from_us",
    "fts_phrases",
    "new_message",
    "parse_when",
    "prepare_message",
    "to_us",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_PHRASES = 64
MAX_ID = 2**62  # beyond any id; keeps user integers inside SQL's 64-bit range
MESSAGE_FIELDS = frozenset(
    {"content", "role", "agent_id", "session_id", "created_at", "tool_name", "tool_args", "tokens", "metadata", "key"}
)
MAX_KEY_CHARS = 200
_FIELDS_AND_ID = MESSAGE_FIELDS | {"id"}
_WORD = re.compile(r"[^\W_]")


def check_text(value: object, what: str, *, allow_nul: bool = True, max_chars: int | None = None) -> str:
    """``value`` as a storable ``str``, or ``ValidationError`` saying what is wrong with it."""
    if isinstance(value, bytes | bytearray | memoryview):
        raise ValidationError(
            f"{what} must be str, not bytes: decode it first, e.g. "
            "data.decode('utf-8', errors='replace')"
        )
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be str, got {type(value).__name__}")
    if max_chars is not None and len(value) > max_chars:
        raise ValidationError(
            f"{what} has {len(value)} characters, over the limit of {max_chars} "
            "(max_message_chars); split it or raise the limit"
        )
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValidationError(
                f"{what} is not valid Unicode text (lone surrogate at index {exc.start}); "
                "if it came from bytes, decode with errors='replace'"
            ) from None
    if not allow_nul and "\x00" in value:
        raise ValidationError(
            f"{what} contains a NUL character (\\x00), which this database cannot store; "
            "remove it or replace it, e.g. text.replace('\\x00', '\\ufffd')"
        )
    return value


def check_id(value: object, what: str) -> str:
    """An agent or session id: a non-empty str of at most 200 characters."""
    s = check_text(value, what, allow_nul=False)
    if not s or len(s) > 200:
        raise ValidationError(f"{what} must be 1 to 200 characters, got {len(s)}")
    return s


def check_row_id(value: object, what: str) -> int:
    """A message or chunk id: a positive int (not a bool, not a numeric string)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{what} must be an integer, got {type(value).__name__} {value!r:.40}")
    if not 0 < value < MAX_ID:
        raise ValidationError(f"{what} must be a positive integer, got {value}")
    return value


def check_role(role: object) -> str:
    if role not in ROLES:
        raise ValidationError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    return str(role)


def to_us(dt: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is taken as UTC."""
    if not isinstance(dt, datetime):
        raise ValidationError(f"expected a datetime, got {type(dt).__name__}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    from datetime import timedelta

    return _EPOCH + timedelta(microseconds=int(us))


class Filters:
    """A validated filter set, rendered as an SQL ``WHERE`` fragment over alias ``m``;
    ``leaves_out``: the role one of its clauses leaves out (tool records), if any."""

    def __init__(self, clauses: list[str], params: dict[str, Any], leaves_out: str | None = None) -> None:
        self.clauses = clauses
        self.params = params
        self.leaves_out = leaves_out

    def sql(self, prefix: str = " AND ") -> str:
        return (prefix + " AND ".join(self.clauses)) if self.clauses else ""

    def __bool__(self) -> bool:
        return bool(self.clauses)


def parse_when(value: Any, name: str = "time") -> datetime | None:
    """A time filter: ``None``/``""``, a datetime, a date, or an ISO 8601 string (UTC if no zone).

    The one reader of date/time strings: ``Z`` means UTC, and a time without a zone is UTC,
    as everywhere in rlm-memory.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError(
                f"{name} must be an ISO 8601 date or time such as 2024-05-01 or "
                f"2024-05-01T14:30:00Z, got {value!r:.80}"
            ) from None
    else:
        raise ValidationError(
            f"{name} must be a datetime or an ISO 8601 date string, got {type(value).__name__}"
        )
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


@dataclass(frozen=True)
class RecallFilter:
    """Which messages a recall read covers; ``None`` (and ``False``) narrow nothing.

    ``since`` and ``until`` are inclusive and may be given as ISO 8601 text, dates or
    datetimes: they are parsed here, once, to UTC datetimes. Searches (full text, vector,
    grep) leave tool records (role ``tool``) out unless ``include_tools`` or ``role="tool"``
    asks for them (``leaves_out``); listing reads (``range``, ``page``, ``count``) read
    every role.
    """

    agent_id: str | None = None
    session_id: str | None = None
    role: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    include_tools: bool = False

    def __post_init__(self) -> None:
        for name in ("agent_id", "session_id"):
            value = getattr(self, name)
            if value is not None:
                check_text(value, name, allow_nul=False)
        if self.role is not None:
            check_role(self.role)
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, datetime) and value.tzinfo is not None):
                object.__setattr__(self, name, parse_when(value, name))
        if not isinstance(self.include_tools, bool):
            raise ValidationError(f"include_tools must be true or false, got {self.include_tools!r:.40}")

    @classmethod
    def of(cls, where: RecallFilter | None = None, **filters: Any) -> RecallFilter:
        """``where`` (or no filter) narrowed by the keyword filters that are set."""
        unknown = set(filters) - _FILTER_NAMES
        if unknown:
            raise ValidationError(
                f"unknown filter {sorted(unknown)[0]!r}: use {', '.join(sorted(_FILTER_NAMES))}"
            )
        given = {k: v for k, v in filters.items() if v is not None and v is not False}
        if where is None:
            return cls(**given)
        return dataclasses.replace(where, **given) if given else where

    @property
    def leaves_out(self) -> str | None:
        """The role a search leaves out: ``tool`` unless asked for."""
        return None if self.include_tools or self.role is not None else "tool"

    def sql(self, alias: str = "m", *, every_role: bool = False) -> Filters:
        """The filter as an SQL ``WHERE`` fragment over ``alias``; ``every_role`` for
        listing reads, which keep tool records."""
        clauses: list[str] = []
        params: dict[str, Any] = {}
        for name in ("agent_id", "session_id", "role"):
            value = getattr(self, name)
            if value is not None:
                clauses.append(f"{alias}.{name} = :f_{name}")
                params[f"f_{name}"] = value
        if not every_role and self.leaves_out is not None:
            clauses.append(f"{alias}.role <> :f_xrole")
            params["f_xrole"] = self.leaves_out
        if self.since is not None:
            clauses.append(f"{alias}.created_us >= :f_since")
            params["f_since"] = to_us(self.since)
        if self.until is not None:
            clauses.append(f"{alias}.created_us <= :f_until")
            params["f_until"] = to_us(self.until)
        return Filters(clauses, params, params.get("f_xrole"))


_FILTER_NAMES = frozenset(f.name for f in dataclasses.fields(RecallFilter))


def fts_phrases(query: object) -> list[str]:
    """The query's whitespace-separated chunks that contain a word character, in order,
    without duplicates, at most ``MAX_PHRASES`` (each costs one bounded index scan); NULs
    become spaces (SQL strings cannot carry them reliably)."""
    q = check_text(query, "query").replace("\x00", " ")
    seen: dict[str, None] = {}
    for chunk in q.split():
        if _WORD.search(chunk):
            seen.setdefault(chunk, None)
            if len(seen) == MAX_PHRASES:
                break
    return list(seen)


def fts5_quote(phrase: str) -> str:
    return '"' + phrase.replace('"', '""') + '"'


# --- messages ----------------------------------------------------------------------------


def new_message(id: int, fields: dict[str, Any]) -> Message:
    # The dataclass __init__ of a frozen class costs a setattr per field; on batch appends
    # that is a measurable share of the time, so fill the instance dict directly.
    m = object.__new__(Message)
    m.__dict__["id"] = id
    m.__dict__.update(fields)
    return m


def clamp(value: int | None, default: int) -> int:
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValidationError(f"expected an int, got {value!r}")
    return max(-MAX_ID, min(MAX_ID, value))


def count_arg(value: int | None) -> int:
    return max(0, clamp(value, 0))


def dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(value, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{what} must be JSON-serialisable: {exc}") from None



def _cached_id(value: Any, what: str, ok_ids: set[str]) -> str:
    # Batches repeat the same few agent and session ids: validate each once.
    if type(value) is str and value in ok_ids:
        return value
    v = check_id(value, what)
    if len(ok_ids) > 10_000:
        ok_ids.clear()
    ok_ids.add(v)
    return v

def prepare_message(
    spec: Mapping[str, Any], now: datetime, *, allow_nul: bool, max_chars: int, ok_ids: set[str]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The row to insert (without its id) and the fields of the Message it becomes."""
    if not spec.keys() <= _FIELDS_AND_ID:
        unknown = sorted(set(spec) - _FIELDS_AND_ID)[0]
        raise ValidationError(f"unknown message field {unknown!r}; use {sorted(MESSAGE_FIELDS)}")
    content = spec.get("content", "")
    if type(content) is not str or not content.isascii() or len(content) > max_chars:
        content = check_text(content, "content", allow_nul=allow_nul, max_chars=max_chars)
    elif not allow_nul and "\x00" in content:
        content = check_text(content, "content", allow_nul=False)
    role = spec.get("role", "user")
    if role not in ROLES:
        check_role(role)
    agent = _cached_id(spec.get("agent_id", "default"), "agent_id", ok_ids)
    session = _cached_id(spec.get("session_id", "default"), "session_id", ok_ids)
    created = spec.get("created_at")
    if created is None:
        created = now
    elif not isinstance(created, datetime):
        raise ValidationError(f"created_at must be a datetime, got {type(created).__name__}")
    elif created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    elif created.utcoffset():
        created = created.astimezone(UTC)
    tool_name = spec.get("tool_name")
    if tool_name is not None:
        tool_name = _cached_id(tool_name, "tool_name", ok_ids)
    tool_args = spec.get("tool_args")
    args_json = None if tool_args is None else dumps(tool_args, "tool_args")
    tokens = spec.get("tokens")
    if tokens is None:
        tokens = count_tokens(content)
    elif not isinstance(tokens, int) or isinstance(tokens, bool) or not 0 <= tokens <= MAX_ID:
        raise ValidationError(f"tokens must be an int from 0 to 2**62, got {tokens!r:.40}")
    metadata = spec.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ValidationError(f"metadata must be a dict, got {type(metadata).__name__}")
    meta_json = dumps(metadata, "metadata") if metadata else "{}"
    key = spec.get("key")
    if key is not None:
        key = check_key(key)
    row = (agent, session, role, content, tool_name, args_json, to_us(created), tokens, meta_json, key)
    fields = {
        "agent_id": agent, "session_id": session, "role": role, "content": content,
        "created_at": created, "tool_name": tool_name,
        "tool_args": None if args_json is None else json.loads(args_json), "tokens": tokens,
        "metadata": json.loads(meta_json) if metadata else {}, "key": key,
    }  # fmt: skip
    return row, fields


def check_key(value: object) -> str:
    """A message key: text of 1 to ``MAX_KEY_CHARS`` characters, no NUL, kept exactly as given."""
    if not isinstance(value, str):
        raise ValidationError(f"key must be str, got {type(value).__name__}")
    if not value or len(value) > MAX_KEY_CHARS:
        raise ValidationError(f"key must be 1 to {MAX_KEY_CHARS} characters, got {len(value)}")
    return check_text(value, "key", allow_nul=False)

