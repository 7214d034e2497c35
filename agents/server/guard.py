"""The edge of the HTTP server: which connections and requests reach the app at all.

Rules this module keeps:

* **Host allow-list** (DNS rebinding): a request is served only when its ``Host`` names the
  server as the user knows it: the loopback names (``localhost``, ``127.0.0.1``, ``::1``), the
  name it was bound to, the names configured (``--allow-host``), or any IP literal (a page
  can only send ``Host: <ip>`` to that IP, so no domain it controls is involved). Anything
  else, or no ``Host`` at all, is refused with 421/400 before the app runs.
* **Origin** (CSRF): a request that carries ``Origin`` must come from the server's own
  origin (``scheme://Host``) or from an origin configured for CORS; ``Origin: null`` and
  ``Sec-Fetch-Site: cross-site`` from anywhere else are refused with 403.
* **Writes are JSON only**: a POST, and a PUT, PATCH or DELETE with a body, needs
  ``Content-Type: application/json`` (415 otherwise), which no page can send cross-site without a CORS preflight, and preflights
  are granted only to configured origins. Without configured origins no CORS header is ever
  sent.
* **Header limits**: one request's headers are at most ``max_header_bytes`` (h11's incomplete
  event limit: a 128 MB header is cut off at the limit with a 400), and they must arrive
  within ``header_timeout_s`` of the request's first byte (or of the connection opening):
  a slowloris connection is closed, it does not hold the server.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Iterable
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = [
    "DEFAULT_HEADER_TIMEOUT_S",
    "DEFAULT_MAX_HEADER_BYTES",
    "GuardedH11Protocol",
    "RequestGuard",
    "allowed_hosts",
]

DEFAULT_MAX_HEADER_BYTES = 64 * 1024
DEFAULT_HEADER_TIMEOUT_S = 10.0
_WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "localhost.localdomain")


def _strip_port(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8765
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def allowed_hosts(bound: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The host names a server bound to ``bound`` answers to (IP literals are always allowed)."""
    names = {*_LOOPBACK_NAMES, *(_strip_port(h) for h in extra if h.strip())}
    b = _strip_port(bound)
    if b and b not in ("0.0.0.0", "::"):
        names.add(b)
    return frozenset(names)


async def _refuse(send: Any, status: int, kind: str, message: str) -> None:
    body = json.dumps({"error": {"type": kind, "message": message}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """ASGI middleware: Host allow-list, Origin check, JSON-only writes, CORS only if configured."""

    def __init__(self, app: Any, *, hosts: frozenset[str], cors_origins: Iterable[str] = ()) -> None:
        self.hosts = hosts
        self.cors = frozenset(o.rstrip("/").lower() for o in cors_origins)
        if self.cors:
            from starlette.middleware.cors import CORSMiddleware

            app = CORSMiddleware(app, allow_origins=sorted(self.cors), allow_methods=["GET", "POST", "PUT"],
                                 allow_headers=["authorization", "content-type", "x-agent-id", "x-session-id"],
                                 max_age=600)
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[str, str] = {}
        for k, v in scope.get("headers") or ():
            name = k.decode("latin-1")
            if name in headers and name in ("host", "origin", "content-type"):
                await _refuse(send, 400, "invalid_request", f"more than one {name} header")
                return
            headers[name] = v.decode("latin-1")
        host = headers.get("host", "")
        name = _strip_port(host)
        if not name:
            await _refuse(send, 400, "invalid_request", "the request has no Host header")
            return
        if name not in self.hosts and not _is_ip(name):
            await _refuse(send, 421, "host_not_allowed",
                          f"this server does not answer to the host name {name!r}: add it with "
                          "`rlmem serve --allow-host NAME` if it is really this server")
            return
        origin = headers.get("origin")
        same = f"{scope.get('scheme', 'http')}://{host.strip().lower()}"
        cross_ok = origin is not None and origin.rstrip("/").lower() in self.cors
        if origin is not None and origin.rstrip("/").lower() != same and not cross_ok:
            await _refuse(send, 403, "origin_not_allowed",
                          f"requests from the web origin {origin!r} are refused (only {same} and the "
                          "origins given with --cors-origin)")
            return
        if headers.get("sec-fetch-site") == "cross-site" and not cross_ok:
            await _refuse(send, 403, "origin_not_allowed", "cross-site browser requests are refused")
            return
        method = scope.get("method", "GET")
        has_body = headers.get("content-length", "0").strip() not in ("", "0") or "transfer-encoding" in headers
        # POST is the one write a page can send cross-site without a preflight: always JSON.
        if method == "POST" or (method in _WRITE_METHODS and has_body):
            ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if ctype != "application/json":
                await _refuse(send, 415, "unsupported_media_type",
                              f"{method} needs 'Content-Type: application/json'"
                              + (f", got {ctype!r}" if ctype else ""))
                return
        await self.app(scope, receive, send)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on reading each request's headers."""

    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._served: object = None
        self._arm()

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _waiting_for_headers(self) -> bool:
        return self.cycle is None or (self.cycle is self._served and self.cycle.response_complete)

    def data_received(self, data: bytes) -> None:
        if self._waiting_for_headers():
            self._arm()
        super().data_received(data)
        if self.cycle is not None and self.cycle is not self._served:
            self._served = self.cycle  # this request's headers are complete
            self._disarm()

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._waiting_for_headers() and not self.transport.is_closing():
            self.logger.warning("closing a connection that sent no complete request headers in %.0f s",
                                self.header_timeout_s)
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
