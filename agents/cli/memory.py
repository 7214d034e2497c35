"""``rlmem`` commands over the memory tiers alone (no language model).

Rules this module keeps:

* Strings from the command line are parsed here, at the edge (dates, ``-`` for stdin), and
  passed to the tiers as objects.
* A command that reads only SQL (``log``, ``search --mode text``, ``grep``, ``blocks``,
  ``sessions``, ``stats``) must not trigger an embedding: torch stays unloaded.
* Every command has a ``--json`` form that prints the same facts as data.
* Commands that embed (``ingest``, ``import``, ``reindex``, ``search --wait``) do it in the
  foreground with progress, stoppable between batches; a search never waits for a backlog
  unless asked, and reports how many items are still pending (``pending_embeddings``).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.cli.common import CliContext, jsonable
from agents.cli.progress import run_embedding
from memory.errors import NotFoundError, ValidationError

__all__ = [
    "cmd_agents",
    "cmd_blocks",
    "cmd_grep",
    "cmd_import",
    "cmd_ingest",
    "cmd_init",
    "cmd_log",
    "cmd_reindex",
    "cmd_search",
    "cmd_sessions",
    "cmd_stats",
]


def _when(value: str | None, flag: str) -> datetime | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(
            f"{flag} takes an ISO 8601 date or time such as 2024-05-01 or 2024-05-01T14:30, got {value!r}"
        ) from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, name in (("agent", "agent_id"), ("session", "session_id"), ("role", "role")):
        if getattr(args, key, None):
            out[name] = getattr(args, key)
    for key in ("since", "until"):
        when = _when(getattr(args, key, None), f"--{key}")
        if when is not None:
            out[key] = when
    return out


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
        path.mkdir(parents=True, exist_ok=True)
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
        toml.write_text("\n".join(lines) + "\n", encoding="utf-8")
    existed = (path / "memory.db").exists() or (path / "rlmem.toml").exists()
    ctx.open_memory(create=True)
    verb = "opened existing" if existed else "created"
    ctx.emit({"store": str(path), "created": not existed},
             f"{verb} memory store at {path}\nnext: rlmem log \"a first message\" --store {path}")
    return 0


def cmd_stats(ctx: CliContext, args: argparse.Namespace) -> int:
    mem = ctx.open_memory()
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
    msg = mem.recall.append(_text_arg(args.text), role=args.role, agent_id=args.agent,
                            session_id=args.session)
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
    paths = [Path(p).expanduser() for p in args.paths]
    summary = run_embedding(
        lambda stop, progress: mem.archival.ingest(paths, progress=progress, stop=stop, **kw),
        signals=ctx.signals, err=ctx.err, label="embedding", unit="chunks",
        show=ctx.show_progress and not args.no_progress,
    )
    data = jsonable(summary)
    ctx.emit(data, "ingested: " + ", ".join(f"{k}={round(v, 1) if isinstance(v, float) else v}"
                                            for k, v in data.items())
             if isinstance(data, dict) else f"ingested: {data}")
    return 0


def cmd_import(ctx: CliContext, args: argparse.Namespace) -> int:
    from agents.integrations.transcripts import check_paths, import_paths

    check_paths(args.files, args.format)  # a named file of the wrong kind fails before the store opens
    mem = ctx.open_memory()
    results = import_paths(mem, args.files, format=args.format, agent_id=args.agent, session_id=args.session)
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
    if args.k < 1:
        raise ValidationError(f"-k must be at least 1, got {args.k}")
    mem = ctx.open_memory()
    tiers = ("recall", "archival") if args.tier == "all" else (args.tier,)
    pending = _pending_note(ctx, mem, args, ("recall",) if args.sessions else tiers)
    if args.sessions:
        return _search_sessions(ctx, mem, args, pending)
    hits = mem.search(args.query, tiers=tiers, k=args.k, mode=args.mode, **_filters(args))

    def human() -> None:
        if not hits:
            ctx.print("no results")
        for h in hits:
            where = (f"{h.session_id} {h.role}" if h.tier == "recall"
                     else f"{h.source}#{h.position}")
            ctx.print(f"[{h.tier} {h.id}] {h.score:.3g} {_time(h.created_at)} {where}")
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
        ctx.warn(f"{pending:,} item(s) are not embedded yet: found by full text only "
                 "(`rlmem search --wait` embeds them first; `rlmem reindex` in the background)")
    return pending


def _search_sessions(ctx: CliContext, mem: Any, args: argparse.Namespace, pending: int) -> int:
    filters = _filters(args)
    if "session_id" in filters or args.tier == "archival":
        raise ValidationError("--sessions ranks recall sessions: drop --session and --tier archival")
    sessions = mem.search_sessions(args.query, k=args.k, mode=args.mode, **filters)

    def human() -> None:
        if not sessions:
            ctx.print("no results")
        for s in sessions:
            ctx.print(f"[{s.agent_id}/{s.session_id}] {s.score:.3g}")
            for h in s.hits:
                ctx.print(f"    [{h.id}] {_time(h.created_at)} {h.role}: {_one_line(h.snippet or h.text)}")

    ctx.emit({"results": [s.to_dict() for s in sessions], "pending_embeddings": pending}, human)
    return 0


def cmd_grep(ctx: CliContext, args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise ValidationError(f"--limit must be at least 1, got {args.limit}")
    mem = ctx.open_memory()
    hits = mem.grep(args.pattern, tier=args.tier, ignore_case=args.ignore_case,
                    literal=args.literal, limit=args.limit, **_filters(args))

    def human() -> None:
        for h in hits:
            where = h.session_id if h.tier == "recall" else h.source
            ctx.print(f"[{h.tier} {h.id}] {_time(h.created_at)} {where}: {_one_line(h.snippet)}")
        if not hits:
            ctx.print("no matches")

    ctx.emit([h.to_dict() for h in hits], human)
    return 0


def cmd_sessions(ctx: CliContext, args: argparse.Namespace) -> int:
    mem = ctx.open_memory()
    sessions = mem.recall.sessions(agent_id=args.agent)

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

    mem = ctx.open_memory()
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


def _block_dict(b: Any) -> dict[str, Any]:
    if hasattr(b, "to_dict"):
        return dict(b.to_dict())
    return {k: getattr(b, k, None) for k in ("label", "value", "limit", "description", "read_only")}


def cmd_blocks(ctx: CliContext, args: argparse.Namespace) -> int:
    mem = ctx.open_memory()
    wm = mem.blocks(args.agent)
    verb = args.blocks_command
    if verb == "list":
        blocks = wm.list()

        def human_list() -> None:
            for b in blocks:
                ro = " read-only" if getattr(b, "read_only", False) else ""
                ctx.print(f"{b.label}  {len(b.value)}/{b.limit} chars{ro}  {b.description or ''}".rstrip())
            if not blocks:
                ctx.print(f"no blocks for agent {args.agent!r}")

        ctx.emit([_block_dict(b) for b in blocks], human_list)
    elif verb == "show":
        b = wm.get(args.label)
        ctx.emit(_block_dict(b), b.value)
    elif verb == "set":
        value = _text_arg(args.value)
        if any(b.label == args.label for b in wm.list()):
            wm.set(args.label, value, actor="cli")
        else:
            kw: dict[str, Any] = {"actor": "cli"}
            if args.limit is not None:
                kw["limit"] = args.limit
            if args.description is not None:
                kw["description"] = args.description
            wm.create(args.label, value, **kw)
        b = wm.get(args.label)
        ctx.emit(_block_dict(b), f"block {b.label!r} now holds {len(b.value)}/{b.limit} characters")
    else:  # history
        edits = wm.history(args.label)

        def human_history() -> None:
            for e in edits:
                d = jsonable(e)
                ctx.print(f"{d.get('created_at') or d.get('at', '')} {d.get('actor', '')} "
                          f"{d.get('op') or d.get('operation', '')}: {_one_line(str(d.get('new') or d.get('new_value', '')), 100)}")

        ctx.emit(jsonable(edits), human_history)
    return 0
