"""``rlmem`` commands over a whole store: ``init``, ``stats``, ``reindex``, ``ingest``, ``import``.

Rules this module keeps:

* ``init`` makes every table a command may read, so a read-only command never has to write on
  a store it made; a store's ``rlmem.toml`` is written owner-only (it may hold a password).
* ``ingest`` names every file it skipped for a reason (on stderr) and exits 1 when there was
  one; the rest of the files are ingested all the same.
* ``ingest``, ``import`` and ``reindex`` embed in the foreground with progress, stoppable
  between batches (``agents.cli.progress``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from agents.cli.common import CliContext, counted
from agents.cli.progress import ProgressLine, run_embedding
from memory.errors import NotFoundError, ValidationError
from memory.ops.values import jsonable

__all__ = ["cmd_import", "cmd_ingest", "cmd_init", "cmd_reindex", "cmd_stats"]


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
