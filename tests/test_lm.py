"""LM clients: the real anthropic SDK against the fake Messages API, and the offline fakes."""

from __future__ import annotations

import asyncio
import socket
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from fakes import (
    FakeAnthropicServer,
    Reply,
    bad_request,
    overloaded,
    rate_limited,
    server_error,
)

from memory.errors import (
    ConfigError,
    LMError,
    LMResponseError,
    LMTransientError,
    MissingAPIKeyError,
    ValidationError,
)
from rlm_core.lm import (
    LM,
    AnthropicLM,
    FunctionLM,
    LMRequest,
    LMResponse,
    ModelPrice,
    ScriptedLM,
    UnknownModelPriceWarning,
    Usage,
    count_tokens,
)

USER = [{"role": "user", "content": "hello"}]
# The SDK's own retries wait its own backoff (half a second, doubling): tests keep them few.
FAST: dict[str, Any] = {}


@pytest.fixture()
def server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer() as s:
        yield s


def claude(server: FakeAnthropicServer, model: str = "claude-haiku-4-5", **kw: Any) -> AnthropicLM:
    return AnthropicLM(model, api_key="test-key", base_url=server.url, **{**FAST, **kw})


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- AnthropicLM ----------------------------------------------------------------------------


def test_anthropic_text_usage_and_cost(server: FakeAnthropicServer) -> None:
    server.add(
        Reply(
            text="Paris.",
            usage={
                "input_tokens": 1000,
                "output_tokens": 200,
                "cache_creation_input_tokens": 4000,
                "cache_read_input_tokens": 10_000,
            },
        )
    )
    lm = claude(server)
    resp = lm.complete(USER, system="Answer briefly.")
    assert resp.text == "Paris."
    assert resp.usage == Usage(1000, 200, cache_read_tokens=10_000, cache_write_tokens=4000)
    assert resp.stop_reason == "end_turn"
    assert resp.model == "claude-haiku-4-5"
    # Haiku 4.5: $1 input, $5 output, $1.25 cache write, $0.10 cache read per million.
    expected = (1000 * 1.0 + 200 * 5.0 + 4000 * 1.25 + 10_000 * 0.10) / 1e6
    assert resp.cost_usd == pytest.approx(expected)
    assert isinstance(lm, LM)


def test_anthropic_sends_the_system_prompt_as_a_cached_block(server: FakeAnthropicServer) -> None:
    server.add("one", "two")
    lm = claude(server, max_tokens=123, temperature=0.2)
    first = lm.complete(USER, system="S" * 4000)
    second = lm.complete([*USER, {"role": "assistant", "content": "hi"}, {"role": "user", "content": "and?"}], system="S" * 4000)
    body = server.requests[0].body
    assert body["system"] == [{"type": "text", "text": "S" * 4000, "cache_control": {"type": "ephemeral"}}]
    assert body["max_tokens"] == 123 and body["temperature"] == 0.2
    assert body["messages"] == USER
    assert server.requests[0].api_key == "test-key"
    # The fake caches marked prefixes, so the second call reads what the first one wrote.
    assert first.usage.cache_write_tokens == 1000 and first.usage.cache_read_tokens == 0
    assert second.usage.cache_read_tokens == 1000 and second.usage.cache_write_tokens == 0


def test_anthropic_without_caching_and_with_system_messages(server: FakeAnthropicServer) -> None:
    server.add("a", "b", "c")
    claude(server, cache_system=False).complete(USER, system="plain")
    claude(server).complete([{"role": "system", "content": "extra"}, *USER], system="base")
    claude(server).complete(USER, max_tokens=7)
    b1, b2, b3 = server.bodies()
    assert b1["system"] == [{"type": "text", "text": "plain"}]
    assert b2["system"][0]["text"] == "base\n\nextra" and b2["messages"] == USER
    assert "system" not in b3 and "temperature" not in b3 and b3["max_tokens"] == 7


def test_anthropic_can_cache_the_whole_conversation(server: FakeAnthropicServer) -> None:
    server.add("ok")
    claude(server, cache_conversation=True).complete(USER)
    assert server.requests[0].body["cache_control"] == {"type": "ephemeral"}


def test_anthropic_stop_reason_is_passed_through(server: FakeAnthropicServer) -> None:
    server.add(Reply(text="trunc", stop_reason="max_tokens"))
    assert claude(server).complete(USER).stop_reason == "max_tokens"


def test_anthropic_unusable_body_is_a_response_error(server: FakeAnthropicServer) -> None:
    server.add({"unexpected": True})
    with pytest.raises(LMResponseError, match="not a Messages API message"):
        claude(server).complete(USER)
    assert server.calls == 1


@pytest.mark.parametrize("failure", [rate_limited(), overloaded(), server_error(500), server_error(503)])
def test_anthropic_retries_transient_errors_then_succeeds(server: FakeAnthropicServer, failure: Reply) -> None:
    server.add(failure, "finally")
    resp = claude(server, max_retries=3).complete(USER)
    assert resp.text == "finally"
    assert server.calls == 2


def test_anthropic_honours_retry_after(server: FakeAnthropicServer) -> None:
    server.add(rate_limited(retry_after=0.3), "ok")
    start = time.monotonic()
    claude(server).complete(USER)
    assert time.monotonic() - start >= 0.3
    assert server.calls == 2


def test_anthropic_exhausted_retries_raise_transient_error(server: FakeAnthropicServer) -> None:
    server.add(overloaded(), overloaded(), overloaded(), "never reached")
    with pytest.raises(LMTransientError, match=r"after 3 attempt\(s\).*529.*Overloaded"):
        claude(server, max_retries=2).complete(USER)
    assert server.calls == 3


def test_anthropic_client_error_is_not_retried_and_carries_the_message(server: FakeAnthropicServer) -> None:
    server.add(bad_request("prompt is too long: 250000 tokens > 200000 maximum"), "unused")
    with pytest.raises(LMResponseError, match=r"400.*prompt is too long"):
        claude(server).complete(USER)
    assert server.calls == 1


def test_anthropic_rejected_key_names_the_variable() -> None:
    with (
        FakeAnthropicServer(default="ok", api_key="the-right-key") as s,
        pytest.raises(LMResponseError, match=r"401.*ANTHROPIC_API_KEY"),
    ):
        claude(s).complete(USER)


def test_anthropic_connection_errors_are_transient() -> None:
    lm = AnthropicLM("claude-haiku-4-5", api_key="k", base_url=f"http://127.0.0.1:{_closed_port()}", max_retries=1, **FAST)
    with pytest.raises(LMTransientError, match=r"after 2 attempt.*server at http://127\.0\.0\.1:\d+ running"):
        lm.complete(USER)


def test_anthropic_timeouts_are_retried() -> None:
    with FakeAnthropicServer([Reply(text="late", delay_s=1.0), "on time"]) as s:
        resp = claude(s, timeout_s=0.3, max_retries=1).complete(USER)
    assert resp.text == "on time"


def test_missing_key_names_anthropic_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError, match="ANTHROPIC_API_KEY") as info:
        AnthropicLM("claude-haiku-4-5")
    assert info.value.variable == "ANTHROPIC_API_KEY"
    assert isinstance(info.value, LMError)


def test_key_from_the_environment(monkeypatch: pytest.MonkeyPatch, server: FakeAnthropicServer) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "from-env")
    server.add("ok")
    AnthropicLM("claude-haiku-4-5", base_url=server.url).complete(USER)
    assert server.requests[0].headers["authorization"] == "Bearer from-env"


def test_bad_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="max_tokens"):
        AnthropicLM("claude-haiku-4-5", api_key="k", max_tokens=0)
    with pytest.raises(ConfigError, match="max_retries"):
        AnthropicLM("claude-haiku-4-5", api_key="k", max_retries=-1)
    with pytest.raises(ValidationError, match="at least one user message"):
        AnthropicLM("claude-haiku-4-5", api_key="k").complete([])


def test_anthropic_price_override_and_unknown_model(server: FakeAnthropicServer) -> None:
    usage = {"input_tokens": 1_000_000, "output_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    server.add(Reply(text="a", usage=usage), Reply(text="b", usage=usage), Reply(text="c", usage=usage), Reply(text="d", usage=usage))
    assert claude(server, prices=ModelPrice(2.0, 4.0, 2.5, 0.2)).complete(USER).cost_usd == pytest.approx(2.0)
    assert claude(server, "my-model", prices={"my-model": {"input": 3.0, "output": 9.0}}).complete(USER).cost_usd == pytest.approx(3.0)
    lm = claude(server, "claude-unreleased-test-model")
    with pytest.warns(UnknownModelPriceWarning, match="claude-unreleased-test-model"):
        assert lm.complete(USER).cost_usd == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the warning comes once per model
        assert lm.complete(USER).cost_usd == 0.0


def test_anthropic_async(server: FakeAnthropicServer) -> None:
    server.add(overloaded(), "async answer")
    lm = claude(server)
    resp = asyncio.run(lm.acomplete(USER, system="sys"))
    assert resp.text == "async answer" and server.calls == 2
    assert server.requests[1].headers["x-stainless-async"].startswith("async")
    server.add("second loop")  # a new event loop gets its own connection pool

    async def then_close() -> str:
        text = (await lm.acomplete(USER)).text
        await lm.aclose()
        return text

    assert asyncio.run(then_close()) == "second loop"


def test_anthropic_async_exhausted_and_client_errors(server: FakeAnthropicServer) -> None:
    server.add(rate_limited(0), rate_limited(0), bad_request("nope"))
    lm = claude(server, max_retries=1)
    with pytest.raises(LMTransientError):
        asyncio.run(lm.acomplete(USER))
    with pytest.raises(LMResponseError, match="nope"):
        asyncio.run(lm.acomplete(USER))


def test_anthropic_parallel_async_calls_overlap() -> None:
    with FakeAnthropicServer(handler=lambda body: body["messages"][0]["content"].upper(), delay_s=0.25) as s:
        lm = claude(s)

        async def main() -> list[LMResponse]:
            return await asyncio.gather(*(lm.acomplete([{"role": "user", "content": f"q{i}"}]) for i in range(8)))

        start = time.monotonic()
        out = asyncio.run(main())
        elapsed = time.monotonic() - start
    assert [r.text for r in out] == [f"Q{i}" for i in range(8)]
    # Sequential calls would take 2 s; allow for a loaded machine but demand real overlap.
    assert s.max_in_flight >= 4
    assert elapsed >= 0.25


# --- ScriptedLM and FunctionLM ----------------------------------------------------------------


def test_scripted_lm_answers_in_order_and_records_requests() -> None:
    lm = ScriptedLM(["first", lambda req: f"echo {req.prompt}", LMResponse(text="exact", stop_reason="max_tokens")])
    assert lm.complete(USER, system="sys", max_tokens=5).text == "first"
    assert lm.complete([{"role": "user", "content": "ping"}]).text == "echo ping"
    assert lm.complete(USER).stop_reason == "max_tokens"
    assert lm.calls == 3 and lm.remaining == 0
    first = lm.requests[0]
    assert first == LMRequest(messages=USER, system="sys", max_tokens=5)
    assert isinstance(lm, LM)


def test_scripted_lm_copies_messages_and_counts_usage() -> None:
    messages = [{"role": "user", "content": "abcd" * 10}]
    lm = ScriptedLM(["12345678"], cost_per_call_usd=0.5)
    resp = lm.complete(messages)
    messages[0]["content"] = "changed"
    assert lm.requests[0].prompt == "abcd" * 10
    assert resp.usage == Usage(input_tokens=10, output_tokens=2) and resp.cost_usd == 0.5


def test_scripted_lm_default_and_running_out() -> None:
    lm = ScriptedLM(["only"], default="fallback")
    assert [lm.complete(USER).text for _ in range(3)] == ["only", "fallback", "fallback"]
    strict = ScriptedLM(["one"], name="root")
    strict.complete(USER)
    with pytest.raises(LMResponseError, match="root: the script ran out of replies after 1 calls"):
        strict.complete(USER)
    strict.add("two")
    assert strict.complete(USER).text == "two"


def test_scripted_lm_rejects_bad_replies_and_works_async() -> None:
    lm = ScriptedLM([42])  # type: ignore[list-item]
    with pytest.raises(LMResponseError, match="must be str or LMResponse"):
        lm.complete(USER)

    async def main() -> list[str]:
        parallel = ScriptedLM(default=lambda req: req.prompt)
        out = await asyncio.gather(*(parallel.acomplete([{"role": "user", "content": str(i)}]) for i in range(20)))
        assert parallel.calls == 20
        return [r.text for r in out]

    assert asyncio.run(main()) == [str(i) for i in range(20)]


def test_function_lm() -> None:
    lm = FunctionLM(lambda req: f"{req.system}:{len(req.messages)}", name="fn")
    assert lm.complete(USER, system="s").text == "s:1"
    assert asyncio.run(lm.acomplete(USER * 2)).text == "None:2"
    assert lm.calls == 2 and lm.name == "fn"
    assert isinstance(lm, LM)


def test_count_tokens() -> None:
    assert count_tokens("") == 0
    assert count_tokens("a") == 1
    assert count_tokens("x" * 4000) == 1000


def test_ready_made_sdk_clients_take_our_retry_count(
    server: FakeAnthropicServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import anthropic

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    server.add(overloaded(), "sync", overloaded(), "async")
    lm = AnthropicLM(
        "claude-haiku-4-5",
        client=anthropic.Anthropic(api_key="own", base_url=server.url),
        async_client=anthropic.AsyncAnthropic(api_key="own", base_url=server.url),
        max_retries=0,
    )
    with pytest.raises(LMTransientError):
        lm.complete(USER)
    assert server.calls == 1  # max_retries=0 holds over the SDK client's default of 2
    lm = AnthropicLM(
        "claude-haiku-4-5",
        client=anthropic.Anthropic(api_key="own", base_url=server.url, max_retries=0),
        async_client=anthropic.AsyncAnthropic(api_key="own", base_url=server.url, max_retries=0),
        max_retries=1,
    )
    assert lm.complete(USER).text == "sync"  # retried once although the client said 0
    assert asyncio.run(lm.acomplete(USER)).text == "async"
    assert {r.api_key for r in server.requests} == {"own"}
    only_async = AnthropicLM("claude-haiku-4-5", async_client=anthropic.AsyncAnthropic(api_key="own", base_url=server.url))
    with pytest.raises(ConfigError, match="acomplete"):
        only_async.complete(USER)


def test_sync_calls_from_threads_overlap() -> None:
    from concurrent.futures import ThreadPoolExecutor

    with FakeAnthropicServer(default="ok", delay_s=0.25) as s:
        lm = claude(s)
        start = time.monotonic()
        with ThreadPoolExecutor(6) as pool:
            texts = list(pool.map(lambda _: lm.complete(USER).text, range(6)))
        elapsed = time.monotonic() - start
        lm.close()
    assert texts == ["ok"] * 6
    assert s.max_in_flight >= 3 and elapsed >= 0.25


# --- tool use ------------------------------------------------------------------------------


def test_anthropic_tool_use_round_trip() -> None:
    from fakes import FakeAnthropicServer, Reply

    from rlm_core.lm import AnthropicLM, ToolCall

    tools = [
        {
            "name": "memory_search",
            "description": "Search memory.",
            "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
        }
    ]
    with FakeAnthropicServer(
        [Reply(tool_calls=[("memory_search", {"query": "launch"})]), "It is March 3rd."]
    ) as server:
        lm = AnthropicLM("claude-sonnet-4-5", api_key="k", base_url=server.url)
        first = lm.complete([{"role": "user", "content": "when?"}], tools=tools)
        assert first.stop_reason == "tool_use"
        assert [(c.name, c.arguments) for c in first.tool_calls] == [
            ("memory_search", {"query": "launch"})
        ]
        call = first.tool_calls[0]
        assert isinstance(call, ToolCall) and call.id.startswith("toolu_")
        messages = [
            {"role": "user", "content": "when?"},
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "March 3rd"}],
            },
        ]
        second = lm.complete(messages, tools=tools)
        assert second.text == "It is March 3rd." and not second.tool_calls
        sent = server.bodies()
        assert sent[0]["tools"][0]["name"] == "memory_search"
        assert sent[1]["messages"][1]["content"][0]["type"] == "tool_use"
        assert sent[1]["messages"][2]["content"][0]["tool_use_id"] == call.id


def test_openai_tool_use_round_trip() -> None:
    from fakes import FakeOpenAIServer, Reply

    from rlm_core.lm import OpenAICompatibleLM

    tools = [{"name": "note", "description": "Take a note.", "input_schema": {"type": "object"}}]
    with FakeOpenAIServer([Reply(tool_calls=[("note", {"text": "hi"})]), "done"]) as server:
        lm = OpenAICompatibleLM("local", base_url=server.base_url)
        first = lm.complete([{"role": "user", "content": "note hi"}], tools=tools)
        assert first.stop_reason == "tool_use"
        assert first.tool_calls[0].name == "note" and first.tool_calls[0].arguments == {"text": "hi"}
        call = first.tool_calls[0]
        lm.complete(
            [
                {"role": "user", "content": "note hi"},
                {"role": "assistant", "content": first.content},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "ok"}]},
            ],
            tools=tools,
        )
        body = server.bodies()[1]
        assert body["tools"][0]["function"]["name"] == "note"
        roles = [m["role"] for m in body["messages"]]
        assert roles == ["user", "assistant", "tool"]
        assert body["messages"][1]["tool_calls"][0]["function"]["name"] == "note"
        assert body["messages"][2]["tool_call_id"] == call.id


def test_scripted_lm_tool_calls_build_content() -> None:
    from rlm_core.lm import LMResponse, ScriptedLM, ToolCall

    lm = ScriptedLM([LMResponse(text="", tool_calls=[ToolCall("t1", "note", {"x": 1})])])
    r = lm.complete([{"role": "user", "content": "go"}], tools=[{"name": "note"}])
    assert r.stop_reason == "tool_use"
    assert r.content == [{"type": "tool_use", "id": "t1", "name": "note", "input": {"x": 1}}]
    assert lm.requests[0].tools == [{"name": "note"}]
    assert r.usage.total_tokens > 0


def test_a_client_on_base_lm_writes_only_its_call() -> None:
    # The request path (arguments, usage estimate, model name, pricing, async) is BaseLM's.
    from memory.errors import ConfigError, ValidationError
    from rlm_core.lm import BaseLM, LMResponse, ModelPrice, PriceTable, count_tokens

    class Echo(BaseLM):
        requires_message = True

        def __init__(self) -> None:
            super().__init__("echo-1", max_tokens=64, prices=PriceTable("echo-1", {"echo-1": ModelPrice(1e6, 1e6, 0.0, 0.0)}))
            self.seen: list[LMRequest] = []

        def _call(self, req: LMRequest) -> LMResponse:
            self.seen.append(req)
            return LMResponse(text=req.prompt.upper())

    lm = Echo()
    r = lm.complete([{"role": "user", "content": "abcdefgh"}], system="sys!", max_tokens=9)
    assert (r.text, r.model) == ("ABCDEFGH", "echo-1")
    assert r.usage == Usage(input_tokens=count_tokens("sys!abcdefgh"), output_tokens=2)
    assert r.cost_usd == pytest.approx(r.usage.input_tokens + r.usage.output_tokens)
    assert lm.seen[0].max_tokens == 9 and lm.seen[0].system == "sys!"
    assert asyncio.run(lm.acomplete([{"role": "user", "content": "x"}])).text == "X"  # in a thread
    with pytest.raises(ValidationError, match="nothing to send"):
        lm.complete([{"role": "system", "content": "only a system prompt"}])
    assert len(lm.seen) == 2  # refused before the call
    with pytest.raises(ConfigError, match="max_tokens must be at least 1"):
        BaseLM("x", max_tokens=0)
    with pytest.raises(ConfigError, match="max_retries must be 0 or more"):
        BaseLM("x", max_retries=-1)
    with Echo() as e:
        assert isinstance(e, Echo)
