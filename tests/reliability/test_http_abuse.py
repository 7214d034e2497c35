"""The HTTP API under abuse, through a real client and raw sockets against the real server.

Every refused request gets the right status and a JSON error, and the store is unchanged
afterwards (rows, blocks, integrity). No request, however malformed, gets a 500.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agents.server.http import OPERATIONS, ServerThread
from memory.manager import MemoryManager
from memory.vectors.embeddings import HashEmbedder
from rlm_core.lm import ScriptedLM

TOKEN = "abuse-test-token-0123456789"
LIMIT = 20_000


@pytest.fixture(scope="module")
def mem(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemoryManager]:
    m = MemoryManager.open(
        tmp_path_factory.mktemp("http") / "store", embedder=HashEmbedder(), background_embed=False
    )
    m.recall.append("My favourite colour is teal.", session_id="s1")
    m.archival.insert("The deploy key rotates every 90 days.", tags=("ops",))
    m.blocks("default").create("human", "Name: Ada", limit=100)
    m.blocks("default").create("rules", "Be kind.", read_only=True)
    yield m
    m.close()


@pytest.fixture(scope="module")
def server(mem: MemoryManager) -> Iterator[ServerThread]:
    with ServerThread(
        mem, token=TOKEN, root=ScriptedLM(default="FINAL(x)"), max_body_bytes=LIMIT
    ) as s:
        yield s


@pytest.fixture()
def anon(server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as c:
        yield c


@pytest.fixture()
def api(server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.url,
        timeout=30,
        trust_env=False,
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as c:
        yield c


def state(mem: MemoryManager) -> dict[str, Any]:
    with mem.db.read() as conn:
        recall = conn.exec_driver_sql(
            "SELECT id, agent_id, session_id, content FROM recall_messages ORDER BY id"
        ).all()
        chunks = conn.exec_driver_sql("SELECT id, text FROM archival_chunks ORDER BY id").all()
    blocks = {a: {b.label: b.value for b in mem.blocks(a).list()} for a in ("default", "..", "x")}
    return {
        "recall": [tuple(r) for r in recall],
        "archival": [tuple(r) for r in chunks],
        "blocks": blocks,
        "integrity": mem.db.integrity_check(),
    }


@pytest.fixture()
def unchanged(mem: MemoryManager) -> Iterator[None]:
    before = state(mem)
    yield
    assert state(mem) == before


def error(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, (
        resp.request.method,
        resp.request.url,
        resp.status_code,
        resp.text,
    )
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}, body
    return body["error"]  # type: ignore[no-any-return]


def _path(op_path: str) -> str:
    return op_path.replace("{message_id}", "1").replace("{label}", "human")


ROUTES = [(op.method, _path(op.path)) for op in OPERATIONS] + [
    ("GET", "/tools"), ("GET", "/openapi.json"), ("POST", "/tools/memory_search"),
]  # fmt: skip
BODY = {"query": "teal", "pattern": "teal", "content": "pwned", "text": "pwned", "value": "pwned",
        "old": "Ada", "new": "Eve", "question": "q", "arguments": {"query": "x"}}  # fmt: skip


@pytest.mark.parametrize("method,path", ROUTES)
def test_no_token_is_401_and_changes_nothing(
    anon: httpx.Client, unchanged: None, method: str, path: str
) -> None:
    resp = anon.request(method, path, json=BODY if method in ("POST", "PUT") else None)
    assert error(resp, 401)["type"] == "unauthorized"
    assert resp.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "header",
    [
        "Bearer wrong",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        f"bearer {TOKEN.upper()}",
        f"Bearer {TOKEN} {TOKEN}",
    ],
)
def test_wrong_token_is_403_and_changes_nothing(
    anon: httpx.Client, unchanged: None, header: str
) -> None:
    for method, path in [
        ("POST", "/messages"),
        ("PUT", "/blocks/human"),
        ("POST", "/archival"),
        ("GET", "/stats"),
    ]:
        resp = anon.request(
            method, path, json=BODY if method != "GET" else None, headers={"Authorization": header}
        )
        assert error(resp, 403)["type"] == "forbidden"


@pytest.mark.parametrize("header", ["", "Bearer", f"Basic {TOKEN}", f"Token {TOKEN}", TOKEN])
def test_malformed_authorization_is_401(anon: httpx.Client, unchanged: None, header: str) -> None:
    error(anon.post("/messages", json=BODY, headers={"Authorization": header}), 401)


def test_token_elsewhere_than_the_header_is_not_accepted(
    anon: httpx.Client, unchanged: None
) -> None:
    error(anon.post("/messages", params={"token": TOKEN, "access_token": TOKEN}, json=BODY), 401)
    error(anon.post("/messages", json={**BODY, "token": TOKEN}), 401)
    error(anon.get("/stats", cookies={"token": TOKEN}), 401)


def test_health_needs_no_token_and_reveals_nothing(anon: httpx.Client) -> None:
    assert anon.get("/health").json() == {"status": "ok", "service": "rlm-memory"}


def test_oversized_bodies_are_413(api: httpx.Client, unchanged: None) -> None:
    big = {"content": "x" * (LIMIT + 10)}
    assert error(api.post("/messages", json=big), 413)["type"] == "payload_too_large"
    assert error(api.put("/blocks/human", json={"value": "y" * LIMIT * 3}), 413)
    # Streamed without a Content-Length: cut off while reading.
    chunks = iter([b'{"content": "', b"z" * LIMIT, b"z" * LIMIT, b'"}'])
    error(api.post("/messages", content=chunks, headers={"Content-Type": "application/json"}), 413)


def raw(server: ServerThread, request: bytes) -> tuple[int, bytes]:
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            part = s.recv(65536)
            if not part:
                break
            data += part
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, data


def test_lying_content_length_is_refused(server: ServerThread, unchanged: None) -> None:
    auth = f"Authorization: Bearer {TOKEN}\r\n".encode()
    status, _ = raw(
        server,
        b"POST /messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + auth
        + b"Content-Type: application/json\r\nContent-Length: 99999999999\r\n\r\n{}",
    )
    assert status == 413
    status, _ = raw(
        server,
        b"POST /messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + auth
        + b"Content-Type: application/json\r\nContent-Length: -5\r\n\r\n{}",
    )
    assert status == 400


@pytest.mark.parametrize(
    "body",
    [b"{", b"not json", b"[1, 2]", b'"a string"', b"null", b"\xff\xfe\x00garbage", b'{"content": "x"',
     b'{"content": "\\ud800"}',
     pytest.param(b"[" * 5000 + b"]" * 5000, id="deep-list"),
     pytest.param(b'{"a":' * 3000 + b"1" + b"}" * 3000, id="deep-object")],
    ids=["open", "text", "array", "string", "null", "bytes", "unclosed", "surrogate", "deep-array", "deep-object"],
)  # fmt: skip
def test_malformed_json_is_400(api: httpx.Client, unchanged: None, body: bytes) -> None:
    resp = api.post("/messages", content=body, headers={"Content-Type": "application/json"})
    assert error(resp, 400)["type"] == "invalid_request"


@pytest.mark.parametrize(
    "body",
    [{"content": 5}, {"content": None}, {"content": ["a"]}, {"content": {"$ne": 1}}, {}, {"content": "x", "role": "root"},
     {"content": "x", "agent_id": "a", "id": 1}, {"content": "x", "session_id": 7}, {"content": "x", "extra": 1}],
)  # fmt: skip
def test_wrong_fields_are_400(api: httpx.Client, unchanged: None, body: dict[str, Any]) -> None:
    error(api.post("/messages", json=body), 400)


@pytest.mark.parametrize("k", ["five", -1, 0, 10**30, 1.5, True, None, [], "NaN"])
def test_bad_numbers_are_400(api: httpx.Client, unchanged: None, k: Any) -> None:
    error(api.post("/search", json={"query": "teal", "k": k}), 400)


@pytest.mark.parametrize(
    "path,status",
    [("/blocks/..%2f..%2fetc%2fpasswd", 404), ("/blocks/%2e%2e", 404), ("/blocks/%00", 404),
     ("/blocks/human%2f..%2frules", 404), ("/messages/-1", 404), ("/messages/0", 404),
     ("/messages/99999999999999999999999999", 400), ("/messages/1%20OR%201=1", 400), ("/messages/abc", 400),
     ("/messages/1.0", 400), ("/../../etc/passwd", 404), ("/%2e%2e/%2e%2e/etc/passwd", 404), ("//stats/..", 404),
     ("/STATS", 404), ("/blocks/" + "a" * 5000, 404)],
)  # fmt: skip
def test_path_tricks(api: httpx.Client, unchanged: None, path: str, status: int) -> None:
    resp = api.get(path)
    assert resp.status_code in (status, 404, 400), (path, resp.status_code, resp.text)
    error(resp, resp.status_code)


@pytest.mark.parametrize("label", ["..%2f..%2fx", "%2e%2e", "a%00b", "rules"])
def test_block_writes_through_path_tricks_change_nothing(
    api: httpx.Client, unchanged: None, label: str
) -> None:
    resp = api.put(f"/blocks/{label}", json={"value": "pwned"})
    assert resp.status_code in (400, 404, 409), (label, resp.status_code, resp.text)
    error(resp, resp.status_code)


def test_agent_header_tricks_do_not_reach_other_agents(api: httpx.Client, unchanged: None) -> None:
    for agent in ["..", "../default", "x' OR '1'='1", "%2e%2e"]:
        resp = api.get("/blocks/human", headers={"X-Agent-Id": agent})
        assert resp.status_code in (400, 404), (agent, resp.status_code, resp.text)
        assert "Ada" not in resp.text


@pytest.mark.parametrize(
    "method,path",
    [("GET", "/search"), ("DELETE", "/blocks/human"), ("PUT", "/messages"), ("PATCH", "/blocks/human"),
     ("DELETE", "/messages/1"), ("POST", "/stats"), ("GET", "/messages"), ("DELETE", "/archival")],
)  # fmt: skip
def test_wrong_methods_are_405(api: httpx.Client, unchanged: None, method: str, path: str) -> None:
    # (a POST without a JSON type is refused with 415 first: see test_served_store.py)
    resp = api.request(method, path, headers={"Content-Type": "application/json"})
    assert error(resp, 405)["type"] == "method_not_allowed"


def test_unknown_tool_and_hostile_tool_arguments(api: httpx.Client, unchanged: None) -> None:
    for name in ("__import__", "nope", "..%2fhealth", "memory_search.__globals__"):
        resp = api.post(f"/tools/{name}", json={"arguments": {}})
        assert resp.status_code in (400, 404), (name, resp.status_code, resp.text)
        error(resp, resp.status_code)
    error(api.post("/tools/memory_search", json={"arguments": {"query": "x", "k": "all"}}), 400)
    error(api.post("/tools/memory_grep", json={"arguments": {"pattern": "(", "k": 1}}), 400)


def test_catastrophic_grep_is_a_clean_error_and_the_server_keeps_serving(
    api: httpx.Client, mem: MemoryManager
) -> None:
    before = state(mem)
    resp = api.post("/grep", json={"pattern": "(a|aa)+$", "limit": 5})
    assert resp.status_code in (200, 400), resp.text
    assert api.get("/stats").status_code == 200
    assert state(mem) == before


def test_the_store_is_intact_after_all_of_it(mem: MemoryManager, tmp_path: Path) -> None:
    assert mem.db.integrity_check() == "ok"
    assert mem.recall.count() == 1 and mem.archival.count() == 1
    assert {b.label: b.value for b in mem.blocks("default").list()} == {
        "human": "Name: Ada",
        "rules": "Be kind.",
    }


@pytest.mark.parametrize("method,path", [("GET", "/no/such/route"), ("DELETE", "/messages"), ("GET", "/../etc/passwd")])
def test_unknown_routes_and_methods_need_the_token_first(
    anon: httpx.Client, api: httpx.Client, unchanged: None, method: str, path: str
) -> None:
    assert error(anon.request(method, path), 401)["type"] == "unauthorized"
    assert api.request(method, path).status_code in (404, 405)
