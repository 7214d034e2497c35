"""The machinery the fake model servers share: a scripted JSON HTTP server in a thread.

Rules this module keeps:

* Binds only 127.0.0.1 on a free port; ``start()``/``stop()`` or ``with`` manage it, and
  ``stop()`` closes the socket and joins the serving thread.
* Answers are taken from the queue first (``add``), then from ``handler(body)``, then from
  ``default``; with none of them the request fails with a clear 400 naming the request number,
  so a test that under-scripts sees why instead of retrying.
* Every request is recorded (method, path, lower-cased headers, decoded JSON body, timings)
  before it is answered, also when it is rejected.
* ``delay_s`` (server-wide) and ``Reply.delay_s`` (one answer) hold the answer back, sleeping
  in the request's own thread, so parallel requests overlap; ``max_in_flight`` shows how many
  did at once.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

__all__ = ["FakeServerBase", "RecordedRequest", "Reply", "ReplyLike"]


@dataclass
class Reply:
    """One scripted answer.

    ``text`` makes a normal answer; ``status`` >= 400 makes an error with ``message`` (and
    ``error_type``); ``body`` sends that JSON as is. ``usage`` overrides the token counts,
    ``headers`` are added to the response (e.g. ``{"retry-after": "1"}``). ``tool_calls`` is a
    list of ``(name, arguments)`` pairs the model asks to run.
    """

    text: str = ""
    status: int = 200
    message: str = ""
    error_type: str | None = None
    stop_reason: str | None = None
    usage: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    delay_s: float = 0.0
    model: str | None = None
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


ReplyLike = str | Reply | dict[str, Any]


@dataclass
class RecordedRequest:
    """One request as the fake server received it."""

    number: int
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    started: float
    finished: float = 0.0
    status: int = 0

    @property
    def api_key(self) -> str | None:
        """The key sent as ``x-api-key`` or ``Authorization: Bearer`` (None if absent)."""
        if self.headers.get("x-api-key"):
            return self.headers["x-api-key"]
        auth = self.headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and auth[7:].strip():
            return auth[7:].strip()
        return None


class FakeServerBase:
    """A threaded JSON server answering scripted replies; subclasses shape the bodies."""

    paths: tuple[str, ...] = ()

    def __init__(
        self,
        replies: Iterable[ReplyLike] = (),
        *,
        handler: Callable[[Any], ReplyLike] | None = None,
        default: ReplyLike | None = None,
        delay_s: float = 0.0,
        require_key: bool = True,
        api_key: str | None = None,
    ) -> None:
        self._queue: deque[ReplyLike] = deque(replies)
        self.handler = handler
        self.default = default
        self.delay_s = delay_s
        self.require_key = require_key or api_key is not None
        self.expected_key = api_key
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    # --- scripting ----------------------------------------------------------------------------

    def add(self, *replies: ReplyLike) -> None:
        """Queue more answers (taken before ``handler`` and ``default``)."""
        with self._lock:
            self._queue.extend(replies)

    @property
    def remaining(self) -> int:
        return len(self._queue)

    @property
    def calls(self) -> int:
        return len(self.requests)

    def bodies(self) -> list[Any]:
        """The JSON bodies received so far, in arrival order."""
        with self._lock:
            return [r.body for r in self.requests]

    # --- lifecycle -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the fake server is not running: call start() or use `with`")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:40123``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", 0), _make_handler(self))
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        # Keep-alive connections would hold their handler threads (and sockets) open.
        with self._lock:
            conns, self._connections = list(self._connections), set()
        for conn in conns:
            with contextlib.suppress(OSError):  # the client may have closed it already
                conn.shutdown(socket.SHUT_RDWR)
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- answering (subclasses override the shapes) --------------------------------------------

    def validate(self, body: Any) -> str | None:
        """A reason to reject ``body`` with 400 the way the real API would, or None."""
        return None

    def success_body(self, body: Any, reply: Reply, number: int) -> dict[str, Any]:
        raise NotImplementedError

    def error_body(self, status: int, message: str, error_type: str | None) -> dict[str, Any]:
        raise NotImplementedError

    def _next_reply(self, body: Any, number: int) -> Reply:
        with self._lock:
            queued = self._queue.popleft() if self._queue else None
        if queued is None and self.handler is not None:
            try:
                queued = self.handler(body)
            except Exception:
                return Reply(
                    status=400,
                    message=f"fake server: handler raised on request #{number}:\n"
                    + traceback.format_exc(limit=5),
                )
        if queued is None:
            queued = self.default
        if queued is None:
            return Reply(
                status=400,
                message=f"fake server: no reply scripted for request #{number} "
                "(queue more replies, or give handler= or default=)",
            )
        if isinstance(queued, str):
            return Reply(text=queued)
        if isinstance(queued, dict):
            return Reply(body=queued)
        return queued

    def _answer(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, str], bytes]:
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        with self._lock:
            number = len(self.requests) + 1
            rec = RecordedRequest(number, method, path, headers, body, time.monotonic())
            self.requests.append(rec)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            status, out_headers, out = self._route(rec)
            out_headers.setdefault("request-id", f"req_fake_{number}")
            time.sleep(self.delay_s)
            return status, out_headers, json.dumps(out).encode()
        finally:
            with self._lock:
                self.in_flight -= 1
                rec.finished = time.monotonic()

    def _route(self, rec: RecordedRequest) -> tuple[int, dict[str, str], Any]:
        if rec.method != "POST" or rec.path.split("?")[0] not in self.paths:
            rec.status = 404
            return 404, {}, self.error_body(404, f"no route {rec.method} {rec.path}", "not_found_error")
        if self.require_key and (
            rec.api_key is None or (self.expected_key is not None and rec.api_key != self.expected_key)
        ):
            rec.status = 401
            return 401, {}, self.error_body(401, "invalid x-api-key", "authentication_error")
        problem = self.validate(rec.body)
        if problem is not None:
            rec.status = 400
            return 400, {}, self.error_body(400, problem, "invalid_request_error")
        reply = self._next_reply(rec.body, rec.number)
        if reply.delay_s:
            time.sleep(reply.delay_s)
        rec.status = reply.status
        if reply.body is not None:
            return reply.status, dict(reply.headers), reply.body
        if reply.status >= 400:
            return reply.status, dict(reply.headers), self.error_body(
                reply.status, reply.message or f"scripted error {reply.status}", reply.error_type
            )
        return 200, dict(reply.headers), self.success_body(rec.body, reply, rec.number)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up is part of the script, not a failure.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def _make_handler(server: FakeServerBase) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' connection pools expect

        def setup(self) -> None:
            super().setup()
            with server._lock:
                server._connections.add(self.connection)

        def finish(self) -> None:
            with server._lock:
                server._connections.discard(self.connection)
            super().finish()

        def _handle(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, out = server._answer(self.command, self.path, headers, raw)
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out)))
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(out)

        do_POST = _handle
        do_GET = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    return Handler
