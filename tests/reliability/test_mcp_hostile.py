"""Every MCP request is answered: a real ``rlmem mcp`` stdio session, driven by the MCP SDK's
client, gets hostile arguments for every tool it lists, each call under a deadline.

The SDK's own stdio transport cannot send a lone surrogate or a NaN (its JSON encoder
refuses them), while a client in another language sends them as ``"\\ud800"`` and ``NaN``; the
transport here writes what Python's ``json.dumps`` writes, and the session is the SDK's
``ClientSession``.

An answer is a tool result (an error result for bad input, with a readable message) or a
protocol error; silence (a call that never returns) fails the test, and the session must still
answer a normal call afterwards. The store is unchanged by refused calls.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp.types as mt
import pytest
from mcp import ClientSession
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage

from memory.manager import MemoryManager
from memory.vectors.embeddings import HashEmbedder
from reliability.harness import ROOT
from reliability.served import cli, cli_env

DEADLINE_S = 60  # the first vector search loads the embedding model

HOSTILE: list[Any] = [
    "\ud800", "a\udfffb", "x" * 200_000, "\x00", "((((", "[[:alpha:]", "*" * 5000, "' OR 1=1 --", "\u202e",
    -1, 0, 2**70, -(2**63) - 1, 1e308, float("nan"), True, None, [], [1, "2"], {"a": {"b": []}},
    "1; DROP TABLE recall_messages", "../../../etc/passwd", "memory://blocks/../x",
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mcp-hostile") / "store"
    assert cli("init", str(path)).returncode == 0
    with MemoryManager.open(path, embedder=HashEmbedder(), background_embed=False, embed_recall=False) as m:
        m.recall.append("My favourite colour is teal.", session_id="s1")
        m.blocks("default").create("human", "Name: Ada", limit=100)
    return path


def _counts(store: Path) -> tuple[int, int, str]:
    with MemoryManager.open(store, embedder=HashEmbedder(), read_only=True) as m:
        return m.recall.count(), m.archival.count(), m.blocks("default").get("human").value


def _argument_sets(schema: dict[str, Any]) -> list[dict[str, Any]]:
    props = list((schema.get("properties") or {}).keys())
    required = list(schema.get("required") or [])
    sets: list[dict[str, Any]] = [{}, {"unknown_argument": 1}]
    for name in props:
        for bad in HOSTILE:
            base = {r: "teal" for r in required}
            sets.append(base | {name: bad})
    return sets


@asynccontextmanager
async def raw_stdio(argv: list[str]) -> AsyncIterator[tuple[Any, Any]]:
    """A stdio transport for ``ClientSession`` that writes lines with ``json.dumps``."""
    proc = await anyio.open_process(argv, env=cli_env(), cwd=str(ROOT), stderr=subprocess.DEVNULL)
    to_session, read = anyio.create_memory_object_stream[Any](100)
    write, from_session = anyio.create_memory_object_stream[SessionMessage](100)

    async def reader() -> None:
        buf = b""
        assert proc.stdout is not None
        async with to_session:
            async for chunk in proc.stdout:
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    await to_session.send(SessionMessage(mt.jsonrpc_message_adapter.validate_json(line)))

    async def writer() -> None:
        assert proc.stdin is not None
        async with from_session:
            async for sm in from_session:
                data = sm.message.model_dump(by_alias=True, exclude_unset=True, mode="python")
                await proc.stdin.send((json.dumps(data) + "\n").encode())

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        tg.start_soon(writer)
        try:
            yield read, write
        finally:
            if proc.returncode is None:
                proc.terminate()  # our own child, by its handle
            with anyio.move_on_after(10):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
            tg.cancel_scope.cancel()
    # Its pipes and transport closed while the event loop runs, not by the garbage collector
    # after it has closed ("Event loop is closed" in a later test).
    with anyio.move_on_after(10):
        await proc.aclose()


def test_every_tool_answers_hostile_arguments(store: Path) -> None:
    argv = [sys.executable, "-m", "agents.cli.main", "mcp", "--store", str(store)]
    report: dict[str, Any] = {"calls": 0, "errors": 0, "protocol_errors": 0, "silent": []}
    before = _counts(store)

    async def scenario(s: ClientSession) -> None:
        tools = (await s.list_tools()).tools
        assert len(tools) >= 8
        for tool in tools:
            for args in _argument_sets(tool.input_schema):
                report["calls"] += 1
                try:
                    with anyio.fail_after(DEADLINE_S):
                        result = await s.call_tool(tool.name, args)
                except TimeoutError:
                    report["silent"].append((tool.name, repr(args)[:80]))
                    continue
                except MCPError:
                    report["protocol_errors"] += 1
                    continue
                if result.is_error:
                    report["errors"] += 1
                    text = str(getattr(result.content[0], "text", "")) if result.content else ""
                    assert text.strip() and "Traceback" not in text, (tool.name, args)
        with anyio.fail_after(DEADLINE_S):  # the session still works
            ok = await s.call_tool("memory_grep", {"pattern": "teal"})
        assert not ok.is_error and "teal" in str(getattr(ok.content[0], "text", ""))
        for uri in ("memory://blocks/\ud800", "memory://blocks/" + "x" * 100_000, "memory://blocks/../../x"):
            with anyio.fail_after(DEADLINE_S), pytest.raises(MCPError):
                await s.read_resource(uri)

    async def run() -> None:
        async with raw_stdio(argv) as (read, write), ClientSession(read, write) as session:
            with anyio.fail_after(DEADLINE_S):
                await session.initialize()
            await scenario(session)

    anyio.run(run)
    assert report["silent"] == [], report
    assert report["calls"] > 300 and report["errors"] > 100, report
    after = _counts(store)
    assert after[0] >= before[0]  # hostile writes that were valid text may have been stored; nothing lost


def test_lines_are_cleaned_only_where_the_sdk_would_choke() -> None:
    from agents.server.mcp import clean_line

    assert clean_line('{"q": "\\ud800x", "k": NaN, "e": "\\ud83d\\ude00"}\n') == '{"q": "\ufffdx", "k": null, "e": "\U0001f600"}\n'
    for same in ('{"q": "plain"}\n', '{"q": "NaN is a word"}\n'.replace("NaN", "nan"), "not json NaN\n"):
        assert clean_line(same) == same
