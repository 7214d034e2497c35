"""``rlmem`` commands that involve a model or a server: ask, chat, repl, serve, mcp, trajectory.

Rules this module keeps:

* Models are built here, at the edge, from flags: Anthropic by default (``--model``, else
  ``$RLMEM_MODEL``, else the client's default model), or any OpenAI-compatible server with
  ``--base-url``. A missing Anthropic key is reported before anything runs, naming
  ``ANTHROPIC_API_KEY`` and the ``--base-url`` alternative. A model object handed to
  ``main(lm=...)`` replaces all of this.
* ``chat`` creates the agent on first use and resumes it afterwards; each reply is durable in
  recall before it is printed.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.cli.common import CliContext, jsonable, resolve_store, store_exists
from memory.errors import MissingAPIKeyError, NotFoundError, ValidationError

if TYPE_CHECKING:
    from rlm_core.lm import LM

__all__ = [
    "cmd_ask",
    "cmd_chat",
    "cmd_mcp",
    "cmd_repl",
    "cmd_serve",
    "cmd_trajectory",
    "make_model",
]


#: The ``[model]`` table of ``rlmem.toml`` and the variables that stand for its keys.
MODEL_SETTINGS = {"name": "RLMEM_MODEL", "sub_model": "RLMEM_SUB_MODEL", "base_url": "RLMEM_BASE_URL"}


def model_settings(ctx: CliContext) -> dict[str, str]:
    """``name``, ``sub_model`` and ``base_url`` from ``$RLMEM_*`` over the store's ``rlmem.toml``
    ``[model]`` table (flags win over both, in ``make_model``)."""
    from agents.cli.common import resolve_store
    from memory.config import TOML_NAME, read_toml
    from memory.errors import ConfigError

    table: dict[str, Any] = {}
    path = resolve_store(ctx.store_arg)[0] / TOML_NAME
    if path.is_file():
        table = read_toml(path).get("model") or {}
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [model] must be a table (name, sub_model, base_url)")
        unknown = set(table) - set(MODEL_SETTINGS)
        if unknown:
            raise ConfigError(f"{path}: unknown [model] option {sorted(unknown)[0]!r}; known: "
                              f"{', '.join(MODEL_SETTINGS)}")
        for key, value in table.items():
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{path}: [model] {key} must be a non-empty string")
    out = {k: str(v) for k, v in table.items()}
    for key, var in MODEL_SETTINGS.items():
        if os.environ.get(var):
            out[key] = os.environ[var]
    return out


def make_model(ctx: CliContext, args: argparse.Namespace, *, sub: bool = False) -> LM:
    """The model the flags ask for (``sub=True``: the one for sub-queries), else the one
    ``$RLMEM_MODEL``/``$RLMEM_SUB_MODEL``/``$RLMEM_BASE_URL`` or ``rlmem.toml``'s ``[model]``
    table names."""
    if ctx.lm is not None:
        return (ctx.sub_lm or ctx.lm) if sub else ctx.lm
    conf = model_settings(ctx)
    name = ((getattr(args, "sub_model", None) or conf.get("sub_model")) if sub else None) \
        or getattr(args, "model", None) or conf.get("name")
    base_url = getattr(args, "base_url", None) or conf.get("base_url")
    if base_url:
        if not name:
            raise ValidationError("an OpenAI-compatible --base-url needs --model NAME (the model the "
                                  "server should run; or RLMEM_MODEL, or name in rlmem.toml [model])")
        from rlm_core.lm.openai import OpenAICompatibleLM

        return OpenAICompatibleLM(name, base_url=base_url)
    if not os.environ.get("ANTHROPIC_API_KEY"):
        raise MissingAPIKeyError("ANTHROPIC_API_KEY", "Anthropic (or use --base-url for an "
                                 "OpenAI-compatible server)")
    from rlm_core.lm.anthropic import AnthropicLM

    return AnthropicLM(name) if name else AnthropicLM()


def _optional_model(ctx: CliContext, args: argparse.Namespace, *, sub: bool = False) -> LM | None:
    try:
        return make_model(ctx, args, sub=sub)
    except MissingAPIKeyError:
        return None


# --- ask -----------------------------------------------------------------------------------


def cmd_ask(ctx: CliContext, args: argparse.Namespace) -> int:
    root = make_model(ctx, args)
    sub = make_model(ctx, args, sub=True)
    mem = ctx.open_memory(embed=True)
    from agents.ask import ask
    from rlm_core.limits import Limits

    kw: dict[str, Any] = {}
    if args.max_iterations is not None:
        kw["max_iterations"] = args.max_iterations
    if args.max_cost is not None:
        kw["max_cost_usd"] = args.max_cost
    limits = Limits(**kw) if kw else None
    result = ask(mem, args.question, root=root, sub=sub, limits=limits, agent_id=args.agent,
                 trajectory_db=mem.db)
    traj = getattr(result, "trajectory", None)
    data = {
        "answer": result.answer,
        "run_id": getattr(traj, "run_id", None),
        "iterations": getattr(result, "iterations", None),
        "cost_usd": getattr(result, "cost_usd", None),
        "usage": jsonable(getattr(result, "usage", None)),
    }

    def human() -> None:
        if args.show_trajectory and traj is not None:
            from rlm_core.trajectory.render import render_text

            ctx.print(render_text(traj))
            if traj.answer is not None:  # the rendering ends with it: not printed twice
                return
            ctx.print()
        ctx.print(str(result.answer))

    ctx.emit(data, human)
    return 0


# --- chat ----------------------------------------------------------------------------------

_CHAT_HELP = "/blocks shows memory blocks, /new starts a new session, /exit (or Ctrl-D) quits"


def _open_agent(ctx: CliContext, args: argparse.Namespace) -> Any:
    from agents.agent.core import Agent
    from agents.agent.state import AgentTable

    model = make_model(ctx, args)
    sub = make_model(ctx, args, sub=True)
    mem = ctx.open_memory(embed=True)
    if AgentTable(mem.db).find(args.agent) is None:
        agent = Agent.create(args.agent, mem, model, persona=args.persona or "",
                             human=args.human or "", sub_model=sub)
        if not ctx.json:
            ctx.print(f"created agent {args.agent!r} in {ctx.store_path}")
    else:
        if args.persona is not None or args.human is not None:
            raise ValidationError(
                f"agent {args.agent!r} exists already: change its blocks with "
                f"`rlmem blocks set persona ... --agent {args.agent}` instead of --persona/--human"
            )
        agent = Agent.open(args.agent, mem, model, sub_model=sub, new_session=args.new_session)
    return agent


def _print_reply(ctx: CliContext, name: str, reply: Any) -> None:
    for call in reply.tool_calls:
        result = " ".join(call.result.split())
        result = result if len(result) <= 120 else result[:119] + "…"
        ctx.print(f"  · {call.name}({jsonable(call.arguments)}) -> {result}")
    ctx.print(f"{name}> {reply.text}")


def cmd_chat(ctx: CliContext, args: argparse.Namespace) -> int:
    agent = _open_agent(ctx, args)
    if args.message:
        replies = []
        for text in args.message:
            reply = agent.step(text)
            replies.append(reply)
            if not ctx.json:
                _print_reply(ctx, agent.name, reply)
        if ctx.json:
            ctx.emit([r.to_dict() for r in replies])
        return 0
    ctx.print(f"chatting with {agent.name!r} (session {agent.session_id}); {_CHAT_HELP}")
    while True:
        try:
            text = input("you> ")
        except EOFError:
            ctx.print()
            return 0
        cmd = text.strip()
        if not cmd:
            continue
        if cmd in ("/exit", "/quit"):
            return 0
        if cmd == "/help":
            ctx.print(_CHAT_HELP)
        elif cmd == "/blocks":
            ctx.print(agent.blocks.render())
        elif cmd == "/new":
            ctx.print(f"new session {agent.new_session()}")
        else:
            reply = agent.step(text)
            if ctx.json:
                ctx.emit(reply.to_dict())
            else:
                _print_reply(ctx, agent.name, reply)


# --- consoles and servers ------------------------------------------------------------------


def cmd_repl(ctx: CliContext, args: argparse.Namespace) -> int:
    mem = ctx.open_memory(embed=True)
    root = _optional_model(ctx, args)
    sub = _optional_model(ctx, args, sub=True)
    if sub is None:
        ctx.warn("no ANTHROPIC_API_KEY (or --base-url): llm_query and rlm_query will not work here")
    from agents.repl.console import run_console

    run_console(mem, root=root, sub=sub, agent_id=args.agent)
    return 0


def cmd_serve(ctx: CliContext, args: argparse.Namespace) -> int:
    mem = ctx.open_memory(embed=True)
    root = _optional_model(ctx, args)
    sub = _optional_model(ctx, args, sub=True)
    from agents.server.auth import store_admin_token
    from agents.server.http import serve

    if not args.header_timeout > 0:
        raise ValidationError(f"--header-timeout must be a positive number of seconds, got {args.header_timeout}")
    token = args.token or os.environ.get("RLMEM_TOKEN") or store_admin_token(mem.config.dir)
    origin = "--token" if args.token else "RLMEM_TOKEN" if os.environ.get("RLMEM_TOKEN") else "`rlmem token show`"
    ctx.warn(f"serving {ctx.store_path} on http://{args.host}:{args.port} (bearer token: {origin}; "
             "per-agent tokens: `rlmem token create --agent NAME`; Ctrl-C stops)")
    serve(mem, host=args.host, port=args.port, token=token, root=root, sub=sub,
          allow_hosts=args.allow_host, cors_origins=args.cors_origin, header_timeout_s=args.header_timeout)
    return 0


def cmd_mcp(ctx: CliContext, args: argparse.Namespace) -> int:
    path, origin = resolve_store(ctx.store_arg)
    if not store_exists(path):
        raise NotFoundError(f"no memory store at {path} (from {origin}): create one with `rlmem init`")
    if args.print_config:
        ctx.emit(_mcp_config(path.resolve(), args))
        return 0
    # stdout is the protocol channel: nothing else may be printed there
    root = _optional_model(ctx, args)
    sub = _optional_model(ctx, args, sub=True)
    from agents.server.mcp import run_mcp

    run_mcp(path, agent_id=args.agent, root=root, sub=sub)
    return 0


def _mcp_config(store: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The client entry that starts this server: absolute paths, since desktop clients do
    not read the shell's PATH. stdio needs no token: only the client that started the
    server can talk to it."""
    import shutil
    import sys

    script = shutil.which("rlmem")
    command, head = (script, []) if script else (sys.executable, ["-m", "agents.cli.main"])
    tail = ["mcp", "--store", str(store)]
    for flag, value in (("--agent", args.agent), ("--model", args.model), ("--sub-model", args.sub_model),
                        ("--base-url", args.base_url)):
        if value:  # the model flags given here, so the client's server offers deep_recall too
            tail += [flag, value]
    return {"mcpServers": {"rlm-memory": {"command": command, "args": head + tail}}}


# --- trajectories --------------------------------------------------------------------------


def cmd_trajectory(ctx: CliContext, args: argparse.Namespace) -> int:
    from agents.trajectories import list_trajectories, load_trajectory, question_of
    from rlm_core.trajectory.render import render_html, render_text

    mem = ctx.open_memory(read_only=True)
    verb = args.trajectory_command
    if verb == "list":
        if args.limit < 1:
            raise ValidationError(f"--limit must be at least 1, got {args.limit}")
        runs = list_trajectories(mem.db, limit=args.limit)

        def human() -> None:
            for r in runs:
                q = question_of(r.query)
                ctx.print(f"{r.run_id}  {r.started_at[:19]}  {r.iterations} it  "
                          f"${r.cost_usd:.4f}  {r.stopped_by or 'answer'}  {q[:70]}")
            if not runs:
                ctx.print("no recorded runs (`rlmem ask` records one per question)")

        ctx.emit(runs, human)
        return 0
    traj = load_trajectory(mem.db, args.run_id)
    args.run_id = traj.run_id  # a short id names the whole one from here on
    if verb == "show":
        ctx.emit(traj.to_dict(), lambda: ctx.print(render_text(traj)))
        return 0
    suffix = ".jsonl" if args.jsonl else ".html"
    out = Path(args.output or f"{args.run_id}{suffix}").expanduser()
    if args.jsonl:
        traj.save_jsonl(out)
    else:
        out.write_text(render_html(traj), encoding="utf-8")
    ctx.emit({"run_id": args.run_id, "path": str(out)}, f"wrote {out}")
    return 0
