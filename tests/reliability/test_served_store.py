"""A real ``rlmem serve`` probed from outside: DNS rebinding, CSRF, header floods, slowloris,
and the scoped-token matrix (agent A's token never reaches agent B's memory).

The store is made by ``rlmem init`` and the tokens by ``rlmem token create``, in child
processes; requests are real sockets (httpx, or raw ``socket`` where a client library would
refuse to send what a hostile client sends).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from memory.manager import MemoryManager
from memory.vectors.embeddings import HashEmbedder
from reliability.served import Served, cli, cli_json, rss_kib

BOB_SECRET = "bob-deploy-key-7f3a"
BOB_BLOCK = "bob-block-secret-91c2"
ALICE_TEXT = "alice likes teal"


def fill_served_store(path: Path) -> None:
    """A new store holding two agents' messages and blocks and one archival chunk."""
    assert cli("init", str(path)).returncode == 0
    with MemoryManager.open(path, embedder=HashEmbedder(), background_embed=False, embed_recall=False) as m:
        m.recall.append(f"{ALICE_TEXT}; the deploy key is private", agent_id="alice", session_id="a1")
        m.recall.append(f"the deploy key is {BOB_SECRET}", agent_id="bob", session_id="b1")
        m.recall.append("bob's second message", agent_id="bob", session_id="b1")
        m.blocks("alice").create("notes", "alice notes", limit=500)
        m.blocks("bob").create("notes", BOB_BLOCK, limit=500)
        m.archival.insert("The shared handbook says hello.", tags=("docs",))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("served") / "store"
    fill_served_store(path)
    return path


@pytest.fixture(scope="module")
def tokens(store: Path) -> dict[str, str]:
    out = {"admin": cli_json("token", "show", "--store", str(store))["token"]}
    out["alice"] = cli_json("token", "create", "--agent", "alice", "--store", str(store))["token"]
    out["alice_ro"] = cli_json("token", "create", "--agent", "alice", "--read-only", "--store", str(store))["token"]
    out["bob"] = cli_json("token", "create", "--agent", "bob", "--store", str(store))["token"]
    return out


@pytest.fixture(scope="module")
def server(store: Path, tokens: dict[str, str]) -> Iterator[Served]:
    with Served(store, "--header-timeout", "2") as s:
        yield s


def client(server: Served, token: str | None, **headers: str) -> httpx.Client:
    h = dict(headers)
    if token:
        h["Authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=server.url, headers=h, timeout=30, trust_env=False)


def count(server: Served, tokens: dict[str, str]) -> int:
    with client(server, tokens["admin"]) as c:
        return int(c.get("/stats").json()["messages"])


# --- DNS rebinding and CSRF ---------------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "localhost.evil.example",
                                  "127.0.0.1.nip.io:{port}", "LOCALHOST.attacker.test"])
def test_a_foreign_host_name_is_refused_even_with_the_token(server: Served, tokens: dict[str, str], host: str) -> None:
    with client(server, tokens["admin"], Host=host.format(port=server.port)) as c:
        r = c.post("/grep", json={"pattern": "deploy key"})
    assert r.status_code == 421, r.text
    assert BOB_SECRET not in r.text and r.json()["error"]["type"] == "host_not_allowed"


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}", "localhost"])
def test_loopback_names_are_served(server: Served, tokens: dict[str, str], host: str) -> None:
    with client(server, tokens["admin"], Host=host.format(port=server.port)) as c:
        assert c.post("/grep", json={"pattern": "deploy key"}).status_code == 200


@pytest.mark.parametrize("ctype,body", [
    ("text/plain", b'{"content": "csrf"}'),
    ("application/x-www-form-urlencoded", b"content=csrf"),
    ("multipart/form-data; boundary=x", b'--x\r\nContent-Disposition: form-data; name="content"\r\n\r\ncsrf\r\n--x--\r\n'),
])
@pytest.mark.parametrize("who", ["browser", "with_token"])
def test_cross_site_posts_store_nothing(server: Served, tokens: dict[str, str], ctype: str, body: bytes, who: str) -> None:
    before = count(server, tokens)
    with client(server, tokens["admin"] if who == "with_token" else None) as c:
        cross = c.post("/messages", content=body, headers={"Content-Type": ctype, "Origin": "http://evil.example"})
        assert cross.status_code == 403, cross.text
        fetch_meta = c.post("/messages", content=body, headers={"Content-Type": ctype, "Sec-Fetch-Site": "cross-site"})
        assert fetch_meta.status_code == 403
        null = c.post("/messages", content=body, headers={"Content-Type": ctype, "Origin": "null"})
        assert null.status_code == 403
        same_origin = c.post("/messages", content=body, headers={"Content-Type": ctype, "Origin": server.url})
        assert same_origin.status_code == 415  # a JSON write only
    assert count(server, tokens) == before


def test_no_cors_unless_configured(server: Served, tokens: dict[str, str]) -> None:
    with client(server, None) as c:
        pre = c.options("/messages", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
                                              "Access-Control-Request-Headers": "authorization,content-type"})
    assert pre.status_code == 403 and not any(k.lower().startswith("access-control-") for k in pre.headers)
    with client(server, tokens["admin"]) as c:
        r = c.get("/stats", headers={"Origin": server.url})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_every_route_needs_the_token_on_loopback(server: Served) -> None:
    with client(server, None) as c:
        assert c.post("/grep", json={"pattern": "deploy"}).status_code == 401
        assert c.get("/blocks").status_code == 401
        assert c.get("/no/such/route").status_code == 401
        assert c.get("/health").status_code == 200


# --- header limits ------------------------------------------------------------------------


def test_a_128_mb_header_is_cut_off_and_others_are_served(server: Served, tokens: dict[str, str]) -> None:
    rss0 = rss_kib(server.proc.pid)
    sent = 0
    reply = b""
    latencies: list[float] = []
    stop = threading.Event()

    def others() -> None:
        with client(server, tokens["admin"]) as c:
            while not stop.is_set():
                t = time.perf_counter()
                assert c.get("/health").status_code == 200
                latencies.append(time.perf_counter() - t)
                time.sleep(0.05)

    t = threading.Thread(target=others)
    t.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
            chunk = b"a" * (1 << 20)
            try:
                while sent < 128 << 20:
                    s.sendall(chunk)
                    sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
            try:
                reply = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                reply = b""
    finally:
        stop.set()
        t.join(30)
    with client(server, tokens["admin"]) as c:
        t1 = time.perf_counter()
        assert c.get("/stats").status_code == 200
        latencies.append(time.perf_counter() - t1)
    assert sent < 32 << 20, f"the server read {sent >> 20} MB of one header"
    assert reply == b"" or reply.startswith(b"HTTP/1.1 400")
    assert rss_kib(server.proc.pid) - rss0 < 64 * 1024
    assert latencies and max(latencies) < 5.0


def test_slowloris_is_closed_after_the_header_timeout(server: Served, tokens: dict[str, str]) -> None:
    t0 = time.monotonic()
    closed_after = None
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for i in range(60):  # one header line every 0.25 s for up to 15 s
            try:
                s.sendall(f"X-Slow-{i}: x\r\n".encode())
                s.settimeout(0.25)
                if s.recv(1) == b"":
                    closed_after = time.monotonic() - t0
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed_after = time.monotonic() - t0
                break
    assert closed_after is not None and closed_after < 8, closed_after
    with client(server, tokens["admin"]) as c:  # the server is fine afterwards
        assert c.get("/stats").status_code == 200
    silent = socket.create_connection(("127.0.0.1", server.port), timeout=10)  # says nothing at all
    try:
        silent.settimeout(8)
        assert silent.recv(1) == b""
    finally:
        silent.close()


# --- the scoped-token matrix --------------------------------------------------------------

READS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/search", {"query": "deploy key", "mode": "text", "k": 10}),
    ("POST", "/search", {"query": "deploy key", "mode": "text", "tier": "recall"}),
    ("POST", "/grep", {"pattern": "deploy key"}),
    ("POST", "/grep", {"pattern": "secret", "tier": "all"}),
    ("GET", "/messages/2", None),
    ("GET", "/messages/3", None),
    ("GET", "/sessions", None),
    ("GET", "/blocks", None),
    ("GET", "/blocks/notes", None),
    ("GET", "/stats", None),
    ("POST", "/tools/memory_search", {"arguments": {"query": "deploy key"}}),
    ("POST", "/tools/conversation_search", {"arguments": {"query": "deploy key"}}),
    ("POST", "/tools/memory_grep", {"arguments": {"pattern": "deploy"}}),
    ("POST", "/tools/memory_peek", {"arguments": {"message_id": 2}}),
]

WRITES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/messages", {"content": "written by alice"}),
    ("PUT", "/blocks/notes", {"value": "overwritten"}),
    ("POST", "/blocks/notes/append", {"text": "appended"}),
    ("POST", "/blocks/notes/replace", {"old": "notes", "new": "x"}),
    ("POST", "/blocks/notes/insert", {"text": "inserted"}),
    ("POST", "/blocks/notes/rethink", {"new_value": "rethought"}),
    ("POST", "/archival", {"text": "alice adds a shared passage"}),
    ("POST", "/tools/core_memory_append", {"arguments": {"label": "notes", "text": "via tool"}}),
    ("POST", "/tools/archival_insert", {"arguments": {"text": "via tool"}}),
    ("POST", "/ask", {"question": "what is bob's deploy key?"}),
]


def _bob_state(server: Served, tokens: dict[str, str]) -> tuple[Any, ...]:
    with client(server, tokens["bob"]) as c:
        return (c.get("/blocks/notes").json()["value"], c.get("/stats").json()["messages"])


@pytest.mark.parametrize("who", ["alice", "alice_ro"])
@pytest.mark.parametrize("header", [None, "bob", "alice,bob", "Bob"])
@pytest.mark.parametrize("method,path,body", READS)
def test_alice_reads_nothing_of_bob(server: Served, tokens: dict[str, str], who: str, header: str | None,
                                    method: str, path: str, body: dict[str, Any] | None) -> None:
    headers = {"X-Agent-Id": header} if header else {}
    with client(server, tokens[who], **headers) as c:
        r = c.request(method, path, json=body)
        by_query = c.request(method, path, json=body, params={"agent_id": "bob"})
    for resp in (r, by_query):
        assert BOB_SECRET not in resp.text and BOB_BLOCK not in resp.text and "second message" not in resp.text
        assert resp.status_code in (200, 403, 404), resp.text
    if header is None:
        assert r.status_code in (200, 404), r.text
        assert by_query.status_code == 403
    else:
        assert r.status_code == 403


@pytest.mark.parametrize("header", [None, "bob"])
@pytest.mark.parametrize("method,path,body", WRITES)
def test_alice_writes_nothing_of_bob_and_read_only_writes_nothing(
    server: Served, tokens: dict[str, str], header: str | None, method: str, path: str, body: dict[str, Any]
) -> None:
    bob = _bob_state(server, tokens)
    total = count(server, tokens)
    headers = {"X-Agent-Id": header} if header else {}
    with client(server, tokens["alice_ro"], **headers) as ro:
        assert ro.request(method, path, json=body).status_code == 403
    assert count(server, tokens) == total
    with client(server, tokens["alice"], **headers) as rw:
        r = rw.request(method, path, json=body)
    if header == "bob":
        assert r.status_code == 403, r.text
    else:
        assert r.status_code in (200, 201, 400, 409, 503), r.text  # 400: text already replaced; 503: no model for /ask
    assert _bob_state(server, tokens) == bob


def test_bob_still_reads_his_own_and_a_revoked_token_stops(server: Served, store: Path, tokens: dict[str, str]) -> None:
    with client(server, tokens["bob"]) as c:
        assert BOB_SECRET in c.post("/grep", json={"pattern": "deploy key"}).text
        assert c.get("/blocks/notes").json()["value"] == BOB_BLOCK
        assert "shared handbook" in c.post("/search", json={"query": "handbook", "mode": "text"}).text  # archival is shared
    listed = cli_json("token", "list", "--store", str(store))
    bob_id = next(t["id"] for t in listed if t["agents"] == ["bob"])
    assert all("token" not in t for t in listed)  # secrets are never listed
    assert cli("token", "revoke", bob_id, "--store", str(store)).returncode == 0
    with client(server, tokens["bob"]) as c:
        assert c.post("/grep", json={"pattern": "deploy key"}).status_code == 403
