"""The HTTP API: a small JSON service over one MemoryManager (``rlmem serve``).

Rules this module keeps:

* Every route runs one of memory's operations through its view (``agents.server.operations``;
  many are the tools' views): the operation's schema validates the request (path, query and
  JSON body arguments, merged) and generates the OpenAPI description, so the two cannot drift
  apart.
* Safe by default: bound to 127.0.0.1, and a bearer token is checked on every route except
  ``/health``, also on loopback: the store's admin token (``agents.server.auth``, made at
  ``rlmem init``) unless one is passed, or a scoped token. Before any route runs,
  ``agents.server.guard`` refuses foreign ``Host`` names, foreign web origins and non-JSON
  writes, and bounds the size and arrival time of headers. Bodies over ``max_body_bytes`` get
  413 before they are read whole, and a body must arrive within ``body_timeout_s`` (408).
* The request body is parsed strictly: NaN, Infinity, duplicate keys and integers outside
  the signed 64-bit range are 400 before anything runs, so a write is acknowledged with 2xx
  exactly when it was stored and refused with 4xx when nothing was.
* Errors are JSON ``{"error": {"type", "message"}}``: 400 bad input, 401 no token, 403 wrong
  token or a token that does not open the agent / may not write, 404 unknown id/label/route,
  405, 408, 409 refused block edit, 413, 415, 421 foreign host, 502 model failure, 503 not
  configured or store busy, 507 disk full (naming the disk), 500 for anything else, without
  internals (logged instead).
* A request names its agent with the ``X-Agent-Id`` header (or ``?agent_id=``): blocks are
  that agent's and recall searches see only its messages. With the admin token and no agent,
  blocks are the server's agent's and searches cover the whole store; a scoped token acts as
  its agent and ``X-Agent-Id`` can only choose among the agents it opens.
* Memory calls run in a worker thread so one slow search does not block other requests.
  ``serve`` runs in the foreground; ``ServerThread`` runs the same app in a background thread
  (tests, notebooks) and is stopped with ``stop()``.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

try:
    import anyio
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
except ModuleNotFoundError as exc:  # the HTTP API is the optional extra [server]
    from memory.errors import MissingExtraError

    raise MissingExtraError("server", "the HTTP API (rlmem serve)", exc.name) from None

from agents.server.auth import AccessDenied, Grant, TokenStore, store_admin_token
from agents.server.body import INT_RANGE, parse_json_body
from agents.server.guard import (
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_MAX_HEADER_BYTES,
    GuardedH11Protocol,
    RequestGuard,
    allowed_hosts,
)
from agents.server.openapi import openapi_document
from agents.server.operations import OPERATIONS, Operation
from agents.tools import builtin as T
from agents.tools.bound import bound
from memory import errors as E
from memory.db import is_disk_full
from memory.ops.values import jsonable

if TYPE_CHECKING:
    from memory.manager import MemoryManager
    from rlm_core.lm import LM

__all__ = ["DEFAULT_MAX_BODY_BYTES", "OPERATIONS", "Operation", "ServerThread", "create_app", "serve"]

log = logging.getLogger("rlmem.http")

DEFAULT_MAX_BODY_BYTES = 1_000_000
DEFAULT_BODY_TIMEOUT_S = 30.0

# What a read-only token may call (by function name, for routes and /tools/{name} alike).
# An allow-list, so an operation added later is refused to read-only tokens until listed here.
_READS = frozenset({
    "search", "grep", "sessions", "list_blocks", "get_block", "stats",
    "memory_search", "conversation_search", "archival_search", "memory_grep", "memory_peek",
    "block_history", "memory_sessions", "memory_blocks",
})

_STATUS: tuple[tuple[type[BaseException], int, str], ...] = (
    (AccessDenied, 403, "forbidden"),
    (E.NotFoundError, 404, "not_found"),
    (E.BlockError, 409, "block_edit_refused"),
    (E.ConfigError, 503, "not_configured"),
    (E.UserError, 400, "invalid_request"),
    (E.StoreBusyError, 503, "store_busy"),
    (E.LMError, 502, "model_error"),
)


def _error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status, headers=headers)


def _from_exception(exc: BaseException, state: _State) -> JSONResponse:
    if is_disk_full(exc):
        where = state.ctx.memory.config.dir
        return _error(507, "insufficient_storage",
                      f"the disk holding the store ({where}) is full: the request was not stored; "
                      "free some space and retry")
    for cls, status, kind in _STATUS:
        if isinstance(exc, cls):
            return _error(status, kind, str(exc))
    log.exception("request failed", exc_info=exc)
    return _error(500, "internal_error", "internal server error (details are in the server log)")


@dataclass
class _State:
    ctx: T.ToolContext
    tokens: TokenStore
    max_body_bytes: int
    body_timeout_s: float


async def _read_json(request: Request, limit: int, timeout_s: float) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _TooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        with anyio.fail_after(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _TooLarge(limit)
                chunks.append(chunk)
    except TimeoutError:
        raise _TooSlow(timeout_s) from None
    return parse_json_body(b"".join(chunks))


class _TooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than the limit of {limit} bytes")


class _TooSlow(Exception):
    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"the request body did not arrive within {timeout_s:.0f} s")


def _context(state: _State, request: Request, grant: Grant, what: str) -> T.ToolContext:
    if what not in _READS:
        grant.check_write(what)
    requested = request.headers.get("x-agent-id") or request.query_params.get("agent_id")
    agent = grant.agent(requested)
    session = request.headers.get("x-session-id")
    ctx = state.ctx
    if agent or session:
        ctx = replace(ctx, agent_id=agent or ctx.agent_id, session_id=session or ctx.session_id,
                      agent_scoped=bool(agent) or ctx.agent_scoped)
    return ctx


def _authenticate(state: _State, request: Request) -> Grant | JSONResponse:
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return _error(401, "unauthorized", "this server needs a bearer token: send 'Authorization: Bearer <token>' "
                      "(`rlmem token show` prints the store's token)", {"WWW-Authenticate": "Bearer"})
    grant = state.tokens.check(given.strip())
    if grant is None:
        return _error(403, "forbidden", "the bearer token is not valid for this server")
    return grant


def _endpoint(state: _State, op: Operation | None) -> Callable[[Request], Any]:
    async def handle(request: Request) -> Response:
        try:
            grant = await run_in_threadpool(_authenticate, state, request)
            if isinstance(grant, Response):
                return grant
            args: dict[str, Any] = dict(request.query_params)
            args.pop("agent_id", None)
            if request.method in ("POST", "PUT"):
                args |= await _read_json(request, state.max_body_bytes, state.body_timeout_s)
            args |= request.path_params
            if op is None:  # POST /tools/{name}
                name = args.pop("name")
                extra = sorted(set(args) - {"arguments"})
                if extra:
                    raise E.ValidationError(f"unknown field(s) {extra}: send {{\"arguments\": {{...}}}}")
                ctx = _context(state, request, grant, name)
                result = await run_in_threadpool(T.call_tool, name, ctx, args.get("arguments") or {})
                return JSONResponse({"tool": name, "result": result})
            ctx = _context(state, request, grant, op.view.name)
            for name, value in args.items():  # path and query integers, still text here
                if isinstance(value, str) and value.lstrip("-").isdigit() and not INT_RANGE[0] <= int(value) <= INT_RANGE[1]:
                    raise E.ValidationError(f"{name} is out of range (a signed 64-bit integer), got {value}")
            result = await run_in_threadpool(op.run, ctx, args)
            return JSONResponse(bound(jsonable(result), 4 * ctx.max_result_chars), status_code=op.status)
        except _TooLarge as exc:
            return _error(413, "payload_too_large", str(exc))
        except _TooSlow as exc:
            return _error(408, "request_timeout", str(exc))
        except Exception as exc:
            return _from_exception(exc, state)

    return handle


def create_app(
    memory: MemoryManager,
    *,
    token: str | None = None,
    root: LM | None = None,
    sub: LM | None = None,
    limits: Any = None,
    agent_id: str = "default",
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    host: str = "127.0.0.1",
    allow_hosts: Iterable[str] = (),
    cors_origins: Iterable[str] = (),
) -> Any:
    """The ASGI app (mount it in another server, or run it with ``serve``).

    ``token`` is the admin token (default: the store's, created if it has none); scoped
    tokens of the store are accepted too. ``host`` and ``allow_hosts`` make the Host
    allow-list, ``cors_origins`` the only web origins besides the server's own."""
    admin = token or store_admin_token(memory.config.dir)
    ctx = T.ToolContext(memory=memory, agent_id=agent_id, root=root, sub=sub, limits=limits,
                        actor="api", agent_scoped=False)
    state = _State(ctx=ctx, tokens=TokenStore(memory.db, admin), max_body_bytes=max_body_bytes,
                   body_timeout_s=body_timeout_s)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "service": "rlm-memory"})

    async def tools(request: Request) -> Response:
        return JSONResponse({"tools": T.anthropic_tools()})

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document(OPERATIONS, auth=True))

    def guarded(fn: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def run(request: Request) -> Response:
            grant = await run_in_threadpool(_authenticate, state, request)
            return grant if isinstance(grant, Response) else await fn(request)

        return run

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/openapi.json", guarded(openapi), methods=["GET"]),
        Route("/tools", guarded(tools), methods=["GET"]),
        Route("/tools/{name}", _endpoint(state, None), methods=["POST"]),
        *(Route(op.path, _endpoint(state, op), methods=[op.method]) for op in OPERATIONS),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        # Unknown paths and methods answer only to a client with a token: without it they
        # get 401/403 like every route, so the route table cannot be probed.
        grant = await run_in_threadpool(_authenticate, state, request)
        if isinstance(grant, Response):
            return grant
        code = exc.status_code if isinstance(exc, HTTPException) else 500
        kind = {404: "not_found", 405: "method_not_allowed"}.get(code, "http_error")
        detail = exc.detail if isinstance(exc, HTTPException) else "internal server error"
        return _error(code, kind, f"{detail}: {request.method} {request.url.path}")

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    return RequestGuard(app, hosts=allowed_hosts(host, allow_hosts), cors_origins=cors_origins)


def _config(app: Any, host: str, port: int, *, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
            header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S) -> Any:
    try:
        import uvicorn
    except ModuleNotFoundError as exc:
        raise E.MissingExtraError("server", "serving the HTTP API", exc.name) from None

    protocol = type("RlmemH11Protocol", (GuardedH11Protocol,), {"header_timeout_s": header_timeout_s})
    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off",
                          http=protocol, ws="none", h11_max_incomplete_event_size=max_header_bytes,
                          timeout_keep_alive=5)


def _split(options: dict[str, Any]) -> dict[str, Any]:
    return {k: options.pop(k) for k in ("max_header_bytes", "header_timeout_s") if k in options}


def serve(
    memory: MemoryManager,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    root: LM | None = None,
    sub: LM | None = None,
    **options: Any,
) -> None:
    """Serve the API in the foreground until interrupted (Ctrl-C)."""
    import uvicorn

    limits = _split(options)
    app = create_app(memory, token=token, root=root, sub=sub, host=host, **options)
    uvicorn.Server(_config(app, host, port, **limits)).run()


class ServerThread:
    """The API served from a background thread; ``url`` is set once it accepts connections."""

    def __init__(
        self,
        memory: MemoryManager,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        root: LM | None = None,
        sub: LM | None = None,
        **options: Any,
    ) -> None:
        import uvicorn

        limits = _split(options)
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host, self.port = host, self._sock.getsockname()[1]
        self.app = create_app(memory, token=token, root=root, sub=sub, host=host, **options)
        self._server = uvicorn.Server(_config(self.app, host, self.port, **limits))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name=f"rlmem-http-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> ServerThread:
        self._thread.start()
        for _ in range(int(timeout * 100)):
            if self._server.started:
                return self
            if not self._thread.is_alive():
                break
            threading.Event().wait(0.01)
        raise E.ConfigError(f"the HTTP API did not start on {self.url} within {timeout} s")

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
