"""The MCP server over stdio, driven by the MCP SDK's own client (``python -m agents.server.mcp``).

The server is a real subprocess on a real store (SQLite + embedded Chroma, the packaged MiniLM
model), exactly as Claude Code or Claude Desktop would start it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

from memory.manager import MemoryManager

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mcp") / "store"
    mem = MemoryManager.open(path, background_embed=False)
    mem.recall.append("My favourite colour is teal.", role="user", session_id="s1")
    mem.recall.append("The standup moved to 10:00 on Mondays.", role="assistant", session_id="s1")
    mem.archival.insert("The deploy key rotates every 90 days.", tags=("ops",))
    mem.blocks("default").create("human", "Name: Ada", limit=100, description="facts about the user")
    mem.close()  # left queued: the server embeds them, so the model loads in one process only
    return path


def _params(*args: str) -> StdioServerParameters:
    env = {k: v for k, v in os.environ.items() if k.startswith(("RLMEM_", "HF_", "TRANSFORMERS_"))}
    env |= {"ANONYMIZED_TELEMETRY": "False", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "PYTHONPATH": str(REPO)}
    return StdioServerParameters(command=sys.executable, args=["-m", "agents.server.mcp", *args], env=env, cwd=str(REPO))


async def _session(params: StdioServerParameters, scenario: Any) -> Any:
    with open(os.devnull, "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            return await scenario(session)


def test_tools_resources_and_errors_over_stdio(store: Path) -> None:
    seen: dict[str, Any] = {}

    async def scenario(s: ClientSession) -> None:
        tools = {t.name: t for t in (await s.list_tools()).tools}
        seen["tools"] = tools
        seen["search"] = await s.call_tool("memory_search", {"query": "favourite colour", "k": 2, "tier": "recall"})
        seen["grep"] = await s.call_tool("memory_grep", {"pattern": r"\d\d:\d\d"})
        seen["append"] = await s.call_tool("core_memory_append", {"label": "human", "text": "Likes teal"})
        seen["resources"] = (await s.list_resources()).resources
        seen["templates"] = (await s.list_resource_templates()).resource_templates
        seen["block"] = await s.read_resource("memory://blocks/human")
        seen["bad_args"] = await s.call_tool("memory_search", {"query": "x", "k": 5000})
        seen["nan"] = await s.call_tool("memory_search", {"query": "x", "k": float("nan")})
        seen["log"] = await s.call_tool("memory_log", {"content": "Logged over MCP.", "session_id": "m1"})
        seen["fresh"] = await s.call_tool("core_memory_append", {"label": "project", "text": "rlm-memory"})
        seen["missing"] = await s.call_tool("memory_peek", {"message_id": 9999})
        with pytest.raises(MCPError, match="unknown tool 'deep_recall'"):
            await s.call_tool("deep_recall", {"question": "q"})  # no root model configured
        with pytest.raises(MCPError, match="no block 'nope'"):
            await s.read_resource("memory://blocks/nope")

    anyio.run(_session, _params("--store", str(store)), scenario)

    tools = seen["tools"]
    assert {"memory_search", "conversation_search", "memory_grep", "memory_peek", "archival_insert",
            "core_memory_append", "memory_rethink"} <= set(tools)
    assert "deep_recall" not in tools
    assert tools["memory_search"].input_schema["required"] == ["query"]
    search = seen["search"]
    assert not search.is_error
    assert json.loads(search.content[0].text)["results"][0]["text"] == "My favourite colour is teal."
    assert search.structured_content["results"][0]["tier"] == "recall"
    assert json.loads(seen["grep"].content[0].text)["matches"][0]["match"] == "10:00"
    assert seen["append"].structured_content["value"] == "Name: Ada\nLikes teal"
    assert [(r.uri, r.name, r.description) for r in seen["resources"]] == [
        ("memory://blocks/human", "human", "facts about the user")
    ]
    assert seen["templates"][0].uri_template == "memory://blocks/{label}"
    assert seen["block"].contents[0].text == "Name: Ada\nLikes teal"
    assert seen["bad_args"].is_error and "'k' must be less than or equal to 1000" in seen["bad_args"].content[0].text
    assert seen["nan"].is_error and "ValidationError" in seen["nan"].content[0].text
    assert seen["log"].structured_content["session_id"] == "m1"
    assert seen["fresh"].structured_content["value"] == "rlm-memory"  # created on first write
    assert seen["missing"].is_error and seen["missing"].content[0].text.startswith("NotFoundError")

    mem = MemoryManager.open(store, background_embed=False)
    try:
        history = mem.blocks("default").history("human")
        assert any(e.actor == "mcp" for e in history)  # the edit is attributed and durable
        logged = mem.recall.session("m1")
        assert [m.content for m in logged] == ["Logged over MCP."]
    finally:
        mem.close()


def test_agent_scope_limits_blocks_and_recall(store: Path) -> None:
    async def scenario(s: ClientSession) -> Any:
        return (await s.list_resources()).resources, await s.call_tool("memory_grep", {"pattern": "teal"})

    resources, grep = anyio.run(_session, _params("--store", str(store), "--agent", "nobody"), scenario)
    assert resources == []
    assert json.loads(grep.content[0].text)["matches"] == []


def test_printed_config_with_a_local_model_serves_deep_recall_and_literal_grep(
    store: Path, fake_openai: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from agents.cli.main import main

    fake_openai.add('```repl\nFINAL("teal")\n```')
    argv = ["mcp", "--store", str(store), "--print-config", "--base-url", fake_openai.base_url, "--model", "local"]
    assert main(argv) == 0
    entry = json.loads(capsys.readouterr().out)["mcpServers"]["rlm-memory"]
    assert entry["args"][-4:] == ["--model", "local", "--base-url", fake_openai.base_url]
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME")}
    env |= {"ANONYMIZED_TELEMETRY": "False", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    params = StdioServerParameters(command=entry["command"], args=entry["args"], env=env, cwd=str(REPO))

    async def scenario(s: ClientSession) -> Any:
        tools = {t.name: t for t in (await s.list_tools()).tools}
        literal = await s.call_tool("memory_grep", {"pattern": "10:00 on", "literal": True})
        regex = await s.call_tool("memory_grep", {"pattern": "10:00 (on"})
        answer = await s.call_tool("deep_recall", {"question": "What is my favourite colour?"})
        return tools, literal, regex, answer

    tools, literal, regex, answer = anyio.run(_session, params, scenario)
    assert "literal" in tools["memory_grep"].input_schema["properties"]
    assert json.loads(literal.content[0].text)["matches"][0]["match"] == "10:00 on"
    assert regex.is_error and "memory_grep literal: true" in regex.content[0].text
    assert not answer.is_error and "teal" in answer.content[0].text
    assert fake_openai.calls >= 1 and fake_openai.bodies()[0]["model"] == "local"
