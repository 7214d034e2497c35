"""Working memory: Letta-style blocks that are rendered into the prompt.

Rules this module keeps:

* A block has a ``label`` (unique per agent: letters, digits, ``_ . -``, starting with a letter
  or ``_``, at most 100 characters), a ``value``, a ``limit`` in characters, a ``description``,
  a ``read_only`` flag and JSON ``metadata``. Blocks are scoped by ``agent_id`` and live in the
  same database as the recall log (component ``blocks``, append-only migrations).
* **Limits.** An edit that would make a value longer than its limit is refused with
  ``BlockLimitError`` (which says by how many characters); lowering a limit below the current
  length is refused the same way. A read-only block refuses every edit and deletion with
  ``ReadOnlyBlockError``; ``update_meta(read_only=False)`` is the way to unlock it.
* **Atomic edits.** Each edit reads, checks and writes inside one ``Database.write()``
  transaction (SQLite ``BEGIN IMMEDIATE``; ``SELECT ... FOR UPDATE`` on PostgreSQL), so two
  processes appending to the same block never lose an edit.
* **Nothing is lost.** Every change (create, set, rethink, append, replace, insert, delete,
  update_meta) writes a history row with actor, time, old and new value; deleting a block
  keeps its history. ``update_meta`` records old and new settings as JSON.
* **Text.** Values are ``str`` without NUL characters or lone surrogates (``ValidationError``).
* **Rendering** (``render()``), stable for prompts; blocks in creation order::

      <memory_blocks>
      <LABEL>
      <description>
      DESCRIPTION
      </description>
      <metadata>
      - chars_current=N
      - chars_limit=LIMIT
      - read_only=true|false
      </metadata>
      <value>
      VALUE
      </value>
      </LABEL>
      ...
      </memory_blocks>

  Values are inserted verbatim (no escaping): they are prompt text.
"""

from __future__ import annotations

import builtins
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from memory.db import Database, Migration
from memory.errors import BlockLimitError, NotFoundError, ReadOnlyBlockError, ValidationError
from memory.text.query import check_id, check_text, from_us, to_us

__all__ = ["MIGRATIONS", "Block", "BlockEdit", "WorkingMemory"]

BLOCKS = "memory_blocks"
HISTORY = "memory_block_history"
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,99}")


@dataclass(frozen=True)
class Block:
    """One working-memory block (a snapshot: edits return a new one)."""

    label: str
    value: str
    limit: int
    description: str
    read_only: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["updated_at"] = self.updated_at.isoformat()
        return d


@dataclass(frozen=True)
class BlockEdit:
    """One history row: who changed which block, when, from what to what."""

    id: int
    label: str
    actor: str
    action: str
    old_value: str | None
    new_value: str | None
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["at"] = self.at.isoformat()
        return d


# --- schema ------------------------------------------------------------------------------


def _v1_tables(conn: Connection, dialect: str) -> None:
    conn.execute(
        text(
            f"CREATE TABLE {BLOCKS} ("
            " agent_id VARCHAR(200) NOT NULL, label VARCHAR(100) NOT NULL, value TEXT NOT NULL,"
            " char_limit INTEGER NOT NULL, description TEXT NOT NULL, read_only INTEGER NOT NULL,"
            " created_us BIGINT NOT NULL, updated_us BIGINT NOT NULL,"
            " PRIMARY KEY (agent_id, label))"
        )
    )
    id_col = "id INTEGER PRIMARY KEY AUTOINCREMENT" if dialect == "sqlite" else "id BIGSERIAL PRIMARY KEY"
    conn.execute(
        text(
            f"CREATE TABLE {HISTORY} ({id_col}, agent_id VARCHAR(200) NOT NULL,"
            " label VARCHAR(100) NOT NULL, actor VARCHAR(200) NOT NULL, action VARCHAR(32) NOT NULL,"
            " old_value TEXT, new_value TEXT, at_us BIGINT NOT NULL)"
        )
    )


def _v2_metadata(conn: Connection, dialect: str) -> None:
    conn.execute(text(f"ALTER TABLE {BLOCKS} ADD COLUMN metadata TEXT NOT NULL DEFAULT '{{}}'"))
    conn.execute(text(f"CREATE INDEX ix_{HISTORY}_label ON {HISTORY} (agent_id, label, id)"))


MIGRATIONS: list[Migration] = [
    Migration(1, "blocks and edit history", _v1_tables),
    Migration(2, "block metadata and history index", _v2_metadata),
]

_COLS = "label, value, char_limit, description, read_only, metadata, updated_us"


def _row_to_block(r: Any) -> Block:
    return Block(
        label=r[0], value=r[1], limit=int(r[2]), description=r[3], read_only=bool(r[4]),
        metadata=json.loads(r[5]) if r[5] else {}, updated_at=from_us(r[6]),
    )  # fmt: skip


def _check_label(label: object) -> str:
    if not isinstance(label, str) or not _LABEL.fullmatch(label):
        raise ValidationError(
            f"invalid block label {label!r}: use 1-100 letters, digits, '_', '.' or '-', "
            "starting with a letter or '_'"
        )
    return label


def _check_value(value: object, what: str = "value") -> str:
    return check_text(value, what, allow_nul=False)


def _check_limit(limit: object) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValidationError(f"limit must be a positive int (characters), got {limit!r}")
    return limit


def _check_meta(metadata: object) -> str:
    if not isinstance(metadata, dict):
        raise ValidationError(f"metadata must be a dict, got {type(metadata).__name__}")
    try:
        return json.dumps(metadata)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"metadata must be JSON-serialisable: {exc}") from None


class WorkingMemory:
    """The blocks of one agent."""

    def __init__(self, db: Database, agent_id: str = "default") -> None:
        self.db = db
        self.agent_id = check_id(agent_id, "agent_id")
        db.migrate("blocks", MIGRATIONS)

    # --- helpers -------------------------------------------------------------------------

    def _fetch(self, conn: Connection, label: str, *, lock: bool = False) -> Block:
        tail = " FOR UPDATE" if lock and self.db.dialect == "postgresql" else ""
        r = conn.execute(
            text(f"SELECT {_COLS} FROM {BLOCKS} WHERE agent_id = :a AND label = :l{tail}"),
            {"a": self.agent_id, "l": label},
        ).first()
        if r is None:
            raise NotFoundError(
                f"no block {label!r} for agent {self.agent_id!r}; existing blocks: "
                f"{', '.join(self._labels(conn)) or '(none)'}"
            )
        return _row_to_block(r)

    def _labels(self, conn: Connection) -> builtins.list[str]:
        return [
            r[0]
            for r in conn.execute(
                text(f"SELECT label FROM {BLOCKS} WHERE agent_id = :a ORDER BY created_us, label"),
                {"a": self.agent_id},
            )
        ]

    def _log(self, conn: Connection, label: str, actor: str, action: str, old: str | None, new: str | None, at_us: int) -> None:
        conn.execute(
            text(
                f"INSERT INTO {HISTORY} (agent_id, label, actor, action, old_value, new_value, at_us)"
                " VALUES (:a, :l, :actor, :action, :old, :new, :at)"
            ),
            {"a": self.agent_id, "l": label, "actor": actor, "action": action, "old": old, "new": new, "at": at_us},
        )

    def _edit(self, label: str, actor: str, action: str, change: Any) -> Block:
        """Read, check and write one value change in a single transaction."""
        label = _check_label(label)
        actor = check_id(actor, "actor")
        with self.db.write() as conn:
            block = self._fetch(conn, label, lock=True)
            if block.read_only:
                raise ReadOnlyBlockError(label)
            new = _check_value(change(block.value))
            if len(new) > block.limit:
                raise BlockLimitError(label, block.limit, len(new))
            now = to_us(datetime.now(UTC))
            conn.execute(
                text(f"UPDATE {BLOCKS} SET value = :v, updated_us = :t WHERE agent_id = :a AND label = :l"),
                {"v": new, "t": now, "a": self.agent_id, "l": label},
            )
            self._log(conn, label, actor, action, block.value, new, now)
        return Block(label, new, block.limit, block.description, block.read_only, block.metadata, from_us(now))

    # --- reading -------------------------------------------------------------------------

    def get(self, label: str) -> Block:
        with self.db.read() as conn:
            return self._fetch(conn, _check_label(label))

    def list(self) -> list[Block]:
        """Every block of this agent, in creation order."""
        with self.db.read() as conn:
            rows = conn.execute(
                text(f"SELECT {_COLS} FROM {BLOCKS} WHERE agent_id = :a ORDER BY created_us, label"),
                {"a": self.agent_id},
            ).all()
        return [_row_to_block(r) for r in rows]

    def as_dict(self) -> dict[str, str]:
        return {b.label: b.value for b in self.list()}

    def history(self, label: str | None = None, limit: int = 100) -> builtins.list[BlockEdit]:
        """Edits of one block (or of all this agent's blocks), newest first."""
        where = "agent_id = :a" + (" AND label = :l" if label is not None else "")
        params: dict[str, Any] = {"a": self.agent_id, "n": limit}
        if label is not None:
            params["l"] = _check_label(label)
        with self.db.read() as conn:
            rows = conn.execute(
                text(
                    f"SELECT id, label, actor, action, old_value, new_value, at_us FROM {HISTORY}"
                    f" WHERE {where} ORDER BY id DESC LIMIT :n"
                ),
                params,
            ).all()
        return [BlockEdit(int(r[0]), r[1], r[2], r[3], r[4], r[5], from_us(r[6])) for r in rows]

    def render(self) -> str:
        """The blocks in the prompt format drawn in the module docstring."""
        parts = ["<memory_blocks>"]
        for b in self.list():
            parts += [
                f"<{b.label}>", "<description>", b.description, "</description>", "<metadata>",
                f"- chars_current={len(b.value)}", f"- chars_limit={b.limit}",
                f"- read_only={'true' if b.read_only else 'false'}", "</metadata>",
                "<value>", b.value, "</value>", f"</{b.label}>",
            ]  # fmt: skip
        parts.append("</memory_blocks>")
        return "\n".join(parts)

    # --- writing -------------------------------------------------------------------------

    def create(
        self,
        label: str,
        value: str = "",
        *,
        limit: int = 5000,
        description: str = "",
        read_only: bool = False,
        metadata: dict[str, Any] | None = None,
        actor: str = "system",
    ) -> Block:
        label = _check_label(label)
        value = _check_value(value)
        limit = _check_limit(limit)
        description = _check_value(description, "description")
        meta_json = _check_meta(metadata or {})
        actor = check_id(actor, "actor")
        if len(value) > limit:
            raise BlockLimitError(label, limit, len(value))
        with self.db.write() as conn:
            exists = conn.execute(
                text(f"SELECT 1 FROM {BLOCKS} WHERE agent_id = :a AND label = :l"), {"a": self.agent_id, "l": label}
            ).first()
            if exists:
                raise ValidationError(f"block {label!r} already exists for agent {self.agent_id!r}; use set() to change it")
            now = to_us(datetime.now(UTC))
            # Creation order is the render order: keep it strict even within one microsecond.
            last = conn.execute(
                text(f"SELECT max(created_us) FROM {BLOCKS} WHERE agent_id = :a"), {"a": self.agent_id}
            ).scalar()
            created = max(now, int(last) + 1) if last is not None else now
            conn.execute(
                text(
                    f"INSERT INTO {BLOCKS} (agent_id, label, value, char_limit, description, read_only,"
                    " metadata, created_us, updated_us) VALUES (:a, :l, :v, :lim, :d, :ro, :m, :c, :t)"
                ),
                {"a": self.agent_id, "l": label, "v": value, "lim": limit, "d": description,
                 "ro": int(bool(read_only)), "m": meta_json, "c": created, "t": now},
            )  # fmt: skip
            self._log(conn, label, actor, "create", None, value, now)
        return Block(label, value, limit, description, bool(read_only), json.loads(meta_json), from_us(now))

    def get_or_create(self, label: str, value: str = "", **settings: Any) -> tuple[Block, bool]:
        """The block ``label``, created with ``value`` and ``settings`` (``create``'s keywords)
        when missing; the flag says whether it was created. An existing block is unchanged."""
        try:
            return self.get(label), False
        except NotFoundError:
            pass
        try:
            return self.create(label, value, **settings), True
        except ValidationError as exc:
            try:  # created by another writer in between
                return self.get(label), False
            except NotFoundError:
                raise exc from None

    def ensure(self, label: str, value: str = "", **settings: Any) -> Block:
        """Get-or-create: the block ``label``, created with ``value`` when missing (so setup
        code can run twice); an existing block keeps its value."""
        return self.get_or_create(label, value, **settings)[0]

    def set(self, label: str, value: str, *, actor: str = "system") -> Block:
        """Replace the whole value."""
        return self._edit(label, actor, "set", lambda _old: value)

    def rethink(self, label: str, value: str, *, actor: str = "system") -> Block:
        """Rewrite the whole value (``set``, recorded as action ``rethink``)."""
        return self._edit(label, actor, "rethink", lambda _old: value)

    def append(self, label: str, text: str, *, actor: str = "system", separator: str = "\n") -> Block:
        """Add ``text`` at the end, after ``separator`` unless the block is empty."""
        _check_value(text, "text")
        return self._edit(label, actor, "append", lambda old: old + separator + text if old else text)

    def replace(self, label: str, old: str, new: str, *, actor: str = "system") -> Block:
        """Replace ``old``, which must occur exactly once, by ``new``."""
        _check_value(old, "old")
        _check_value(new, "new")
        if old == "":
            raise ValidationError("old must be non-empty: give the exact text to replace")

        def change(value: str) -> str:
            n = value.count(old)
            if n != 1:
                hint = "check the exact text" if n == 0 else "include more surrounding text to make it unique"
                raise ValidationError(f"block {label!r} contains {old!r} {n} times, not exactly once; {hint}")
            return value.replace(old, new, 1)

        return self._edit(label, actor, "replace", change)

    def insert(self, label: str, text: str, *, line: int = -1, actor: str = "system") -> Block:
        """Insert ``text`` as line number ``line`` (0 = top, -1 = after the last line)."""
        _check_value(text, "text")
        if not isinstance(line, int) or isinstance(line, bool) or line < -1:
            raise ValidationError(f"line must be an int >= -1 (0 = top, -1 = end), got {line!r}")

        def change(value: str) -> str:
            lines = value.split("\n") if value else []
            if line > len(lines):
                raise ValidationError(f"line {line} is past the end of block {label!r} ({len(lines)} lines); use -1 to append")
            at = len(lines) if line == -1 else line
            return "\n".join([*lines[:at], text, *lines[at:]])

        return self._edit(label, actor, "insert", change)

    def delete(self, label: str, *, actor: str = "system") -> None:
        """Remove the block; its history (with the final value) stays."""
        label = _check_label(label)
        actor = check_id(actor, "actor")
        with self.db.write() as conn:
            block = self._fetch(conn, label, lock=True)
            if block.read_only:
                raise ReadOnlyBlockError(label)
            conn.execute(text(f"DELETE FROM {BLOCKS} WHERE agent_id = :a AND label = :l"), {"a": self.agent_id, "l": label})
            self._log(conn, label, actor, "delete", block.value, None, to_us(datetime.now(UTC)))

    def update_meta(
        self,
        label: str,
        *,
        limit: int | None = None,
        description: str | None = None,
        read_only: bool | None = None,
        metadata: dict[str, Any] | None = None,
        actor: str = "system",
    ) -> Block:
        """Change a block's settings (allowed on read-only blocks: this is how to unlock one)."""
        label = _check_label(label)
        actor = check_id(actor, "actor")
        with self.db.write() as conn:
            b = self._fetch(conn, label, lock=True)
            new_limit = b.limit if limit is None else _check_limit(limit)
            new_desc = b.description if description is None else _check_value(description, "description")
            new_ro = b.read_only if read_only is None else bool(read_only)
            new_meta = b.metadata if metadata is None else json.loads(_check_meta(metadata))
            if len(b.value) > new_limit:
                raise BlockLimitError(label, new_limit, len(b.value))
            old_s = {"limit": b.limit, "description": b.description, "read_only": b.read_only, "metadata": b.metadata}
            new_s = {"limit": new_limit, "description": new_desc, "read_only": new_ro, "metadata": new_meta}
            now = to_us(datetime.now(UTC))
            conn.execute(
                text(
                    f"UPDATE {BLOCKS} SET char_limit = :lim, description = :d, read_only = :ro, metadata = :m,"
                    " updated_us = :t WHERE agent_id = :a AND label = :l"
                ),
                {"lim": new_limit, "d": new_desc, "ro": int(new_ro), "m": json.dumps(new_meta), "t": now,
                 "a": self.agent_id, "l": label},
            )  # fmt: skip
            self._log(conn, label, actor, "update_meta", json.dumps(old_s), json.dumps(new_s), now)
        return Block(label, b.value, new_limit, new_desc, new_ro, new_meta, from_us(now))
