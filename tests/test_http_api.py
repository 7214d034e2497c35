"""The HTTP API through a real client: httpx against the real server on a free loopback port.

Real stores (SQLite + embedded Chroma in a temporary directory) with the deterministic
``HashEmbedder``; the root model of ``/ask`` is a ``ScriptedLM``.
"""

from __future__ import annotations

import errno
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agents.server.auth import TOKEN_FILE, store_admin_token
from agents.server.http import ServerThread, create_app
from memory.errors import NotFoundError, ValidationError
from memory.manager import MemoryManager
from memory.vectors.embeddings import HashEmbedder
from rlm_core.lm import ScriptedLM

TOKEN = "s3cret-token"


@pytest.fixture()
def mem(tmp_path: Path) -> Iterator[MemoryManager]:
    m = MemoryManager.open(tmp_path / "store", embedder=HashEmbedder())
    m.recall.append("My favourite colour is teal.", role="user", session_id="s1")
    m.recall.append("Noted, teal it is.", role="assistant", session_id="s1")
    m.recall.append("Agent two likes amber.", role="user", agent_id="two", session_id="t1")
    m.archival.insert("The deploy key rotates every 90 days.", tags=("ops",))
    m.blocks("default").create("human", "Name: Ada", limit=100)
    m.blocks("default").create("rules", "Be kind.", read_only=True)
    yield m
    m.close()


@pytest.fixture()
def root() -> ScriptedLM:
    return ScriptedLM(default="FINAL(teal)")


@pytest.fixture()
def api(mem: MemoryManager, root: ScriptedLM) -> Iterator[httpx.Client]:
    with ServerThread(mem, token=TOKEN, root=root, max_body_bytes=20_000) as server, httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60, trust_env=False
    ) as client:
        yield client


def err(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}
    return body["error"]  # type: ignore[no-any-return]


def test_health_and_openapi(api: httpx.Client) -> None:
    assert httpx.get(str(api.base_url).rstrip("/") + "/health", trust_env=False).json()["status"] == "ok"  # no token needed
    doc = api.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert {"/search", "/grep", "/messages/{message_id}", "/messages", "/sessions", "/archival",
            "/blocks/{label}", "/blocks/{label}/append", "/ask", "/tools/{name}"} <= set(doc["paths"])
    search = doc["paths"]["/search"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert search["required"] == ["query"] and search["properties"]["mode"]["enum"] == ["hybrid", "text", "vector"]
    peek = doc["paths"]["/messages/{message_id}"]["get"]["parameters"]
    assert {(p["name"], p["in"]) for p in peek} >= {("message_id", "path"), ("before", "query")}
    assert doc["security"] == [{"bearer": []}]


def test_search_grep_peek_sessions(api: httpx.Client) -> None:
    hits = api.post("/search", json={"query": "favourite colour", "k": 5}).json()["results"]
    assert hits[0]["text"] == "My favourite colour is teal."
    only = api.post("/search", json={"query": "deploy key", "tier": "archival", "mode": "text"}).json()["results"]
    assert [h["tier"] for h in only] == ["archival"]
    assert len(api.post("/grep", json={"pattern": "likes amber"}).json()["matches"]) == 1  # store-wide
    scoped = api.post("/grep", json={"pattern": "likes amber"}, headers={"X-Agent-Id": "default"})
    assert scoped.json()["matches"] == []
    peek = api.get("/messages/1", params={"before": 0, "after": 1}).json()["messages"]
    assert [m["id"] for m in peek] == [1, 2]
    sessions = api.get("/sessions").json()["sessions"]  # store-wide, like the searches
    assert [s["session_id"] for s in sessions] == ["s1", "t1"]
    mine = api.get("/sessions", headers={"X-Agent-Id": "default"}).json()["sessions"]
    assert [s["session_id"] for s in mine] == ["s1"]


def test_append_message_and_archival_insert(api: httpx.Client, mem: MemoryManager) -> None:
    r = api.post("/messages", json={"content": "Remember the milk.", "role": "user", "session_id": "s9",
                                    "metadata": {"via": "http"}})
    assert r.status_code == 201
    msg = mem.recall.get(r.json()["id"])
    assert (msg.content, msg.session_id, msg.metadata) == ("Remember the milk.", "s9", {"via": "http"})
    r = api.post("/archival", json={"text": "Wifi password is on the fridge.", "tags": ["home"], "source": "note"})
    assert r.status_code == 201 and mem.archival.get(r.json()["id"]).source == "note"


def test_message_retries_with_an_idempotency_key_store_once(api: httpx.Client, mem: MemoryManager) -> None:
    before = mem.recall.count()
    body = {"content": "Deploy on Friday.", "session_id": "s1", "key": "req-7f3a"}
    first = api.post("/messages", json=body)
    again = api.post("/messages", json=body)  # a client retrying after a lost reply
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert mem.recall.count() == before + 1
    assert api.post("/messages", json={**body, "key": "x" * 201}).status_code == 400
    assert mem.recall.count() == before + 1


def test_block_read_and_edits(api: httpx.Client, mem: MemoryManager) -> None:
    assert [b["label"] for b in api.get("/blocks").json()["blocks"]] == ["human", "rules"]
    assert api.get("/blocks/human").json()["value"] == "Name: Ada"
    assert api.post("/blocks/human/append", json={"text": "Likes teal"}).json()["value"] == "Name: Ada\nLikes teal"
    assert api.post("/blocks/human/replace", json={"old": "teal", "new": "amber"}).json()["value"].endswith("amber")
    assert api.post("/blocks/human/insert", json={"text": "#1", "line": 0}).json()["value"].startswith("#1\n")
    assert api.post("/blocks/human/rethink", json={"new_value": "Name: Ada"}).json()["value"] == "Name: Ada"
    created = api.put("/blocks/project", json={"value": "rlm-memory", "limit": 50, "description": "current work"})
    assert created.json()["limit"] == 50
    assert api.put("/blocks/project", json={"value": "v2"}).json()["value"] == "v2"
    assert mem.blocks("default").get("project").value == "v2"
    other = api.put("/blocks/human", json={"value": "Bob"}, headers={"X-Agent-Id": "two"})
    assert other.status_code == 200 and mem.blocks("two").get("human").value == "Bob"
    assert err(api.post("/blocks/human/append", json={"text": "x" * 200}), 409)["type"] == "block_edit_refused"
    assert "read-only" in err(api.post("/blocks/rules/rethink", json={"new_value": "x"}), 409)["message"]
    assert "existing blocks" in err(api.get("/blocks/nope"), 404)["message"]
    assert mem.blocks("default").get("human").value == "Name: Ada"


def test_ask_and_tools_endpoint(api: httpx.Client, root: ScriptedLM) -> None:
    assert api.post("/ask", json={"question": "What colour do I like?"}).json()["answer"] == "teal"
    assert "What colour do I like?" in root.requests[0].prompt
    names = [t["name"] for t in api.get("/tools").json()["tools"]]
    assert "memory_search" in names and "deep_recall" in names
    out = api.post("/tools/memory_search", json={"arguments": {"query": "teal", "k": 1}}).json()
    assert out["tool"] == "memory_search" and len(out["result"]["results"]) == 1
    assert "available tools" in err(api.post("/tools/nope", json={}), 400)["message"]
    assert "valid arguments" in err(api.post("/tools/memory_search", json={"arguments": {"x": 1}}), 400)["message"]
    assert "send" in err(api.post("/tools/memory_search", json={"query": "teal"}), 400)["message"]


def test_errors_are_json_with_the_right_status(api: httpx.Client) -> None:
    assert err(api.post("/search", content=b"{not json", headers={"Content-Type": "application/json"}), 400)["type"] == "invalid_request"
    assert "JSON object" in err(api.post("/search", json=[1, 2]), 400)["message"]
    assert "missing required argument 'query'" in err(api.post("/search", json={}), 400)["message"]
    assert "must be an integer" in err(api.get("/messages/abc"), 400)["message"]
    assert err(api.get("/messages/999"), 404)["type"] == "not_found"
    assert err(api.post("/grep", json={"pattern": "("}), 400)["message"].startswith("invalid regular expression")
    assert err(api.get("/no/such/route"), 404)["type"] == "not_found"
    assert err(api.delete("/blocks/human"), 405)["type"] == "method_not_allowed"
    big = {"text": "x" * 30_000}
    assert err(api.post("/archival", json=big), 413)["type"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        yield b'{"text": "'
        for _ in range(40):
            yield b"y" * 1000
        yield b'"}'

    assert err(api.post("/archival", content=chunks(), headers={"Content-Type": "application/json"}), 413)["type"] == "payload_too_large"


def test_auth(api: httpx.Client) -> None:
    url = str(api.base_url)
    with httpx.Client(base_url=url, trust_env=False) as anon:
        e = err(anon.post("/search", json={"query": "teal"}), 401)
        assert "Bearer" in e["message"]
        assert err(anon.get("/openapi.json"), 401)["type"] == "unauthorized"
        wrong = anon.post("/search", json={"query": "teal"}, headers={"Authorization": "Bearer nope"})
        assert err(wrong, 403)["type"] == "forbidden"


def test_internal_errors_do_not_leak(mem: MemoryManager, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*a: Any, **k: Any) -> Any:
        raise RuntimeError("password=hunter2 in /secret/path")

    monkeypatch.setattr(mem, "stats", boom)
    token = store_admin_token(mem.config.dir)
    with ServerThread(mem) as server, httpx.Client(base_url=server.url, trust_env=False,
                                                   headers={"Authorization": f"Bearer {token}"}) as client:
        e = err(client.get("/stats"), 500)
        assert "hunter2" not in e["message"] and "/secret" not in e["message"]
        assert err(client.post("/ask", json={"question": "q"}), 503)["type"] == "not_configured"


def test_a_token_always_also_on_loopback(mem: MemoryManager) -> None:
    token_file = mem.config.dir / TOKEN_FILE
    assert not token_file.exists()
    with ServerThread(mem) as server, httpx.Client(base_url=server.url, trust_env=False) as client:
        assert err(client.get("/sessions"), 401)["type"] == "unauthorized"  # loopback is no exception
        token = token_file.read_text().strip()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert client.get("/sessions", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert err(client.get("/sessions", headers={"Authorization": f"Bearer {token[:-1]}x"}), 403)
    assert store_admin_token(mem.config.dir) == token  # made once, then read
    create_app(mem)  # the app alone binds nothing


def test_strict_json_bodies_store_nothing(api: httpx.Client, mem: MemoryManager) -> None:
    before = mem.recall.count()
    J = {"Content-Type": "application/json"}
    for raw in (b'{"content": "x", "metadata": {"v": NaN}}', b'{"content": "x", "metadata": {"v": Infinity}}',
                b'{"content": "x", "metadata": {"v": -Infinity}}', b'{"content": "x", "content": "y"}',
                b'{"content": "x", "metadata": {"v": 1' + b"0" * 30 + b'}}',
                b'{"content": "x", "metadata": {"v": 1' + b"0" * 5000 + b'}}', b'{"content": "x", "metadata": {"v": 1e999}}'):
        assert err(api.post("/messages", content=raw, headers=J), 400)["type"] == "invalid_request", raw[:60]
    assert "out of range" in err(api.put("/blocks/human", content=b'{"value": "v", "limit": 1267650600228229401496703205376}', headers=J), 400)["message"]
    assert mem.recall.count() == before
    assert "out of range" in err(api.get("/messages/" + "9" * 30), 400)["message"]
    assert err(api.get("/messages/1", params={"before": "9" * 30}), 400)


def test_disk_full_is_507_naming_the_disk(api: httpx.Client, mem: MemoryManager, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*a: Any, **k: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mem.recall, "append", full)
    e = err(api.post("/messages", json={"content": "hello"}), 507)
    assert str(mem.config.dir) in e["message"] and "full" in e["message"]


def test_scoped_tokens_and_ask_stay_inside_their_agent(mem: MemoryManager) -> None:
    from agents.server.auth import TokenStore

    mem.recall.append("Agent two's deploy key is amber-42.", role="user", agent_id="two", session_id="t1")
    tokens = TokenStore(mem.db, None)
    _, mine = tokens.create(["default"])
    _, reader = tokens.create(["default"], write=False)
    code = ("hits = grep('amber', tier='all')\nfound = search('deploy key amber', k=20)\n"
            "try:\n    other = peek(3)\nexcept Exception as e:\n    other = repr(e)\n"
            "FINAL(repr(list(hits)) + repr(list(found)) + repr(other) + str(len(recall)))")
    root = ScriptedLM(default=f"```repl\n{code}\n```")
    with ServerThread(mem, token=TOKEN, root=root) as server, httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {mine}"}, timeout=120, trust_env=False
    ) as c:
        answer = c.post("/ask", json={"question": "what is agent two's key?"})
        assert answer.status_code == 200, answer.text
        assert "amber" not in answer.json()["answer"] and answer.json()["answer"].endswith("2")  # its 2 messages
        assert err(c.post("/ask", json={"question": "q"}, headers={"X-Agent-Id": "two"}), 403)
        assert c.post("/grep", json={"pattern": "amber", "tier": "all"}).json()["matches"] == []
        assert err(c.get("/messages/3"), 404)["type"] == "not_found"  # another agent's id is unknown here
        ro = {"Authorization": f"Bearer {reader}"}
        assert "read-only" in err(c.post("/ask", json={"question": "q"}, headers=ro), 403)["message"]
        assert c.post("/grep", json={"pattern": "teal"}, headers=ro).json()["matches"]
        assert c.post("/grep", json={"pattern": "teal"}, headers={"Authorization": "Bearer rlm_abc_def"}).status_code == 403


def test_token_lookup_refuses_near_misses(mem: MemoryManager) -> None:
    from agents.server.auth import TokenStore

    tokens = TokenStore(mem.db, "admin-secret")
    info, secret = tokens.create(["a", "a", " b "], label="x")
    assert info.agents == ("a", "b")
    assert tokens.check(secret).agents == ("a", "b")  # type: ignore[union-attr]
    assert tokens.check("admin-secret").admin  # type: ignore[union-attr]
    for near in (secret[:-1], secret + "x", secret.upper(), f"rlm_{info.id}_", "admin-secre", "", "\ud800"):
        assert tokens.check(near) is None
    tokens.revoke(info.id)
    assert tokens.check(secret) is None and tokens.list() == [] and tokens.list(include_revoked=True)[0].revoked_at
    with pytest.raises(NotFoundError):
        tokens.revoke("nope")
    with pytest.raises(ValidationError):
        tokens.create([" "])
    with mem.db.read() as conn:  # only a hash is kept
        assert secret not in repr(conn.exec_driver_sql("SELECT * FROM rlmem_tokens").all())


@pytest.mark.postgres
def test_scoped_tokens_on_postgres(pg_url: str, tmp_path: Path) -> None:
    from agents.server.auth import TokenStore

    with MemoryManager.open(tmp_path / "pg", embedder=HashEmbedder(), database_url=pg_url,
                            background_embed=False) as m:
        m.recall.append("ada's note", agent_id="ada", session_id="a")
        m.recall.append("bob's secret", agent_id="bob", session_id="b")
        info, secret = TokenStore(m.db, None).create(["ada"])
        with ServerThread(m) as server, httpx.Client(base_url=server.url, trust_env=False,
                                                     headers={"Authorization": f"Bearer {secret}"}) as c:
            assert c.post("/grep", json={"pattern": "secret|note"}).json()["matches"][0]["snippet"] == "ada's note"
            assert c.post("/grep", json={"pattern": "x"}, headers={"X-Agent-Id": "bob"}).status_code == 403
        TokenStore(m.db, None).revoke(info.id)
        assert TokenStore(m.db, None).check(secret) is None


def test_cors_only_for_configured_origins(mem: MemoryManager) -> None:
    web = "http://localhost:3000"
    with ServerThread(mem, token=TOKEN, cors_origins=[web]) as server, httpx.Client(
        base_url=server.url, trust_env=False, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as c:
        pre = c.options("/search", headers={"Origin": web, "Access-Control-Request-Method": "POST",
                                            "Access-Control-Request-Headers": "authorization,content-type"})
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == web
        r = c.post("/search", json={"query": "teal", "mode": "text"}, headers={"Origin": web})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == web
        other = c.post("/search", json={"query": "teal"}, headers={"Origin": "http://localhost:4000"})
        assert other.status_code == 403 and "access-control-allow-origin" not in other.headers
        assert c.post("/search", json={"query": "teal", "mode": "text"}, headers={"Origin": server.url}).status_code == 200
