"""The write operations: log (recall), remember (archival), note (a block), forget (recall).

Rules this module keeps:

* Every write is attributed: messages carry the context's agent, archival chunks carry
  ``source`` (the actor unless given) and ``metadata["written_by"]``, block edits the actor.
* The recall log is append-only; ``forget`` is the one deletion, explicit and audited by the
  log's own ``forget`` (who, when, why, which ids). It selects by ids, session, pattern and
  time range (all given selectors must hold) and is a dry run unless ``dry_run=False``: the
  reply lists the ids either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from memory.errors import ValidationError
from memory.ops.schema import Ids, Key, Role, Tags, Text, Tokens, When
from memory.ops.values import DEFAULTS as D
from memory.ops.values import OpContext
from memory.types import Message

__all__ = ["ForgetResult", "forget", "log", "note", "remember"]


def log(
    ctx: OpContext,
    content: Text,
    role: Role = "user",
    session_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    tokens: Tokens | None = None,
    key: Key | None = None,
) -> Message:
    """Append one message to the recall log; it is durable when the call returns.

    Args:
        content: The message text.
        role: user, assistant, system or tool.
        session_id: The conversation session (default: the current one, else "default").
        metadata: Any JSON object to keep with the message.
        tokens: Its length in tokens, if known (estimated otherwise).
        key: An idempotency key: a retry with the same key stores nothing new and returns
            the message stored the first time.
    """
    return ctx.memory.recall.append(
        content, role=role, agent_id=ctx.agent_id,
        session_id=session_id or ctx.session_id or "default", metadata=metadata, tokens=tokens,
        key=key,
    )  # fmt: skip


def remember(
    ctx: OpContext,
    text: Text,
    tags: Tags | None = None,
    source: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> int:
    """Store a fact, note or document passage in archival memory so it can be found later; returns its id.

    Args:
        text: The text to store; make it self-contained (who, what, when).
        tags: Optional labels for filtering later, e.g. ["project-x", "decision"].
        source: Where the passage comes from (file name, URL); default: who wrote it.
        metadata: Any JSON object to keep with the passage.
    """
    meta = dict(metadata or {})
    meta.setdefault("written_by", ctx.actor)
    meta.setdefault("written_at", datetime.now(UTC).isoformat())
    if ctx.agent_scoped:
        meta.setdefault("agent_id", ctx.agent_id)
    return int(
        ctx.memory.archival.insert(
            text, tags=tuple(tags or ()), metadata=meta, source=source or ctx.actor
        )
    )


def note(ctx: OpContext, label: str, text: Text) -> Any:
    """Append text to a working-memory block within its limit (the block is created if new).

    Args:
        label: The block to add to, e.g. "human" or "persona".
        text: The text to add, on a new line.
    """
    from memory.ops.blocks import blocks_append

    return blocks_append(ctx, label, text)


@dataclass(frozen=True)
class ForgetResult:
    """What ``forget`` selected, and whether it deleted it."""

    ids: list[int] = field(default_factory=list)
    dry_run: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"ids": list(self.ids), "count": len(self.ids), "dry_run": self.dry_run,
                "deleted": 0 if self.dry_run else len(self.ids)}  # fmt: skip


def forget(
    ctx: OpContext,
    reason: Text,
    ids: Ids | None = None,
    session_id: str | None = None,
    pattern: str | None = None,
    since: When = None,
    until: When = None,
    dry_run: bool = True,
) -> ForgetResult:
    """Delete recall messages for good (audited); a dry run unless dry_run is false.

    Args:
        reason: Why they are deleted; it goes into the audit log.
        ids: Message ids to delete.
        session_id: Delete the messages of this session.
        pattern: Delete the messages matching this regular expression.
        since: Only messages at or after this ISO 8601 date or time.
        until: Only messages at or before this ISO 8601 date or time.
        dry_run: List what would be deleted without deleting it.
    """
    if ids is None and session_id is None and pattern is None and since is None and until is None:
        raise ValidationError(
            "forget needs ids, session_id, pattern, since or until (refusing to forget everything)"
        )
    # Every selection reaches tool records too: a secret printed by a tool is forgotten with the rest.
    rf = ctx.recall_filter(session_id=session_id, since=since, until=until, include_tools=True)
    if pattern is not None:
        found = [h.id for h in ctx.memory.recall.grep(
            pattern, limit=D.max_forget, timeout_s=ctx.grep_timeout_s, where=rf)]  # fmt: skip
    elif ids is None:
        found = [m.id for m in ctx.memory.recall.iter_messages(batch=5000, where=rf)]
    else:
        found = sorted(set(ids))
    if ids is not None:
        wanted = set(ids)
        found = [i for i in found if i in wanted]
    if len(found) > D.max_forget:
        raise ValidationError(f"forget selects {len(found)} messages; narrow it to {D.max_forget} or fewer")
    scope = {"agent_id": ctx.agent_id} if ctx.agent_scoped else {}
    if dry_run:
        msgs = ctx.memory.recall.get_many(found) if found else []
        return ForgetResult(sorted(m.id for m in msgs if not scope or m.agent_id == ctx.agent_id), True)
    return ForgetResult(sorted(ctx.memory.forget(ids=found, reason=reason, actor=ctx.actor, **scope)), False)
