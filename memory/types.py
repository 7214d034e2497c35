"""Plain value types shared by the tiers, the search layer and everything above them.

They are frozen dataclasses with ``to_dict()`` for JSON output; timestamps are timezone-aware
UTC ``datetime`` objects.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

__all__ = ["ROLES", "GrepHit", "Message", "SearchHit", "SessionHit", "SessionInfo", "Tier"]

Tier = Literal["recall", "archival"]
ROLES = ("user", "assistant", "system", "tool")


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in d.items()}


@dataclass(frozen=True)
class Message:
    """One message of the recall log. ``id`` is stable and increases with insertion order."""

    id: int
    agent_id: str
    session_id: str
    role: str
    content: str
    created_at: datetime
    tool_name: str | None = None
    tool_args: Any = None
    tokens: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    key: str | None = None  # the writer's own identity for it (unique per agent), if given

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class SessionInfo:
    """One conversation session with its time span."""

    agent_id: str
    session_id: str
    first_at: datetime
    last_at: datetime
    message_count: int
    first_id: int = 0
    last_id: int = 0

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class SearchHit:
    """One ranked search result from either tier.

    ``id`` is the message id (recall) or chunk id (archival). ``score`` is higher-is-better and
    only comparable within one result list. ``snippet`` is a short excerpt around the match.
    """

    id: int
    tier: str
    text: str
    score: float
    snippet: str = ""
    session_id: str | None = None
    agent_id: str | None = None
    role: str | None = None
    created_at: datetime | None = None
    source: str | None = None
    position: int | None = None
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_message(cls, m: Message, score: float, snippet: str = "") -> SearchHit:
        """A recall hit: the message ``m`` ranked ``score``."""
        return cls(
            id=m.id, tier="recall", text=m.content, score=score, snippet=snippet,
            session_id=m.session_id, agent_id=m.agent_id, role=m.role,
            created_at=m.created_at, metadata=m.metadata,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        d = _jsonable(asdict(self))
        d["tags"] = list(self.tags)
        return d


@dataclass(frozen=True)
class SessionHit:
    """One ranked conversation session: its score pools the scores of its matching messages
    (see ``memory.fusion.pool_groups``); ``hits`` are its best messages, best first."""

    session_id: str
    agent_id: str
    score: float
    hits: tuple[SearchHit, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id, "agent_id": self.agent_id, "score": self.score,
            "hits": [h.to_dict() for h in self.hits],
        }


@dataclass(frozen=True)
class GrepHit:
    """One regular-expression match."""

    id: int
    tier: str
    snippet: str
    match: str
    session_id: str | None = None
    agent_id: str | None = None
    role: str | None = None
    created_at: datetime | None = None
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))
