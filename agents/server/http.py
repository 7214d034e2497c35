"""The HTTP API: a small JSON service over one MemoryManager (``rlmem serve``).

Rules this module keeps:

* Every route runs one of memory's operations through its view (``agents.server.operations``;
  many are the tools' views): the operation's schema validates the request (path, query and
  JSON body arguments, merged) and generates the OpenAPI description, so the two cannot drift
  apart.
* Safe by default: bound to 127.0.0.1; a bearer token is checked on every route except
  ``/health`` when one is configured, and a server bound to any other address refuses to start
  without one. Bodies over ``max_body_bytes`` get 413 before they are read whole.
* Errors are JSON ``{"error": {"type", "message"}}``: 400 bad input, 401 no token, 403 wrong
  token, 404 unknown id/label/route, 405, 409 refused block edit, 413, 502 model failure,
  503 not configured or store busy, 500 for anything else, without internals (logged instead).
* A request names its agent with the ``X-Agent-Id`` header (or ``?agent_id=``): blocks are
  that agent's and recall searches see only its messages. Without one, blocks are the
  server's agent's and searches cover the whole store.
* Memory calls run in a worker thread so one slow search does not block other requests.
  ``serve`` runs in the foreground; ``ServerThread`` runs the same app in a background thread
  (tests, notebooks) and is stopped with ``stop()``.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

try:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
except ModuleNotFoundError as exc:  # the HTTP API is the optional extra [server]
    from memory.errors import MissingExtraError

    raise MissingExtraError("server", "the HTTP API (rlmem serve)", exc.name) from None

from agents.server.openapi import openapi_document
from agents.server.operations import OPERATIONS, Operation
from agents.tools import builtin as T
from agents.tools.bound import bound
from memory import errors as E
from memory.ops.values import jsonable

if TYPE_CHECKING:
    from memory.manager import MemoryManager
    from rlm_core.lm import LM

__all__ = ["DEFAULT_MAX_BODY_BYTES", "OPERATIONS", "Operation", "ServerThread", "create_app", "serve"]

log = logging.getLogger("rlmem.http")

DEFAULT_MAX_BODY_BYTES = 1_000_000


_STATUS: tuple[tuple[type[BaseException], int, str], ...] = (
    (E.NotFoundError, 404, "not_found"),
    (E.BlockError, 409, "block_edit_refused"),
    (E.ConfigError, 503, "not_configured"),
    (E.UserError, 400, "invalid_request"),
    (E.StoreBusyError, 503, "store_busy"),
    (E.LMError, 502, "model_error"),
)


def _error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status, headers=headers)


def _from_exception(exc: BaseException) -> JSONResponse:
    for cls, status, kind in _STATUS:
        if isinstance(exc, cls):
            return _error(status, kind, str(exc))
    log.exception("request failed", exc_info=exc)
    return _error(500, "internal_error", "internal server error (details are in the server log)")


@dataclass
class _State:
    ctx: T.ToolContext
    token: str | None
    max_body_bytes: int


async def _read_json(request: Request, limit: int) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _TooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge(limit)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise E.ValidationError(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise E.ValidationError("the request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise E.ValidationError("the request body must be a JSON object")
    return body


class _TooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than the limit of {limit} bytes")


def _context(state: _State, request: Request) -> T.ToolContext:
    agent = request.headers.get("x-agent-id") or request.query_params.get("agent_id")
    session = request.headers.get("x-session-id")
    ctx = state.ctx
    if agent or session:
        ctx = replace(ctx, agent_id=agent or ctx.agent_id, session_id=session or ctx.session_id,
                      agent_scoped=bool(agent) or ctx.agent_scoped)
    return ctx


def _check_auth(state: _State, request: Request) -> JSONResponse | None:
    if state.token is None or request.url.path == "/health":
        return None
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        return _error(401, "unauthorized", "this server needs a bearer token: send 'Authorization: Bearer <token>'",
                      {"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(given.strip().encode(), state.token.encode()):
        return _error(403, "forbidden", "the bearer token is not valid for this server")
    return None


def _endpoint(state: _State, op: Operation | None) -> Callable[[Request], Any]:
    async def handle(request: Request) -> Response:
        denied = _check_auth(state, request)
        if denied is not None:
            return denied
        try:
            args: dict[str, Any] = dict(request.query_params)
            args.pop("agent_id", None)
            if request.method in ("POST", "PUT"):
                args |= await _read_json(request, state.max_body_bytes)
            args |= request.path_params
            ctx = _context(state, request)
            if op is None:  # POST /tools/{name}
                name = args.pop("name")
                extra = sorted(set(args) - {"arguments"})
                if extra:
                    raise E.ValidationError(f"unknown field(s) {extra}: send {{\"arguments\": {{...}}}}")
                result = await run_in_threadpool(T.call_tool, name, ctx, args.get("arguments") or {})
                return JSONResponse({"tool": name, "result": result})
            result = await run_in_threadpool(op.run, ctx, args)
            return JSONResponse(bound(jsonable(result), 4 * ctx.max_result_chars), status_code=op.status)
        except _TooLarge as exc:
            return _error(413, "payload_too_large", str(exc))
        except Exception as exc:
            return _from_exception(exc)

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
) -> Starlette:
    """The ASGI app (mount it in another server, or run it with ``serve``)."""
    ctx = T.ToolContext(memory=memory, agent_id=agent_id, root=root, sub=sub, limits=limits,
                        actor="api", agent_scoped=False)
    state = _State(ctx=ctx, token=token or None, max_body_bytes=max_body_bytes)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "service": "rlm-memory"})

    async def tools(request: Request) -> Response:
        return JSONResponse({"tools": T.anthropic_tools()})

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document(OPERATIONS, auth=state.token is not None))

    def guarded(fn: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def run(request: Request) -> Response:
            return _check_auth(state, request) or await fn(request)

        return run

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/openapi.json", guarded(openapi), methods=["GET"]),
        Route("/tools", guarded(tools), methods=["GET"]),
        Route("/tools/{name}", _endpoint(state, None), methods=["POST"]),
        *(Route(op.path, _endpoint(state, op), methods=[op.method]) for op in OPERATIONS),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        # Unknown paths and methods answer only to a client with the token: without it they
        # get 401/403 like every route, so the route table cannot be probed.
        denied = _check_auth(state, request)
        if denied is not None:
            return denied
        code = exc.status_code if isinstance(exc, HTTPException) else 500
        kind = {404: "not_found", 405: "method_not_allowed"}.get(code, "http_error")
        detail = exc.detail if isinstance(exc, HTTPException) else "internal server error"
        return _error(code, kind, f"{detail}: {request.method} {request.url.path}")

    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_bind(host: str, token: str | None) -> None:
    if not _is_loopback(host) and not token:
        raise E.ConfigError(
            f"refusing to serve memory on {host} without a token: set RLMEM_TOKEN (or pass "
            "token=... / --token) or bind to 127.0.0.1"
        )


def _config(app: Starlette, host: str, port: int) -> Any:
    try:
        import uvicorn
    except ModuleNotFoundError as exc:
        raise E.MissingExtraError("server", "serving the HTTP API", exc.name) from None

    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")


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

    _check_bind(host, token)
    app = create_app(memory, token=token, root=root, sub=sub, **options)
    uvicorn.Server(_config(app, host, port)).run()


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

        _check_bind(host, token)
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host, self.port = host, self._sock.getsockname()[1]
        self.app = create_app(memory, token=token, root=root, sub=sub, **options)
        self._server = uvicorn.Server(_config(self.app, host, self.port))
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
