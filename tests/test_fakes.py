"""The fake model servers behave like the APIs they stand in for (checked with plain httpx)."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
from fakes import (
    FakeAnthropicServer,
    FakeOpenAIServer,
    Reply,
    bad_request,
    fake_anthropic,
    fake_openai,
    last_user_text,
    overloaded,
    rate_limited,
)

MSG = {"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
CHAT = {"model": "llama3", "messages": [{"role": "user", "content": "hi"}]}
KEY = {"x-api-key": "test-key"}
# One client for the module: building one per request (TLS context and all) dominates runtime.
HTTP = httpx.Client()


def _post(server: FakeAnthropicServer, body: object, headers: dict[str, str] | None = None) -> httpx.Response:
    return HTTP.post(f"{server.url}/v1/messages", json=body, headers=KEY if headers is None else headers)


def test_anthropic_answers_in_the_shape_of_the_messages_api() -> None:
    with FakeAnthropicServer(["hello there"]) as server:
        resp = _post(server, MSG)
    assert resp.status_code == 200
    data = resp.json()
    assert data["type"] == "message" and data["role"] == "assistant"
    assert data["content"] == [{"type": "text", "text": "hello there"}]
    assert data["model"] == "claude-haiku-4-5"
    assert data["stop_reason"] == "end_turn"
    assert set(data["usage"]) == {
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    }
    assert data["usage"]["output_tokens"] == 3  # 11 characters at ~4 per token


@pytest.mark.parametrize(
    "headers, status",
    [
        ({}, 401),
        ({"authorization": "Bearer"}, 401),
        ({"x-api-key": "k"}, 200),
        ({"authorization": "Bearer k"}, 200),
    ],
)
def test_anthropic_requires_a_key_like_the_real_api(headers: dict[str, str], status: int) -> None:
    with FakeAnthropicServer(default="ok") as server:
        resp = _post(server, MSG, headers)
    assert resp.status_code == status
    if status == 401:
        assert resp.json()["error"]["type"] == "authentication_error"


def test_anthropic_checks_a_specific_key_when_given() -> None:
    with FakeAnthropicServer(default="ok", api_key="right") as server:
        assert _post(server, MSG, {"x-api-key": "wrong"}).status_code == 401
        assert _post(server, MSG, {"authorization": "Bearer right"}).status_code == 200


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({**MSG, "model": ""}, "model"),
        ({k: v for k, v in MSG.items() if k != "max_tokens"}, "max_tokens"),
        ({**MSG, "messages": []}, "messages"),
        ({**MSG, "messages": [{"role": "system", "content": "x"}]}, "role"),
        ([1, 2], "JSON object"),
    ],
)
def test_anthropic_rejects_malformed_bodies_with_400(body: object, fragment: str) -> None:
    with FakeAnthropicServer(default="ok") as server:
        resp = _post(server, body)
        assert resp.status_code == 400
        assert fragment in resp.json()["error"]["message"]
        assert server.requests[0].status == 400  # recorded even when rejected


def test_scripted_errors_use_the_error_envelope_and_headers() -> None:
    with FakeAnthropicServer([rate_limited(2), overloaded(), bad_request("too long")]) as server:
        r1, r2, r3 = (_post(server, MSG) for _ in range(3))
    assert r1.status_code == 429 and r1.headers["retry-after"] == "2"
    assert r1.json() == {"type": "error", "error": {"type": "rate_limit_error", "message": "rate limited"}}
    assert r2.status_code == 529 and r2.json()["error"]["type"] == "overloaded_error"
    assert r3.status_code == 400 and r3.json()["error"]["message"] == "too long"


def test_queue_then_handler_then_default_then_a_clear_error() -> None:
    with FakeAnthropicServer(["from queue"], handler=lambda body: None, default="from default") as server:
        texts = [_post(server, MSG).json()["content"][0]["text"] for _ in range(2)]
        assert texts == ["from queue", "from default"]
    with FakeAnthropicServer(handler=lambda body: "echo: " + last_user_text(body)) as server:
        assert _post(server, MSG).json()["content"][0]["text"] == "echo: hi"
    with FakeAnthropicServer(["only one"]) as server:
        _post(server, MSG)
        resp = _post(server, MSG)
        assert resp.status_code == 400
        assert "no reply scripted for request #2" in resp.json()["error"]["message"]


def test_a_failing_handler_is_reported_not_retried() -> None:
    def boom(body: object) -> str:
        raise KeyError("missing")

    with FakeAnthropicServer(handler=boom) as server:
        resp = _post(server, MSG)
    assert resp.status_code == 400
    assert "handler raised on request #1" in resp.json()["error"]["message"]
    assert "KeyError" in resp.json()["error"]["message"]


def test_reply_overrides_usage_stop_reason_model_and_body() -> None:
    script = [
        Reply(text="x", usage={"input_tokens": 7, "cache_read_input_tokens": 5}, stop_reason="max_tokens", model="m2"),
        {"raw": True},
    ]
    with FakeAnthropicServer(script) as server:
        first = _post(server, MSG).json()
        second = _post(server, MSG).json()
    assert first["usage"]["input_tokens"] == 7 and first["usage"]["cache_read_input_tokens"] == 5
    assert first["stop_reason"] == "max_tokens" and first["model"] == "m2"
    assert second == {"raw": True}


def test_prompt_cache_is_simulated_write_then_read() -> None:
    system = [{"type": "text", "text": "s" * 400, "cache_control": {"type": "ephemeral"}}]
    with FakeAnthropicServer(default="ok") as server:
        u1 = _post(server, {**MSG, "system": system}).json()["usage"]
        u2 = _post(server, {**MSG, "system": system}).json()["usage"]
        u3 = _post(server, {**MSG, "system": "plain"}).json()["usage"]
    assert (u1["cache_creation_input_tokens"], u1["cache_read_input_tokens"]) == (100, 0)
    assert (u2["cache_creation_input_tokens"], u2["cache_read_input_tokens"]) == (0, 100)
    assert (u3["cache_creation_input_tokens"], u3["cache_read_input_tokens"]) == (0, 0)
    assert u3["input_tokens"] == 2  # "plain" + "hi": 7 characters


def test_records_headers_and_bodies_in_order() -> None:
    with FakeAnthropicServer(default="ok") as server:
        _post(server, MSG, {"x-api-key": "k", "X-Custom": "v"})
        _post(server, {**MSG, "max_tokens": 3})
        rec = server.requests[0]
        assert rec.method == "POST" and rec.path == "/v1/messages"
        assert rec.headers["x-custom"] == "v" and rec.api_key == "k"
        assert [b["max_tokens"] for b in server.bodies()] == [10, 3]
        assert server.calls == 2 and rec.finished >= rec.started


def test_unknown_route_is_404() -> None:
    with FakeAnthropicServer(default="ok") as server:
        resp = HTTP.get(f"{server.url}/v1/models", headers=KEY)
    assert resp.status_code == 404


def test_delay_lets_parallel_requests_overlap() -> None:
    with FakeAnthropicServer(default="ok", delay_s=0.2) as server:
        threads = [threading.Thread(target=_post, args=(server, MSG)) for _ in range(6)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - start
    assert server.max_in_flight == 6
    assert elapsed >= 0.2


def test_per_reply_delay() -> None:
    with FakeAnthropicServer([Reply(text="slow", delay_s=0.15), "fast"]) as server:
        t0 = time.monotonic()
        _post(server, MSG)
        t1 = time.monotonic()
        _post(server, MSG)
        t2 = time.monotonic()
    assert t1 - t0 >= 0.15 and t2 - t1 < 0.15


def test_stop_frees_the_port() -> None:
    server = FakeAnthropicServer(default="ok").start()
    port = server.port
    assert _post(server, MSG).status_code == 200
    server.stop()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url


def test_openai_answers_in_the_chat_completions_shape() -> None:
    with FakeOpenAIServer(["hi!", Reply(text="cut", stop_reason="length")]) as server:
        data = HTTP.post(f"{server.base_url}/chat/completions", json=CHAT).json()
        cut = HTTP.post(f"{server.base_url}/chat/completions", json=CHAT).json()
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["message"] == {"role": "assistant", "content": "hi!"}
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["usage"] == {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    assert cut["choices"][0]["finish_reason"] == "length"


def test_openai_needs_no_key_unless_asked_and_uses_its_error_envelope() -> None:
    with FakeOpenAIServer([Reply(status=503, message="busy")]) as server:
        resp = HTTP.post(f"{server.base_url}/chat/completions", json=CHAT)
    assert resp.status_code == 503
    assert resp.json() == {"error": {"message": "busy", "type": "server_error", "code": 503}}
    with FakeOpenAIServer(default="ok", require_key=True) as server:
        assert HTTP.post(f"{server.base_url}/chat/completions", json=CHAT).status_code == 401
        ok = HTTP.post(
            f"{server.base_url}/chat/completions", json=CHAT, headers={"authorization": "Bearer k"}
        )
        assert ok.status_code == 200
    with FakeOpenAIServer(default="ok") as server:
        bad = HTTP.post(f"{server.base_url}/chat/completions", json={"model": "m", "messages": []})
        assert bad.status_code == 400 and "messages" in bad.json()["error"]["message"]


def test_fixtures_give_running_servers(fake_anthropic: FakeAnthropicServer, fake_openai: FakeOpenAIServer) -> None:
    fake_anthropic.add("a")
    fake_openai.add("b")
    assert _post(fake_anthropic, MSG).json()["content"][0]["text"] == "a"
    chat = HTTP.post(f"{fake_openai.base_url}/chat/completions", json=CHAT).json()
    assert chat["choices"][0]["message"]["content"] == "b"


# The fixtures are imported above so this module works before a conftest shares them.
__all__ = ["fake_anthropic", "fake_openai"]
