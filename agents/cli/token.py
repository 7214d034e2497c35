"""``rlmem token``: the tokens that open a served store (``rlmem serve``).

Rules this module keeps:

* ``show`` prints the store's admin token (made at ``rlmem init``; made now for an older
  store); ``create --agent A [--agent B] [--read-only]`` makes a scoped token and prints its
  secret once (only a hash is kept); ``list`` shows ids, agents and rights, never secrets;
  ``revoke ID`` stops a scoped token at its next request.
* The admin token is a file in the store directory, owner-only (0600); nothing here prints a
  secret the user did not ask for.
"""

from __future__ import annotations

import argparse
from typing import Any

from agents.cli.common import CliContext

__all__ = ["add_parser", "cmd_token"]


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``rlmem token`` and its verbs on the main parser's subcommands."""
    p = sub.add_parser("token", help="tokens for the HTTP API (admin and per-agent)",
                       description="tokens for the HTTP API (admin and per-agent)", parents=[common])
    tsub = p.add_subparsers(dest="token_command", metavar="VERB", required=True)
    tsub.add_parser("show", help="print the store's admin token", parents=[common])
    c = tsub.add_parser("create", help="make a token that opens only the given agents", parents=[common])
    c.add_argument("--agent", action="append", required=True, dest="agents", metavar="AGENT",
                   help="an agent the token opens (repeatable)")
    c.add_argument("--read-only", action="store_true", help="the token may read but not write")
    c.add_argument("--label", default="", help="a note to recognise the token by")
    t = tsub.add_parser("list", help="the scoped tokens (never their secrets)", parents=[common])
    t.add_argument("--all", action="store_true", help="include revoked tokens")
    r = tsub.add_parser("revoke", help="revoke a scoped token by id", parents=[common])
    r.add_argument("token_id", metavar="ID")


def cmd_token(ctx: CliContext, args: argparse.Namespace) -> int:
    from agents.server.auth import TokenStore, store_admin_token

    mem = ctx.open_memory()
    verb = args.token_command
    if verb == "show":
        token = store_admin_token(mem.config.dir)
        ctx.emit({"token": token, "file": str(mem.config.dir / "token")}, token)
        return 0
    tokens = TokenStore(mem.db, None)
    if verb == "create":
        info, secret = tokens.create(args.agents, write=not args.read_only, label=args.label)
        rights = "read-only" if not info.write else "read and write"
        ctx.emit(info.to_dict() | {"token": secret},
                 f"{secret}\n(token {info.id}: {rights}, agents {', '.join(info.agents)}; "
                 "shown only now: keep it, or revoke it and make another)")
        return 0
    if verb == "list":
        listed = tokens.list(include_revoked=args.all)

        def human() -> None:
            for t in listed:
                state = f"revoked {t.revoked_at}" if t.revoked_at else ("read-write" if t.write else "read-only")
                ctx.print(f"{t.id}  {state:<12}  {','.join(t.agents)}  {t.created_at}  {t.label}")
            if not listed:
                ctx.print("no scoped tokens (`rlmem token create --agent NAME` makes one)")

        ctx.emit([t.to_dict() for t in listed], human)
        return 0
    info = tokens.revoke(args.token_id)
    ctx.emit(info.to_dict(), f"revoked token {info.id} ({', '.join(info.agents)})")
    return 0
