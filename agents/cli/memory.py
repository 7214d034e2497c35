"""``rlmem`` commands over the memory tiers alone (no language model); the store-wide ones
(``init``, ``stats``, ``reindex``, ``ingest``, ``import``) are ``agents.cli.store``.

Rules this module keeps:

* Strings from the command line are parsed here, at the edge (dates, ``-`` for stdin), and
  passed to the tiers as objects.
* A command that reads only SQL (``log``, ``search --mode text``, ``grep``, ``blocks``,
  ``sessions``, ``stats``) must not trigger an embedding: torch stays unloaded.
* A command that only reads (``search --mode text``, ``grep``, ``stats``, ``sessions``,
  ``agents``, ``blocks list|show|history``) opens the store read-only: it never waits for a
  writer and never writes.
* Every command has a ``--json`` form that prints the same facts as data.
* Commands that embed (``ingest``, ``import``, ``reindex``, ``search --wait``) do it in the
  foreground with progress, stoppable between batches; a search never waits for a backlog
  unless asked, and reports how many items are still pending (``pending_embeddings``).
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from datetime import UTC, datetime
from typing import Any

from agents.cli.common import CliContext
from memory.errors import ValidationError
from memory.ops.values import jsonable
from memory.types import ROLES

__all__ = [
    "ROLES",
    "TIERS",
    "cmd_agents",
    "cmd_blocks",
    "cmd_forget",
    "cmd_grep",
    "cmd_log",
    "cmd_peek",
    "cmd_search",
    "cmd_sessions",
    "op_default",
]

TIERS = ("all", "recall", "archival")


def op_default(op: str, param: str) -> Any:
    """The default of an operation's parameter (flags show the operation's own defaults)."""
    import importlib

    module = importlib.import_module("memory.ops.writing" if op in ("log", "forget") else "memory.ops.reading")
    return inspect.signature(getattr(module, op)).parameters[param].default


def _ctx(mem: Any, args: argparse.Namespace, *, owner: bool = False) -> Any:
    """The operations' context: ``--agent`` filters reads (store-wide without it) or, for
    writes and blocks (``owner``), names whose they are."""
    from memory.ops.values import OpContext

    agent = getattr(args, "agent", None)
    return OpContext(mem, agent_id=agent or "default", agent_scoped=owner or agent is not None, actor="cli")


_FLAGS = {"session_id": "--session", "ids": "--id", "dry_run": "--yes", "k": "-k", "content": "TEXT",
          "value": "VALUE", "text": "VALUE", "query": "QUERY", "pattern": "PATTERN", "label": "LABEL"}


def _check(op: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The operation's checks, with errors naming the command's flags."""
    from memory.ops.registry import view

    given = {k: v for k, v in arguments.items() if v is not None}
    try:
        return view(f"rlmem {op.replace('blocks_', 'blocks ')}", op).check(given)
    except ValidationError as exc:
        flag = lambda m: _FLAGS.get(m[1], "--" + m[1].replace("_", "-"))  # noqa: E731
        raise ValidationError(re.sub(r"argument '(\w+)(?:\.\d+)?'", flag, str(exc))) from None


def _run(mem: Any, args: argparse.Namespace, op: str, arguments: dict[str, Any], *, owner: bool = False) -> Any:
    from memory.ops.registry import operation

    return operation(op)(_ctx(mem, args, owner=owner), **_check(op, arguments))


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    return {"session_id": getattr(args, "session", None), "role": getattr(args, "role", None),
            "since": getattr(args, "since", None), "until": getattr(args, "until", None)}  # fmt: skip


def _text_arg(value: str) -> str:
    return sys.stdin.read() if value == "-" else value


def _one_line(text: str, width: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _time(dt: Any) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if isinstance(dt, datetime) else "-"


# --- store ---------------------------------------------------------------------------------


# --- writing -------------------------------------------------------------------------------


def cmd_log(ctx: CliContext, args: argparse.Namespace) -> int:
    mem = ctx.open_memory()
    msg = _run(mem, args, "log", {"content": _text_arg(args.text), "role": args.role,
                                  "session_id": args.session}, owner=True)
    ctx.emit(msg, f"logged message {msg.id} ({msg.role}, session {msg.session_id})")
    return 0


# --- reading -------------------------------------------------------------------------------


def cmd_search(ctx: CliContext, args: argparse.Namespace) -> int:
    _check("search", {"query": args.query, "k": args.k, **_filters(args)})  # before any wait
    mem = ctx.open_memory(read_only=args.mode == "text")
    tiers = ("recall", "archival") if args.tier == "all" else (args.tier,)
    pending = _pending_note(ctx, mem, args, ("recall",) if args.sessions else tiers)
    if args.sessions:
        return _search_sessions(ctx, mem, args, pending)
    hits = _run(mem, args, "search", {"query": args.query, "k": args.k, "tier": args.tier,
                                      "mode": args.mode, **_filters(args)})

    def human() -> None:
        if not hits:
            ctx.print("no results")
        for h in hits:
            where = (f"{h.session_id} {h.role}" if h.tier == "recall"
                     else f"{h.source}#{h.position}")
            ctx.print(f"[{h.tier} {h.id}] {h.score:.3f} {_time(h.created_at)} {where}")
            ctx.print(f"    {_one_line(h.snippet or h.text)}")

    ctx.emit({"results": [h.to_dict() for h in hits], "pending_embeddings": pending}, human)
    return 0


def _pending_note(ctx: CliContext, mem: Any, args: argparse.Namespace, tiers: tuple[str, ...]) -> int:
    """How many items of ``tiers`` still wait for a vector. A search never waits for them
    unless ``--wait``: it answers now, and they are found by full text meanwhile."""
    if args.mode == "text":
        return 0
    q = mem.queue
    # Queued, or embedded by another encoder than the store's current one (re-embedded next).
    count = lambda: sum(q.pending(t) + q.stale(t) for t in tiers if t in q.sources)  # noqa: E731
    pending = count()
    if pending and args.wait:
        ctx.embed_queued(mem, tiers, label="embedding before the search")
        pending = count()
    if pending and not (ctx.quiet or ctx.json):
        ctx.warn(f"{pending:,} {'item is' if pending == 1 else 'items are'} not embedded yet: found by full text only "
                 "(`rlmem search --wait` embeds them first; `rlmem reindex` in the background)")
    return pending


def _search_sessions(ctx: CliContext, mem: Any, args: argparse.Namespace, pending: int) -> int:
    if args.session or args.tier == "archival":
        raise ValidationError("--sessions ranks recall sessions: drop --session and --tier archival")
    checked = _check("search", {"query": args.query, "k": args.k, **_filters(args)})
    checked.pop("session_id", None)
    sessions = mem.search_sessions(checked.pop("query"), mode=args.mode, agent_id=args.agent, **checked)

    def human() -> None:
        if not sessions:
            ctx.print("no results")
        for s in sessions:
            ctx.print(f"[{s.agent_id}/{s.session_id}] {s.score:.3f}")
            for h in s.hits:
                ctx.print(f"    [{h.id}] {_time(h.created_at)} {h.role}: {_one_line(h.snippet or h.text)}")

    ctx.emit({"results": [s.to_dict() for s in sessions], "pending_embeddings": pending}, human)
    return 0


def cmd_grep(ctx: CliContext, args: argparse.Namespace) -> int:
    mem = ctx.open_memory(read_only=True)
    hits = _run(mem, args, "grep", {"pattern": args.pattern, "tier": args.tier, "limit": args.limit,
                                    "ignore_case": args.ignore_case, "literal": args.literal,
                                    **_filters(args)})

    def human() -> None:
        for h in hits:
            where = h.session_id if h.tier == "recall" else h.source
            ctx.print(f"[{h.tier} {h.id}] {_time(h.created_at)} {where}: {_one_line(h.snippet)}")
        if not hits:
            ctx.print("no matches")

    ctx.emit([h.to_dict() for h in hits], human)
    return 0


def cmd_peek(ctx: CliContext, args: argparse.Namespace) -> int:
    mem = ctx.open_memory()
    msgs = _run(mem, args, "peek", {"message_id": args.message_id, "before": args.before, "after": args.after})

    def human() -> None:
        for m in msgs:
            mark = ">" if m.id == args.message_id else " "
            ctx.print(f"{mark} #{m.id} {_time(m.created_at)} {m.session_id} {m.role}: {m.content}")

    ctx.emit([m.to_dict() for m in msgs], human)
    return 0


def cmd_sessions(ctx: CliContext, args: argparse.Namespace) -> int:
    mem = ctx.open_memory(read_only=True)
    sessions = _run(mem, args, "sessions", {})

    def human() -> None:
        for s in sessions:
            ctx.print(f"{s.session_id}  agent={s.agent_id}  {s.message_count} messages  "
                      f"{_time(s.first_at)} .. {_time(s.last_at)}")
        if not sessions:
            ctx.print("no sessions")

    ctx.emit([s.to_dict() for s in sessions], human)
    return 0


def cmd_agents(ctx: CliContext, args: argparse.Namespace) -> int:
    from agents.agent.state import AgentTable

    mem = ctx.open_memory(read_only=True)
    records = AgentTable(mem.db).list()

    def human() -> None:
        for r in records:
            n = mem.recall.count(agent_id=r.agent_id)
            ctx.print(f"{r.agent_id}  {n} messages  session {r.session_id}  "
                      f"last active {_time(r.updated_at)}")
        if not records:
            ctx.print("no agents (start one with `rlmem chat --agent NAME`)")

    ctx.emit([r.to_dict() for r in records], human)
    return 0


def cmd_forget(ctx: CliContext, args: argparse.Namespace) -> int:
    mem = ctx.open_memory()
    result = _run(mem, args, "forget", {
        "reason": args.reason, "ids": args.ids, "session_id": args.session, "pattern": args.pattern,
        "since": args.since, "until": args.until, "dry_run": not args.yes,
    })  # fmt: skip
    n = len(result.ids)
    shown = ", ".join(map(str, result.ids[:20])) + (" ..." if n > 20 else "")
    text = (f"would forget {n} message(s): {shown or '-'}\nrun again with --yes to delete them"
            if result.dry_run else f"forgot {n} message(s): {shown or '-'} (audited)")
    ctx.emit(result.to_dict(), text)
    return 0


def _blocks_args(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    verb = args.blocks_command
    if verb == "set":
        return "blocks_set", {"label": args.label, "value": _text_arg(args.value), "limit": args.limit,
                              "description": args.description, "read_only": args.read_only}
    if verb == "edit":
        if args.limit is None and args.description is None and args.read_only is None:
            raise ValidationError("blocks edit needs --limit, --description, --read-only or --writable")
        return "blocks_edit", {"label": args.label, "limit": args.limit, "description": args.description,
                               "read_only": args.read_only}
    if verb == "append":
        return "blocks_append", {"label": args.label, "text": _text_arg(args.value)}
    if verb == "replace":
        return "blocks_replace", {"label": args.label, "old": args.old, "new": args.new}
    return f"blocks_{verb}", {"label": getattr(args, "label", None)}  # fmt: skip


def cmd_blocks(ctx: CliContext, args: argparse.Namespace) -> int:
    mem = ctx.open_memory(read_only=args.blocks_command in ("list", "show", "history"))
    op, arguments = _blocks_args(args)
    result = _run(mem, args, op, arguments, owner=True)
    verb = args.blocks_command
    if verb == "list":

        def human_list() -> None:
            for b in result:
                ro = " read-only" if b.read_only else ""
                ctx.print(f"{b.label}  {len(b.value)}/{b.limit} chars{ro}  {b.description or ''}".rstrip())
            if not result:
                ctx.print(f"no blocks for agent {args.agent!r}")

        ctx.emit(jsonable(result), human_list)
    elif verb == "show":
        ctx.emit(jsonable(result), result.value)
    elif verb == "delete":
        ctx.emit(result, f"deleted block {args.label!r} (its history is kept)")
    elif verb == "history":

        def human_history() -> None:
            for e in result:
                ctx.print(f"{e.at.isoformat()} {e.actor} {e.action}: {_one_line(str(e.new_value or ''), 100)}")

        ctx.emit(jsonable(result), human_history)
    else:
        ctx.emit(jsonable(result), f"block {result.label!r} now holds {len(result.value)}/{result.limit} characters")
    return 0
