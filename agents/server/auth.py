"""Who may reach a served store: the admin token file, scoped tokens, and what each one opens.

Rules this module keeps:

* A store served over HTTP always has a token, also on loopback. The **admin token** is made
  by ``rlmem init`` (or on the first ``serve`` of an older store) and kept in the store
  directory as ``token``, created owner-only (0600) before a byte is written, so the CLI, the
  MCP configuration and the Letta export read it without the user typing it.
* **Scoped tokens** (``rlmem token create --agent A [--read-only]``) name the agents they open
  and whether they may write. Only their SHA-256 is stored (table ``rlmem_tokens``, its own
  migration component ``tokens``); the secret is shown once, at creation. A token is
  ``rlm_<id>_<secret>``: the id finds the row, ``hmac.compare_digest`` compares the hashes,
  so a lookup takes the same time whatever the secret's first differing character is.
* A ``Grant`` is what a checked token opens. An admin grant opens every agent (``X-Agent-Id``
  chooses one, none means store-wide); a scoped grant opens its agents only, and a request
  can narrow it with ``X-Agent-Id`` but never widen it.
* Archival memory has no owner: it is shared by the whole store, so every valid token reads
  it and every token that may write adds to it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from memory.db import Migration
from memory.errors import ConfigError, NotFoundError, UserError, ValidationError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from memory.db import Database

__all__ = [
    "MIGRATIONS",
    "TOKEN_FILE",
    "AccessDenied",
    "Grant",
    "TokenInfo",
    "TokenStore",
    "read_admin_token",
    "store_admin_token",
]

TOKEN_FILE = "token"
_PREFIX = "rlm_"


class AccessDenied(UserError):
    """The token is valid but does not open what the request asked for (HTTP 403)."""


@dataclass(frozen=True)
class Grant:
    """What one checked token opens: ``agents`` None means every agent (the admin token)."""

    token_id: str
    agents: tuple[str, ...] | None
    write: bool = True

    @property
    def admin(self) -> bool:
        return self.agents is None

    def agent(self, requested: str | None) -> str | None:
        """The agent a request acts as: ``requested`` if this grant opens it; a scoped grant
        of one agent needs no header; None (admin, no header) means store-wide."""
        if self.agents is None:
            return requested or None
        if requested:
            if requested not in self.agents:
                raise AccessDenied(f"this token does not open agent {requested!r}")
            return requested
        if len(self.agents) == 1:
            return self.agents[0]
        raise ValidationError(f"this token opens several agents: name one with X-Agent-Id ({', '.join(self.agents)})")

    def check_write(self, what: str) -> None:
        if not self.write:
            raise AccessDenied(f"this token is read-only: {what} needs a token that may write "
                               "(`rlmem token create --agent A` without --read-only)")


ADMIN = Grant("admin", None, True)


@dataclass(frozen=True)
class TokenInfo:
    """A scoped token as listed (never the secret)."""

    id: str
    agents: tuple[str, ...]
    write: bool
    label: str
    created_at: str
    revoked_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "agents": list(self.agents), "write": self.write, "label": self.label,
                "created_at": self.created_at, "revoked_at": self.revoked_at}


# --- the admin token file -------------------------------------------------------------------


def read_admin_token(store_dir: str | Path) -> str | None:
    """The admin token of the store at ``store_dir``, or None when it has none yet."""
    path = Path(store_dir) / TOKEN_FILE
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read the token file {path}: {exc.strerror}") from None
    return value or None


def store_admin_token(store_dir: str | Path) -> str:
    """The store's admin token, created (0600, atomically: O_EXCL) when the store has none."""
    existing = read_admin_token(store_dir)
    if existing:
        return existing
    path = Path(store_dir) / TOKEN_FILE
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    value = _PREFIX + "admin_" + secrets.token_urlsafe(32)
    tmp = path.with_name(f".{TOKEN_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (value + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another process made one meanwhile: theirs wins
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return read_admin_token(store_dir) or value


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


# --- scoped tokens --------------------------------------------------------------------------


def _create_table(conn: Connection, dialect: str) -> None:
    conn.execute(text(
        "CREATE TABLE IF NOT EXISTS rlmem_tokens ("
        " id VARCHAR(32) PRIMARY KEY, digest VARCHAR(64) NOT NULL, agents TEXT NOT NULL,"
        " can_write INTEGER NOT NULL, label VARCHAR(200) NOT NULL, created_at VARCHAR(40) NOT NULL,"
        " revoked_at VARCHAR(40))"
    ))


MIGRATIONS = (Migration(1, "scoped tokens", _create_table),)


class TokenStore:
    """Scoped tokens of one store (hashed rows) plus its admin token."""

    def __init__(self, db: Database, admin_token: str | None) -> None:
        self.db = db
        self.admin_token = admin_token
        self._migrated = False

    def _ready(self) -> None:
        if not self._migrated:
            self.db.migrate("tokens", MIGRATIONS)
            self._migrated = True

    def create(self, agents: Sequence[str], *, write: bool = True, label: str = "") -> tuple[TokenInfo, str]:
        """A new token opening ``agents``; returns its listing and the secret (shown once)."""
        names = tuple(dict.fromkeys(a.strip() for a in agents if a and a.strip()))
        if not names:
            raise ValidationError("a scoped token needs at least one agent: --agent NAME")
        if len(label) > 200:
            raise ValidationError("a token label is at most 200 characters")
        self._ready()
        token_id = secrets.token_hex(6)
        secret = f"{_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        info = TokenInfo(token_id, names, write, label, datetime.now(UTC).isoformat(timespec="seconds"))
        with self.db.write() as conn:
            conn.execute(text(
                "INSERT INTO rlmem_tokens (id, digest, agents, can_write, label, created_at)"
                " VALUES (:i, :d, :a, :w, :l, :c)"),
                {"i": token_id, "d": _digest(secret), "a": json.dumps(list(names)), "w": int(write),
                 "l": label, "c": info.created_at})
        return info, secret

    def list(self, *, include_revoked: bool = False) -> list[TokenInfo]:
        if not self._has_table():
            return []
        with self.db.read() as conn:
            rows = conn.execute(text(
                "SELECT id, agents, can_write, label, created_at, revoked_at FROM rlmem_tokens"
                " ORDER BY created_at, id")).all()
        out = [TokenInfo(r[0], tuple(json.loads(r[1])), bool(r[2]), r[3], r[4], r[5]) for r in rows]
        return out if include_revoked else [t for t in out if t.revoked_at is None]

    def revoke(self, token_id: str) -> TokenInfo:
        """Revoke a scoped token by id; it stops working at the next request."""
        found = [t for t in self.list(include_revoked=True) if t.id == token_id]
        if not found:
            raise NotFoundError(f"no token with id {token_id!r}: `rlmem token list` shows them")
        with self.db.write() as conn:
            conn.execute(text("UPDATE rlmem_tokens SET revoked_at = :t WHERE id = :i AND revoked_at IS NULL"),
                         {"t": datetime.now(UTC).isoformat(timespec="seconds"), "i": token_id})
        return next(t for t in self.list(include_revoked=True) if t.id == token_id)

    def check(self, given: str) -> Grant | None:
        """The grant of ``given`` (an admin or scoped token), None when it opens nothing."""
        if self.admin_token and _equal(given, self.admin_token):
            return ADMIN
        parts = given.split("_", 2)
        if len(parts) != 3 or parts[0] + "_" != _PREFIX or not parts[1].isalnum() or len(parts[1]) > 32:
            return None
        if not self._has_table():
            return None
        with self.db.read() as conn:
            row = conn.execute(text("SELECT digest, agents, can_write, revoked_at FROM rlmem_tokens WHERE id = :i"),
                               {"i": parts[1]}).first()
        if row is None or not _equal(_digest(given), row[0]) or row[3] is not None:
            return None
        return Grant(parts[1], tuple(json.loads(row[1])), bool(row[2]))

    def _has_table(self) -> bool:
        if self._migrated:
            return True
        if self.db.schema_version("tokens") >= len(MIGRATIONS):
            self._migrated = True
        return self._migrated
