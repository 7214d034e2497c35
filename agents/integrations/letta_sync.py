"""Copy a Letta agent's memory into this project's tiers, and push edited blocks back.

Rules this module keeps:

* Import is idempotent: every imported record keeps its Letta id (message metadata
  ``letta_message_id`` + ``letta_message_type``; archival source ``letta:<agent>:<passage>``),
  and records already present are skipped, so importing twice adds nothing. Blocks are
  matched by label and overwritten with Letta's value.
* Messages land in one recall session per Letta agent (``letta-<agent id>`` unless given), in
  Letta's order, with Letta's timestamps. Letta's compiled system prompt and its reasoning
  messages are not conversation and are skipped; tool calls and tool returns are kept.
* Everything is read page by page (``after`` cursors), so an agent of any size imports in
  bounded memory; recall rows are written in batches, each batch one transaction.
* ``push_blocks`` writes only blocks whose value differs from Letta's and creates (and
  attaches) blocks Letta does not have.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from memory.errors import NotFoundError

if TYPE_CHECKING:
    from memory.manager import MemoryManager

__all__ = ["ImportSummary", "import_agent", "push_blocks"]

_PAGE = 100
_ROLES = {
    "user_message": "user",
    "assistant_message": "assistant",
    "tool_call_message": "assistant",
    "approval_request_message": "assistant",
    "tool_return_message": "tool",
}


@dataclass
class ImportSummary:
    """Counts of what one ``import_agent`` call wrote and skipped."""

    blocks: int = 0
    messages: int = 0
    passages: int = 0
    skipped_messages: int = 0
    skipped_passages: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def _pages(list_fn: Any, agent_id: str, **kwargs: Any) -> Iterator[Any]:
    after: str | None = None
    while True:
        page = list_fn(agent_id, limit=_PAGE, **({"after": after} if after else {}), **kwargs)
        items = list(getattr(page, "items", page) or [])
        if len(items) < _PAGE:
            yield from items
            return
        # Letta shows one stored message as several items sharing its id (e.g. a tool call and
        # its text), and ``after=id`` skips all of them: end the page before a split group.
        keep = len(items)
        while keep > 1 and items[keep - 1].id == items[-1].id:
            keep -= 1
        if keep == 1 and items[0].id == items[-1].id:
            keep = len(items)
        yield from items[:keep]
        if items[keep - 1].id == after:
            return
        after = items[keep - 1].id


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(getattr(p, "text", None) or (p.get("text") if isinstance(p, dict) else "") or "")
                         for p in content)
    return str(content)


def _message_spec(m: Any, agent: str, session: str, letta_agent: str) -> dict[str, Any] | None:
    kind = getattr(m, "message_type", None)
    role = _ROLES.get(str(kind))
    if role is None:
        return None
    meta = {"letta_message_id": m.id, "letta_message_type": kind, "letta_agent_id": letta_agent}
    spec: dict[str, Any] = {"role": role, "agent_id": agent, "session_id": session,
                            "created_at": getattr(m, "date", None), "metadata": meta}
    if kind in ("tool_call_message", "approval_request_message"):
        tc = getattr(m, "tool_call", None)
        name = getattr(tc, "name", None)
        raw = getattr(tc, "arguments", None)
        try:
            args = json.loads(raw) if isinstance(raw, str) and raw else raw
        except json.JSONDecodeError:
            args = raw
        spec |= {"content": "", "tool_name": name, "tool_args": args}
        meta["tool_call_id"] = getattr(tc, "tool_call_id", None)
    elif kind == "tool_return_message":
        spec |= {"content": _text(getattr(m, "tool_return", "")), "tool_name": getattr(m, "name", None)}
        meta["tool_call_id"] = getattr(m, "tool_call_id", None)
        meta["status"] = getattr(m, "status", None)
    else:
        spec["content"] = _text(getattr(m, "content", ""))
    return spec


def _imported_keys(memory: MemoryManager, agent: str, session: str) -> set[tuple[str, str]]:
    keys = set()
    for msg in memory.recall.iter_messages(agent_id=agent, session_id=session):
        meta = msg.metadata or {}
        if "letta_message_id" in meta:
            keys.add((str(meta["letta_message_id"]), str(meta.get("letta_message_type"))))
    return keys


def import_agent(
    client: Any,
    agent_id: str,
    memory: MemoryManager,
    *,
    memory_agent_id: str | None = None,
    session_id: str | None = None,
    blocks: bool = True,
    messages: bool = True,
    passages: bool = True,
    batch: int = 500,
) -> ImportSummary:
    """Copy the blocks, messages and archival passages of Letta agent ``agent_id`` into ``memory``.

    ``memory_agent_id`` names the agent in this store (default: the Letta agent id).
    """
    agent = memory_agent_id or agent_id
    session = session_id or f"letta-{agent_id}"
    summary = ImportSummary()
    if blocks:
        wm = memory.blocks(agent)
        for b in client.agents.blocks.list(agent_id):
            try:
                current = wm.get(b.label)
            except NotFoundError:
                extra = {k: v for k, v in (("limit", b.limit), ("description", b.description)) if v}
                wm.create(b.label, b.value or "", **extra)
                summary.blocks += 1
                continue
            if current.value != (b.value or ""):
                wm.set(b.label, b.value or "")
                summary.blocks += 1
    if messages:
        seen = _imported_keys(memory, agent, session)
        pending: list[dict[str, Any]] = []
        call_names: dict[str, str] = {}  # tool_call_id -> tool name, for returns that lack it
        for m in _pages(client.agents.messages.list, agent_id, order="asc"):
            spec = _message_spec(m, agent, session, agent_id)
            if spec is None:
                continue
            call_id = spec["metadata"].get("tool_call_id")
            if call_id and spec["role"] == "assistant" and spec.get("tool_name"):
                call_names[call_id] = spec["tool_name"]
            elif call_id and spec["role"] == "tool" and not spec.get("tool_name"):
                spec["tool_name"] = call_names.get(call_id)
            key = (str(m.id), str(m.message_type))
            if key in seen:
                summary.skipped_messages += 1
                continue
            seen.add(key)
            pending.append(spec)
            if len(pending) >= batch:
                summary.messages += len(memory.recall.append_many(pending))
                pending = []
        if pending:
            summary.messages += len(memory.recall.append_many(pending))
    if passages:
        prefix = f"letta:{agent_id}:"
        have = {s for s, _n in memory.archival.sources() if s and s.startswith(prefix)}
        items = []
        for p in _pages(client.agents.passages.list, agent_id, ascending=True):
            source = prefix + p.id
            if source in have:
                summary.skipped_passages += 1
                continue
            have.add(source)
            items.append({"text": p.text, "tags": list(p.tags or []), "source": source,
                          "metadata": {"letta_passage_id": p.id, "letta_agent_id": agent_id}})
        for i in range(0, len(items), batch):
            summary.passages += len(memory.archival.insert_many(items[i : i + batch]))
    return summary


def push_blocks(
    client: Any,
    agent_id: str,
    memory: MemoryManager,
    *,
    memory_agent_id: str | None = None,
    labels: Sequence[str] | None = None,
) -> list[str]:
    """Write this store's blocks to Letta agent ``agent_id``; returns the labels changed there."""
    wm = memory.blocks(memory_agent_id or agent_id)
    theirs = {b.label: b for b in client.agents.blocks.list(agent_id)}
    changed = []
    for block in wm.list():
        if labels is not None and block.label not in labels:
            continue
        remote = theirs.get(block.label)
        if remote is None:
            created = client.blocks.create(label=block.label, value=block.value,
                                           limit=max(block.limit, len(block.value)),
                                           description=block.description or None)
            client.agents.blocks.attach(created.id, agent_id=agent_id)
        elif (remote.value or "") == block.value:
            continue
        else:
            if remote.limit is not None and len(block.value) > remote.limit:
                client.agents.blocks.update(block.label, agent_id=agent_id, value=block.value,
                                            limit=len(block.value))
            else:
                client.agents.blocks.update(block.label, agent_id=agent_id, value=block.value)
        changed.append(block.label)
    return changed
