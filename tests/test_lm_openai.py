"""OpenAICompatibleLM: the real HTTP path against the fake chat-completions server on
loopback, and retries, errors and injected clients through ``httpx.MockTransport``."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fakes import FakeOpenAIServer, Reply, rate_limited

from memory.errors import ConfigError, LMResponseError, LMTransientError
from rlm_core.lm import LM, LMResponse, OpenAICompatibleLM, Usage, count_tokens

USER = [{"role": "user", "content": "hello"}]
# Retries in tests wait milliseconds, not the production half second and up.
FAST: dict[str, Any] = {"backoff_base_s": 0.001, "backoff_max_s": 0.01}


@pytest.fixture()
def oai() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as s:
        yield s


def local(server: FakeOpenAIServer, model: str = "llama3", **kw: Any) -> OpenAICompatibleLM:
    return OpenAICompatibleLM(model, base_url=server.base_url, **{**FAST, **kw})


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_openai_text_usage_and_request(oai: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    oai.add(Reply(text="hi", usage={"prompt_tokens": 50, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 20}}))
    lm = local(oai, temperature=0.0, max_tokens=64)
    resp = lm.complete(USER, system="be nice")
    assert resp.text == "hi" and resp.stop_reason == "end_turn" and resp.model == "llama3"
    assert resp.usage == Usage(input_tokens=30, output_tokens=5, cache_read_tokens=20)
    assert resp.cost_usd == 0.0
    body = oai.requests[0].body
    assert body["messages"] == [{"role": "system", "content": "be nice"}, *USER]
    assert body["max_tokens"] == 64 and body["temperature"] == 0.0 and body["stream"] is False
    assert "authorization" not in oai.requests[0].headers
    assert isinstance(lm, LM)


class Scripted:
    """An ``httpx.MockTransport`` handler answering with queued (status, body, headers)."""

    def __init__(self, *replies: tuple[int, Any, dict[str, str]] | str) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0) if self.replies else "default"
        if isinstance(reply, str):
            return httpx.Response(200, json=_completion(reply))
        status, body, headers = reply
        return httpx.Response(status, json=body, headers=headers)

    def body(self, n: int) -> Any:
        return json.loads(self.requests[n].content)


def _completion(text: str, finish: str = "stop", usage: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": finish}]}
    if usage is not None:
        out["usage"] = usage
    return out


def _error(status: int, message: str = "boom", headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
    return status, {"error": {"message": message}}, headers or {}


def mocked(handler: Scripted, model: str = "llama3", **kw: Any) -> OpenAICompatibleLM:
    return OpenAICompatibleLM(model, base_url="http://model.test/v1", transport=httpx.MockTransport(handler),
                              **{**FAST, **kw})


def test_openai_key_prices_and_finish_reasons() -> None:
    h = Scripted((200, _completion("cut", "length", {"prompt_tokens": 1_000_000, "completion_tokens": 0}), {}),
                 (200, _completion("odd", "eos"), {}))
    lm = mocked(h, "gpt-x", api_key="sk-test", prices={"gpt-x": {"input": 2.0, "output": 8.0}})
    first = lm.complete(USER)
    assert first.stop_reason == "max_tokens" and first.cost_usd == pytest.approx(2.0)
    assert lm.complete(USER).stop_reason == "eos"
    assert h.requests[0].headers["authorization"] == "Bearer sk-test"
    assert str(h.requests[0].url) == "http://model.test/v1/chat/completions"


def test_openai_missing_usage_is_estimated() -> None:
    resp = mocked(Scripted((200, _completion("12345678"), {}))).complete([{"role": "user", "content": "abcdefgh"}])
    assert resp.usage == Usage(input_tokens=count_tokens("abcdefgh"), output_tokens=2)


def test_openai_retries_then_succeeds_or_gives_up() -> None:
    h = Scripted(_error(429, headers={"retry-after": "0"}), _error(502), "ok")
    assert mocked(h, max_retries=2).complete(USER).text == "ok"
    assert len(h.requests) == 3
    h = Scripted(_error(503), _error(503))
    with pytest.raises(LMTransientError, match=r"after 2 attempt\(s\).*503.*overloaded or failing"):
        mocked(h, max_retries=1).complete(USER)
    assert len(h.requests) == 2


def test_openai_honours_retry_after() -> None:
    h = Scripted(_error(429, headers={"retry-after-ms": "200"}), "ok")
    start = time.monotonic()
    assert mocked(h, backoff_base_s=0.001, backoff_max_s=5.0).complete(USER).text == "ok"
    assert time.monotonic() - start >= 0.2


def test_openai_client_errors_and_bad_bodies() -> None:
    h = Scripted(_error(400, "model 'llama9' not found"), (200, {"unexpected": True}, {}))
    with pytest.raises(LMResponseError, match=r"400.*llama9"):
        mocked(h).complete(USER)
    with pytest.raises(LMResponseError, match="no choices"):
        mocked(h).complete(USER)
    assert len(h.requests) == 2  # neither was retried
    with pytest.raises(ConfigError, match="base_url"):
        OpenAICompatibleLM("m", base_url="127.0.0.1:11434")


def test_openai_async_through_the_same_transport() -> None:
    h = Scripted(_error(500), "async ok")
    lm = mocked(h, max_retries=1)
    assert asyncio.run(lm.acomplete(USER)).text == "async ok"
    assert h.body(1)["messages"] == USER and len(h.requests) == 2


def test_openai_injected_clients_are_used() -> None:
    h = Scripted("sync", "async")
    with httpx.Client(transport=httpx.MockTransport(h)) as c:
        lm = OpenAICompatibleLM("m", base_url="http://model.test/v1", http_client=c, api_key="k",
                                async_http_client=httpx.AsyncClient(transport=httpx.MockTransport(h)))
        assert lm.complete(USER).text == "sync"
        assert asyncio.run(lm.acomplete(USER)).text == "async"
    assert all(r.headers["authorization"] == "Bearer k" for r in h.requests)


def test_openai_refused_connection_says_to_start_the_server() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    lm = OpenAICompatibleLM("m", base_url=url, max_retries=4, backoff_base_s=1.0, backoff_max_s=5.0)
    start = time.monotonic()
    with pytest.raises(LMTransientError, match=f"is the server at {url} running"):
        lm.complete(USER)
    assert time.monotonic() - start < 3  # not five backed-off retries of a server that is not there
    with pytest.raises(LMTransientError, match="running"):
        asyncio.run(lm.acomplete(USER))


def test_openai_broken_transfers_are_retried() -> None:
    calls = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(200, json=_completion("second try"))

    lm = OpenAICompatibleLM("m", base_url="http://model.test/v1", transport=httpx.MockTransport(flaky), **FAST)
    assert lm.complete(USER).text == "second try" and calls["n"] == 2


def test_openai_parallel_async_calls_overlap() -> None:
    with FakeOpenAIServer([rate_limited(0)], default="pong", delay_s=0.25) as s:
        lm = local(s)

        async def main() -> list[LMResponse]:
            return await asyncio.gather(*(lm.acomplete(USER) for _ in range(8)))

        start = time.monotonic()
        out = asyncio.run(main())
        elapsed = time.monotonic() - start
    assert [r.text for r in out] == ["pong"] * 8
    assert s.calls == 9 and s.max_in_flight >= 4
    assert elapsed >= 0.25
