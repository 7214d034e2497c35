"""OpenAICompatibleLM over httpx against the fake chat-completions server."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fakes import FakeOpenAIServer, Reply, bad_request, rate_limited, server_error

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


def test_openai_key_prices_and_finish_reasons(oai: FakeOpenAIServer) -> None:
    oai.add(
        Reply(text="cut", stop_reason="length", usage={"prompt_tokens": 1_000_000, "completion_tokens": 0}),
        Reply(text="odd", stop_reason="eos"),
    )
    lm = local(oai, "gpt-x", api_key="sk-test", prices={"gpt-x": {"input": 2.0, "output": 8.0}})
    first = lm.complete(USER)
    assert first.stop_reason == "max_tokens" and first.cost_usd == pytest.approx(2.0)
    assert lm.complete(USER).stop_reason == "eos"
    assert oai.requests[0].headers["authorization"] == "Bearer sk-test"


def test_openai_missing_usage_is_estimated(oai: FakeOpenAIServer) -> None:
    oai.add({"choices": [{"message": {"role": "assistant", "content": "12345678"}, "finish_reason": "stop"}]})
    resp = local(oai).complete([{"role": "user", "content": "abcdefgh"}])
    assert resp.usage == Usage(input_tokens=count_tokens("abcdefgh"), output_tokens=2)


def test_openai_retries_then_succeeds_or_gives_up(oai: FakeOpenAIServer) -> None:
    oai.add(rate_limited(0), server_error(502), "ok")
    assert local(oai, max_retries=2).complete(USER).text == "ok"
    assert oai.calls == 3
    oai.add(server_error(503), server_error(503))
    with pytest.raises(LMTransientError, match="503"):
        local(oai, max_retries=1).complete(USER)


def test_openai_client_errors_and_bad_bodies(oai: FakeOpenAIServer) -> None:
    oai.add(bad_request("model 'llama9' not found"), {"unexpected": True})
    with pytest.raises(LMResponseError, match=r"400.*llama9"):
        local(oai).complete(USER)
    with pytest.raises(LMResponseError, match="no choices"):
        local(oai).complete(USER)
    assert oai.calls == 2
    with pytest.raises(ConfigError, match="base_url"):
        OpenAICompatibleLM("m", base_url="127.0.0.1:11434")


def test_openai_unreachable_server_is_transient() -> None:
    lm = OpenAICompatibleLM("m", base_url=f"http://127.0.0.1:{_closed_port()}/v1", max_retries=1, **FAST)
    with pytest.raises(LMTransientError, match="cannot reach"):
        lm.complete(USER)


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
