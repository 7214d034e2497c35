"""``rlmem`` commands over the memory tiers alone (no language model).

Rules this module keeps:

* Strings from the command line are parsed here, at the edge (dates, ``-`` for stdin), and
  passed to the tiers as objects.
* A command that reads only SQL (``log``, ``search --mode text``, ``grep``, ``blocks``,
  ``sessions``, ``stats``) must not trigger an embedding: torch stays unloaded.
* A command that only reads (``search --mode text``, ``grep``, ``stats``, ``sessions``,
  ``agents``, ``blocks list|show|history``) opens the store read-only: it never waits for a
  writer and never writes.
* ``ingest`` names every file it skipped for a reason (on stderr) and exits 1 when there was
  one; the rest of the files are ingested all the same.
* Every command has a ``--json`` form that prints the same facts as data.
* Commands that embed (``ingest``, ``import``, ``reindex``, ``search --wait``) do it in the
  foreground with progress, stoppable between batches; a search never waits for a backlog
  unless asked, and reports how many items are still pending (``pending_embeddings``).
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.cli.common import CliContext, counted
from agents.cli.progress import ProgressLine, run_embedding
from memory.errors import NotFoundError, ValidationError
from memory.ops.values import jsonable
from memory.types import ROLES

__all__ = [
    "ROLES",
    "TIERS",
    "cmd_agents",
    "cmd_blocks",
    "cmd_forget",
    "cmd_grep",
    "cmd_import",
    "cmd_ingest",
    "cmd_init",
    "cmd_log",
    "cmd_peek",
    "cmd_reindex",
    "cmd_search",
    "cmd_sessions",
    "cmd_stats",
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


def cmd_init(ctx: CliContext, args: argparse.Namespace) -> int:
    if args.path:
        ctx.store_arg = args.path
    path = ctx.store_path
    if args.database_url or args.chroma_host:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        toml = path / "rlmem.toml"
        if toml.exists():
            raise ValidationError(f"{toml} exists already: edit it instead of passing URLs to init")
        lines = ["# rlm-memory store configuration (see docs/configuration.md)"]
        if args.database_url:
            lines.append(f'database_url = "{args.database_url}"')
        if args.chroma_host:
            lines.append(f'chroma_host = "{args.chroma_host}"')
        if args.chroma_port:
            lines.append(f"chroma_port = {int(args.chroma_port)}")
        fd = os.open(toml, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # it may hold a database password
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    existed = (path / "memory.db").exists() or (path / "rlmem.toml").exists()
    mem = ctx.open_memory(create=True)
    from agents.server.auth import store_admin_token

    store_admin_token(path)  # the HTTP API's token, owner-only in the store (`rlmem token show`)
    _create_schemas(mem)
    verb = "opened existing" if existed else "created"
    ctx.emit({"store": str(path), "created": not existed},
             f"{verb} memory store at {path}\nnext: rlmem log \"a first message\" --store {path}")
    return 0


def _create_schemas(mem: Any) -> None:
    """Every table a command may read, made now: a read-only command then never has to write
    (and so never waits for a writer) on a store made by ``init``."""
    from agents.agent.state import AgentTable
    from agents.server.auth import MIGRATIONS as TOKEN_MIGRATIONS
    from agents.trajectories import MIGRATIONS as TRAJECTORY_MIGRATIONS

    mem.blocks("default")
    AgentTable(mem.db)
    mem.db.migrate("trajectories", TRAJECTORY_MIGRATIONS)
    mem.db.migrate("tokens", TOKEN_MIGRATIONS)


def cmd_stats(ctx: CliContext, args: argparse.Namespace) -> int:
    mem = ctx.open_memory(read_only=True)
    stats = jsonable(mem.stats())

    def human() -> None:
        ctx.print(f"store: {ctx.store_path}")
        _print_tree(ctx, stats, "")

    ctx.emit(stats, human)
    return 0


def _print_tree(ctx: CliContext, data: Any, indent: str) -> None:
    if isinstance(data, dict):
        for k, v in data.items():
            if isinstance(v, dict | list) and v:
                ctx.print(f"{indent}{k}:")
                _print_tree(ctx, v, indent + "  ")
            else:
                ctx.print(f"{indent}{k}: {v}")
    elif isinstance(data, list):
        for v in data:
            ctx.print(f"{indent}- {v}")


def cmd_reindex(ctx: CliContext, args: argparse.Namespace) -> int:
    mem = ctx.open_memory()
    tiers = ("recall", "archival") if args.tier == "all" else (args.tier,)
    result = run_embedding(
        lambda stop, progress: mem.reindex(reembed=args.reembed, tiers=tiers, stop=stop, progress=progress),
        signals=ctx.signals, err=ctx.err, label="reindexing", unit="items", show=ctx.show_progress,
    )
    ctx.emit({"reindexed": jsonable(result)},
             "reindexed: " + ", ".join(f"{tier} {n:,}" for tier, n in result.items()))
    return 0


# --- writing -------------------------------------------------------------------------------


def cmd_log(ctx: CliContext, args: argparse.Namespace) -> int:
    mem = ctx.open_memory()
    msg = _run(mem, args, "log", {"content": _text_arg(args.text), "role": args.role,
                                  "session_id": args.session}, owner=True)
    ctx.emit(msg, f"logged message {msg.id} ({msg.role}, session {msg.session_id})")
    return 0


def cmd_ingest(ctx: CliContext, args: argparse.Namespace) -> int:
    for p in args.paths:
        if not Path(p).expanduser().exists():
            raise NotFoundError(f"no such file or directory: {p}")
    mem = ctx.open_memory()
    kw: dict[str, Any] = {}
    if args.chunk_tokens is not None:
        kw["chunk_tokens"] = args.chunk_tokens
    if args.overlap is not None:
        kw["overlap"] = args.overlap
    if args.tags:
        kw["tags"] = list(args.tags)
    if args.exts:  # added to the extensions read by default
        from memory.text.chunking import DEFAULT_EXTS

        kw["exts"] = sorted(DEFAULT_EXTS | {e if e.startswith(".") else f".{e}" for e in args.exts})
    paths = [Path(p).expanduser() for p in args.paths]
    summary = run_embedding(
        lambda stop, progress: mem.archival.ingest(paths, progress=progress, stop=stop,
                                                   follow_symlinks=args.follow_symlinks, **kw),
        signals=ctx.signals, err=ctx.err, label="embedding", unit="chunks",
        show=ctx.show_progress and not args.no_progress,
    )
    data = jsonable(summary)

    def human() -> None:
        ctx.print(f"ingested {counted(summary.files, 'file')}, {counted(summary.chunks, 'chunk')} "
                  f"({counted(summary.duplicates, 'duplicate chunk')} left out, "
                  f"{counted(summary.skipped, 'file')} skipped) in {summary.seconds:.1f} s")
        for path, reason in summary.problems:
            ctx.warn(f"skipped {path}: {reason}")
        if summary.by_extension and not ctx.quiet:
            kinds = ", ".join(f"{ext or 'no extension'} ({n})" for ext, n in summary.by_extension[:8])
            exts = [ext for ext, _n in summary.by_extension if ext]
            hints = ([f"--ext {exts[0]} ingests those too"] if exts else []) + (
                ["a file without one is read when named"] if len(exts) < len(summary.by_extension) else [])
            ctx.warn(f"left out for their extension: {kinds} ({'; '.join(hints)})")

    ctx.emit(data, human)
    return 1 if summary.problems else 0


def cmd_import(ctx: CliContext, args: argparse.Namespace) -> int:
    from agents.integrations.transcripts import check_paths, import_paths

    check_paths(args.files, args.format)  # a named file of the wrong kind fails before the store opens
    mem = ctx.open_memory()
    bar = ProgressLine(ctx.err, "importing", "bytes", enabled=ctx.show_progress)
    try:
        results = import_paths(mem, args.files, format=args.format, agent_id=args.agent, session_id=args.session,
                               progress=bar)
    finally:
        bar.close()
    refused = [r for r in results if r.error]
    if not args.no_embed:
        ctx.embed_queued(mem, ["recall"], label="embedding", unit="messages")

    def human() -> None:
        for r in results:
            if r.error:
                ctx.print(f"{r.path}: left out: {r.error}")
                continue
            extra = "".join(f", {n} {what}" for what, n in sorted(r.not_messages.items()))
            ctx.print(f"{r.path} ({r.format}): {r.messages} imported, {r.already_present} already present, "
                      f"{r.bad_count} bad lines skipped, {r.skipped} empty{extra}")
            for line, why in r.bad_lines:
                ctx.print(f"  {r.path}:{line}: skipped: {why}")
            if r.bad_count > len(r.bad_lines):
                ctx.print(f"  ... and {r.bad_count - len(r.bad_lines)} more bad lines")
        total = sum(r.messages for r in results)
        ctx.print(f"total: {total} messages imported from {len(results) - len(refused)} files"
                  + (f" ({len(refused)} files left out)" if refused else ""))

    ctx.emit([r.to_dict() for r in results], human)
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
