"""``rlmem claude-code install|uninstall|hook|context``: Claude Code capture and recall.

Rules this module keeps:

* ``install`` creates the store when there is none, writes the hooks into the settings file
  and registers the MCP server (``agents.integrations.claude_code.install``); ``--dry-run``
  prints the exact changes and writes nothing. ``uninstall`` removes only what install added.
* ``hook EVENT`` is what Claude Code runs: it reads the hook JSON on stdin, prints only what
  Claude Code should read on stdout, and always exits 0 (errors go to the store's
  ``claude-code/hooks.log``). Importing this module imports nothing heavy.
* ``context`` prints what SessionStart would inject for a directory, with its token count.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents.cli.common import CliContext, resolve_store, store_exists

__all__ = ["register", "run"]


def register(cmd: Callable[..., argparse.ArgumentParser]) -> Callable[[CliContext, argparse.Namespace], int]:
    """Add the ``claude-code`` command to the parser; returns its handler."""
    p = cmd("claude-code", "capture Claude Code sessions into memory and recall them at session start")
    sub = p.add_subparsers(dest="cc_command", metavar="VERB", required=True)
    for verb, text in (("install", "add the hooks and the MCP server to Claude Code"),
                       ("uninstall", "remove what install added (other settings stay)")):
        v = sub.add_parser(verb, help=text, description=text)
        v.add_argument("--scope", choices=["user", "project"], default="user",
                       help="user: ~/.claude/settings.json (default); project: .claude/settings.json and .mcp.json here")
        v.add_argument("--project", default=None, help="project directory for --scope project (default: here)")
        v.add_argument("--dry-run", action="store_true", help="print the changes, write nothing")
        v.add_argument("--store", default=argparse.SUPPRESS, metavar="DIR")
        v.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    h = sub.add_parser("hook", help="handle one Claude Code hook event (JSON on stdin; always exits 0)")
    h.add_argument("event", help="SessionStart, Stop, SubagentStop, PreCompact or SessionEnd")
    h.add_argument("--agent", default="default")
    h.add_argument("--max-tokens", type=int, default=1200, help="SessionStart context budget")
    h.add_argument("--foreground", action="store_true",
                   help="import now, in this process (the hook itself hands captures to such a worker)")
    h.add_argument("--store", default=argparse.SUPPRESS, metavar="DIR")
    c = sub.add_parser("context", help="print the context SessionStart would inject")
    c.add_argument("--cwd", default=None, help="project directory (default: here)")
    c.add_argument("--agent", default="default")
    c.add_argument("--max-tokens", type=int, default=1200)
    c.add_argument("--store", default=argparse.SUPPRESS, metavar="DIR")
    c.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    return run


def run(ctx: CliContext, args: argparse.Namespace) -> int:
    if args.cc_command == "hook":
        return _hook(ctx, args)
    if args.cc_command == "context":
        return _context(ctx, args)
    return _install(ctx, args)


def _hook(ctx: CliContext, args: argparse.Namespace) -> int:
    from agents.integrations.claude_code.hooks import run_hook

    try:
        store = resolve_store(ctx.store_arg)[0]
        data = sys.stdin.read() if not sys.stdin.isatty() else "{}"
    except Exception:
        return 0
    out = run_hook(args.event, data, store, agent_id=args.agent, max_tokens=args.max_tokens,
                   foreground=args.foreground)
    if out:
        ctx.out.write(out + "\n")
    return 0


def _context(ctx: CliContext, args: argparse.Namespace) -> int:
    from agents.integrations.claude_code.context import build_context

    mem = ctx.open_memory()
    cwd = str(Path(args.cwd).resolve()) if args.cwd else str(Path.cwd())
    got = build_context(mem, cwd, agent_id=args.agent, max_tokens=args.max_tokens)
    ctx.emit({"tokens": got.tokens, "sessions": got.sessions, "blocks": got.blocks, "text": got.text},
             lambda: ctx.print(f"{got.text}\n\n({got.tokens} tokens, {len(got.sessions)} sessions)"))
    return 0


def _install(ctx: CliContext, args: argparse.Namespace) -> int:
    from agents.integrations.claude_code import install as inst

    store, origin = resolve_store(ctx.store_arg)
    project = Path(args.project).expanduser() if args.project else None
    fn = inst.install if args.cc_command == "install" else inst.uninstall
    plan = fn(args.scope, store, project=project, dry_run=args.dry_run)
    if args.cc_command == "install" and not args.dry_run and not store_exists(store):
        ctx.open_memory(create=True)
        plan.notes.append(f"created the memory store at {store}")
    if args.scope == "project" and origin == "--store":
        plan.notes.append("project scope: the shared hooks use $RLMEM_STORE or the default store, "
                          f"so set RLMEM_STORE={store} where Claude Code runs")

    def human() -> None:
        verb = "would change" if args.dry_run else ("changed" if plan.changed else "unchanged")
        ctx.print(f"{plan.settings_path}: {verb}" + (f" (backup: {plan.backup})" if plan.backup else ""))
        if args.dry_run:
            ctx.print(_pretty(plan.settings.get("hooks", {})))
        if plan.mcp_path is not None:
            ctx.print(f"{plan.mcp_path}: MCP server {inst.MCP_NAME!r} "
                      + ("removed" if args.cc_command == "uninstall" else "written"))
            if args.dry_run:
                ctx.print(_pretty(plan.mcp_config))
        if plan.mcp_argv is not None:
            ran = "ran" if plan.mcp_ran else ("would run" if args.dry_run else "to run")
            import shlex

            ctx.print(f"MCP ({ran}): {shlex.join(plan.mcp_argv)}")
        for n in plan.notes:
            ctx.print(n)

    ctx.emit(plan.to_dict(), human)
    return 0


def _pretty(data: Any) -> str:
    import json

    return json.dumps(data, indent=2, ensure_ascii=False)
