"""``rlmem``: the command line over a memory store.

Rules this module keeps:

* argparse only, noun commands with verbs (``blocks list|show|set``, ``trajectory
  list|show|export``); ``--store`` and ``--json`` are accepted before or after the command.
* Importing this module imports nothing heavy; each command imports what it needs when it
  runs (see ``agents.cli.common``), so ``rlmem search --mode text`` never loads torch.
* Errors from the ``memory.errors`` hierarchy print one line on stderr that says what to do,
  and exit with status 2 (the caller's input or setup) or 1 (the store or the model failed);
  Ctrl-C exits with 130 and SIGTERM with 143, embedding stopped between batches first
  (``agents.cli.progress``). Tracebacks appear only with ``RLMEM_DEBUG=1``.
* Files and directories ``rlmem`` creates are owner-only (umask 077): memory is private.
* ``main(argv, lm=...)`` takes a model object for ``ask`` and ``chat``, so programs and tests
  drive the command without an API key.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from agents.cli import claude_code as cli_claude_code
from agents.cli import doctor as cli_doctor
from agents.cli import memory as cli_memory
from agents.cli import model as cli_model
from agents.cli import store as cli_store
from agents.cli import token as cli_token
from agents.cli.common import CliContext, default_store_dir
from agents.cli.memory import ROLES, TIERS
from agents.cli.memory import op_default as _d
from agents.cli.progress import Terminated
from memory.errors import LMError, MissingAPIKeyError, RlmMemoryError, UserError

if TYPE_CHECKING:
    from rlm_core.lm import LM

__all__ = ["build_parser", "main"]

_EPILOG = f"""\
The store is --store DIR, else $RLMEM_STORE, else {default_store_dir()}.
Start with `rlmem init`, then `rlmem log "..."` and `rlmem search "..."`.
Models: ask/chat use Anthropic (set ANTHROPIC_API_KEY) or any OpenAI-compatible server
(--base-url URL --model NAME)."""


def _common(json_default: Any = argparse.SUPPRESS) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--store", default=argparse.SUPPRESS, metavar="DIR",
                   help="memory store directory (default: $RLMEM_STORE or the default location)")
    p.add_argument("--json", action="store_true", default=json_default,
                   help="print JSON for scripts instead of text")
    p.add_argument("-q", "--quiet", action="store_true", default=json_default,
                   help="no progress lines or notes on stderr (errors still go there)")
    return p


def _filters(p: argparse.ArgumentParser, *, agent_default: str | None = None) -> None:
    p.add_argument("--agent", default=agent_default, help="only this agent id")
    p.add_argument("--session", help="only this session id")
    p.add_argument("--role", choices=ROLES, help="only this role")
    p.add_argument("--since", help="only at or after this ISO date/time (e.g. 2024-05-01)")
    p.add_argument("--until", help="only before this ISO date/time")


def _models(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help="model name (default: $RLMEM_MODEL, else rlmem.toml [model] name, else "
                        "claude-sonnet-4-5)")
    p.add_argument("--sub-model", default=None,
                   help="model for sub-queries (default: $RLMEM_SUB_MODEL, else the --model)")
    p.add_argument("--base-url", default=None,
                   help="an OpenAI-compatible endpoint instead of Anthropic (default: "
                        "$RLMEM_BASE_URL or rlmem.toml [model] base_url): Ollama "
                        "http://127.0.0.1:11434/v1, llama.cpp server http://127.0.0.1:8080/v1, "
                        "vLLM http://127.0.0.1:8000/v1")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rlm-memory")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown (not installed)"


class _Version(argparse.Action):
    """``--version``, looked up only when asked for (reading the package metadata costs every
    command tens of milliseconds otherwise)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: Any = None) -> None:
        sys.stdout.write(f"rlmem {_version()}\n")
        parser.exit()


def _command_word(argv: Sequence[str]) -> str | None:
    """The first word of ``argv`` that is neither an option nor ``--store``'s value."""
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a == "--store":
            skip = True
        elif not a.startswith("-"):
            return a
    return None


def _suggest(word: str | None) -> str | None:
    """``did you mean`` for a mistyped command: the closest command name, if one is close."""
    import difflib

    if word is None or word in _COMMANDS:
        return None
    close = difflib.get_close_matches(word, sorted(_COMMANDS), n=1, cutoff=0.6)
    return close[0] if close else None


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="rlmem", description="Hybrid memory for long-lived LLM agents.", epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter, parents=[_common(False)],
    )  # fmt: skip
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def cmd(name: str, help: str, **kw: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, parents=[common], **kw)

    p = cmd("init", "create a memory store (a directory)")
    p.add_argument("path", nargs="?", help="store directory (default: the --store location)")
    p.add_argument("--database-url", help="keep the tables in this PostgreSQL URL instead")
    p.add_argument("--chroma-host", help="keep vectors on the Chroma server at this host")
    p.add_argument("--chroma-port", type=int, default=None, help="port of the Chroma server (8000)")

    p = cmd("ingest", "add files or directories to archival memory (chunked and embedded)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--chunk-tokens", type=int, default=None, help="tokens per chunk")
    p.add_argument("--overlap", type=int, default=None, help="tokens shared by neighbouring chunks")
    p.add_argument("--tag", action="append", default=[], dest="tags", help="tag every chunk (repeatable)")
    p.add_argument("--ext", action="append", default=None, dest="exts", metavar="EXT",
                   help="in folders, also ingest files with this extension (repeatable, e.g. --ext .org; "
                        "added to the defaults: common text and code; a file named is read whatever its extension)")
    p.add_argument("--follow-symlinks", action="store_true",
                   help="follow symbolic links that lead out of a folder (default: skip and report them)")
    p.add_argument("--no-progress", action="store_true", help="no progress line (as --quiet)")

    p = cmd("import", "import chat transcripts into the recall log (exactly once, however often)")
    p.add_argument("files", nargs="+", metavar="PATH",
                   help="transcript files, or directories (every *.jsonl under them, e.g. ~/.claude/projects)")
    p.add_argument("--format", choices=["jsonl", "claude-code"], default=None,
                   help="transcript format (default: detected from the file)")
    p.add_argument("--agent", default="default", help="agent id to file the messages under")
    p.add_argument("--session", default=None, help="put every message in this session")
    p.add_argument("--no-embed", action="store_true",
                   help="only store the messages; embedding waits for a later command")

    p = cmd("log", "append a message to the recall log")
    p.add_argument("text", help="message text ('-' reads standard input)")
    p.add_argument("--role", default=_d("log", "role"), choices=ROLES)
    p.add_argument("--agent", default="default")
    p.add_argument("--session", default="default")

    p = cmd("search", "search memory (full text, vector, or both)")
    p.add_argument("query")
    p.add_argument("--mode", choices=["text", "vector", "hybrid"], default=_d("search", "mode"),
                   help="full text (BM25), vector (cosine) or both (default: %(default)s; its scores "
                        "are standardised: 0 is an average candidate, below it negative)")
    p.add_argument("--tier", choices=TIERS, default=_d("search", "tier"),
                   help="which tiers (default: %(default)s)")
    p.add_argument("-k", type=int, default=_d("search", "k"), help="number of results (default: %(default)s)")
    p.add_argument("--sessions", action="store_true",
                   help="rank whole conversation sessions of the recall log, not single messages")
    p.add_argument("--wait", action="store_true",
                   help="embed what is still queued first, with progress (default: search now; "
                        "queued items are found by full text only, and their count is reported)")
    p.add_argument("--no-wait", action="store_true", help=argparse.SUPPRESS)  # the default now
    _filters(p)

    p = cmd("grep", "regular-expression search over memory")
    p.add_argument("pattern")
    p.add_argument("--tier", choices=TIERS, default=_d("grep", "tier"),
                   help="which tiers (default: %(default)s)")
    p.add_argument("-i", "--ignore-case", action="store_true", default=_d("grep", "ignore_case"))
    p.add_argument("-F", "--literal", action="store_true", help="the pattern is plain text")
    p.add_argument("--limit", type=int, default=_d("grep", "limit"),
                   help="most matches over all tiers together (default: %(default)s)")
    _filters(p)

    p = cmd("forget", "delete recall messages for good (audited); a dry run unless --yes")
    p.add_argument("--id", type=int, action="append", dest="ids", default=None, metavar="ID",
                   help="a message id (repeatable)")
    p.add_argument("--session", help="the messages of this session")
    p.add_argument("--pattern", help="the messages matching this regular expression")
    p.add_argument("--since", help="only at or after this ISO date/time")
    p.add_argument("--until", help="only at or before this ISO date/time")
    p.add_argument("--agent", default=None, help="only this agent's messages")
    p.add_argument("--reason", required=True, help="why (kept in the audit log)")
    p.add_argument("--yes", action="store_true", help="delete (without it: list what would go)")

    p = cmd("ask", "answer a question from memory with a recursive model (RLM)")
    p.add_argument("question")
    _models(p)
    p.add_argument("--agent", default=None, help="whose blocks to use")
    p.add_argument("--max-iterations", type=int, default=None)
    p.add_argument("--max-cost", type=float, default=None, help="stop past this cost in USD")
    p.add_argument("--show-trajectory", action="store_true", help="print every step of the run")

    p = cmd("chat", "talk with a long-lived agent (created on first use)")
    p.add_argument("--agent", default="assistant", help="agent name (default: assistant)")
    _models(p)
    p.add_argument("--persona", default=None, help="persona block of a new agent")
    p.add_argument("--human", default=None, help="human block of a new agent")
    p.add_argument("--new-session", action="store_true", help="start a new session")
    p.add_argument("-m", "--message", action="append", default=None,
                   help="send this message and exit (repeatable; no prompt)")

    p = cmd("repl", "an interactive console with the namespace the root model gets")
    _models(p)
    p.add_argument("--agent", default=None)

    p = cmd("serve", "serve the HTTP API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--token", default=None,
                   help="admin bearer token (default: $RLMEM_TOKEN, else the store's: `rlmem token show`)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="another host name clients use for this server (repeatable; loopback names "
                        "and IP addresses are always allowed)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="a web origin allowed to call the API from a browser, e.g. http://localhost:3000")
    p.add_argument("--header-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="close a connection whose request headers take longer than this (10)")
    _models(p)

    p = cmd("mcp", "run the MCP server on stdio (for Claude Code / Claude Desktop)")
    p.add_argument("--agent", default=None, help="whose blocks and messages the tools use")
    p.add_argument("--print-config", action="store_true",
                   help="print the mcpServers entry for .mcp.json / claude_desktop_config.json and exit")
    _models(p)

    p = cmd("blocks", "working-memory blocks")
    bsub = p.add_subparsers(dest="blocks_command", metavar="VERB", required=True)
    for verb, text in (("list", "list blocks"), ("show", "print one block"),
                       ("set", "set a block's value (created if missing)"),
                       ("append", "add a line to a block (created if missing)"),
                       ("replace", "replace exact text in a block"),
                       ("edit", "change a block's limit, description or read-only flag"),
                       ("delete", "delete a block (its history is kept)"),
                       ("history", "the edits of one block")):
        b = bsub.add_parser(verb, help=text, description=text, parents=[common])
        b.add_argument("--agent", default="default")
        if verb != "list":
            b.add_argument("label")
        if verb in ("set", "append"):
            b.add_argument("value", help="the text ('-' reads standard input)")
        if verb == "replace":
            b.add_argument("old", help="the exact text now in the block")
            b.add_argument("new", help="the text to put in its place")
        if verb in ("set", "edit"):
            b.add_argument("--limit", type=int, default=None, help="character limit")
            b.add_argument("--description", default=None)
            ro = b.add_mutually_exclusive_group()
            ro.add_argument("--read-only", dest="read_only", action="store_true", default=None)
            ro.add_argument("--writable", dest="read_only", action="store_false")

    p = cmd("peek", "print a recall message with its neighbours in the same session")
    p.add_argument("message_id", type=int, metavar="ID")
    p.add_argument("--before", type=int, default=_d("peek", "before"), help="earlier messages (default: %(default)s)")
    p.add_argument("--after", type=int, default=_d("peek", "after"), help="later messages (default: %(default)s)")
    p.add_argument("--agent", default=None, help="only this agent's messages")

    p = cmd("sessions", "list conversation sessions")
    p.add_argument("--agent", default=None)

    cli_token.add_parser(sub, common)
    cmd("agents", "list the agents in the store")
    cmd("stats", "counts and sizes of every tier")

    p = cmd("trajectory", "recorded RLM runs")
    tsub = p.add_subparsers(dest="trajectory_command", metavar="VERB", required=True)
    t = tsub.add_parser("list", help="recent runs", parents=[common])
    t.add_argument("--limit", type=int, default=20)
    t = tsub.add_parser("show", help="print one run", parents=[common])
    t.add_argument("run_id")
    t = tsub.add_parser("export", help="write one run as HTML or JSON lines", parents=[common])
    t.add_argument("run_id")
    fmt = t.add_mutually_exclusive_group()
    fmt.add_argument("--html", action="store_true", help="HTML page (the default)")
    fmt.add_argument("--jsonl", action="store_true", help="JSON lines")
    t.add_argument("-o", "--output", default=None, help="file to write (default: RUN_ID.html/.jsonl)")

    p = cmd("reindex", "rebuild the vector index from the database")
    p.add_argument("--tier", choices=["all", "recall", "archival"], default="all")
    p.add_argument("--reembed", action="store_true",
                   help="embed every row again (default: reuse the stored vectors of the current model)")
    _COMMANDS["doctor"] = cli_doctor.register(cmd)
    _COMMANDS["claude-code"] = cli_claude_code.register(cmd)
    return parser


_COMMANDS: dict[str, Callable[[CliContext, argparse.Namespace], int]] = {
    "init": cli_store.cmd_init,
    "ingest": cli_store.cmd_ingest,
    "import": cli_store.cmd_import,
    "log": cli_memory.cmd_log,
    "search": cli_memory.cmd_search,
    "grep": cli_memory.cmd_grep,
    "forget": cli_memory.cmd_forget,
    "blocks": cli_memory.cmd_blocks,
    "sessions": cli_memory.cmd_sessions,
    "peek": cli_memory.cmd_peek,
    "agents": cli_memory.cmd_agents,
    "stats": cli_store.cmd_stats,
    "reindex": cli_store.cmd_reindex,
    "ask": cli_model.cmd_ask,
    "chat": cli_model.cmd_chat,
    "repl": cli_model.cmd_repl,
    "serve": cli_model.cmd_serve,
    "mcp": cli_model.cmd_mcp,
    "trajectory": cli_model.cmd_trajectory,
    "token": cli_token.cmd_token,
}


def main(
    argv: Sequence[str] | None = None,
    *,
    lm: LM | None = None,
    sub_lm: LM | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run ``rlmem`` with ``argv``; returns the exit status."""
    # Everything rlmem creates (store, token, config, vectors, exports) is for its owner only;
    # the caller's umask comes back when main returns (main runs inside other programs too).
    umask = os.umask(0o077)
    try:
        return _run(argv, lm=lm, sub_lm=sub_lm, stdout=stdout, stderr=stderr)
    finally:
        os.umask(umask)


def _run(argv: Sequence[str] | None, *, lm: LM | None, sub_lm: LM | None, stdout: TextIO | None,
         stderr: TextIO | None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    word = _command_word(argv)
    guess = _suggest(word)
    if guess is not None:
        (stderr or sys.stderr).write(
            f"rlmem: unknown command {word!r}; "
            f"did you mean `rlmem {guess}`? (`rlmem --help` lists the commands)\n")
        return 2
    args = parser.parse_args(argv)
    ctx = CliContext(store_arg=getattr(args, "store", None), json=bool(getattr(args, "json", False)),
                     out=stdout or sys.stdout, err=stderr or sys.stderr, lm=lm, sub_lm=sub_lm,
                     quiet=bool(getattr(args, "quiet", False)))
    if not args.command:
        parser.print_help(ctx.out)
        return 0
    ctx.signals.install()
    try:
        return int(_COMMANDS[args.command](ctx, args) or 0)
    except KeyboardInterrupt:
        ctx.warn("interrupted (what was not embedded yet stays queued)")
        return 130
    except Terminated:
        ctx.warn("terminated (what was not embedded yet stays queued)")
        return 143
    except RlmMemoryError as exc:
        if os.environ.get("RLMEM_DEBUG"):
            raise
        code = 2 if isinstance(exc, UserError | MissingAPIKeyError) else 1
        if ctx.json:
            print(json.dumps({"error": type(exc).__name__, "message": str(exc)}), file=ctx.err)
        else:
            kind = "error" if not isinstance(exc, LMError) else "model error"
            ctx.warn(f"{kind}: {exc}")
        return code
    except BrokenPipeError:  # `rlmem search ... | head` closed the pipe: not an error
        return 0
    finally:
        try:
            ctx.close()
        finally:
            ctx.signals.restore()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
