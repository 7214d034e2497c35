"""Letta integration against a real Letta 0.16.8 server (the letta rig; ``RLMEM_TEST_LETTA=1``).

Server-side tools run in Letta's sandbox (a subprocess of the Letta server on this machine)
and call our HTTP API, served by the test on 127.0.0.1. The only fake is the LLM: the rig's
scripted mock decides which tool the agent calls.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from letta_rig import Rig, letta_rig, make_agent, mock_script

from agents.integrations.letta import (
    DEFAULT_LETTA_TOOLS,
    ClientTools,
    export_tools,
    import_agent,
    letta_tool_source,
    push_blocks,
)
from agents.server.http import ServerThread
from agents.tools.builtin import tool_schema
from memory.manager import MemoryManager
from memory.ops.values import DEFAULTS
from memory.vectors.embeddings import HashEmbedder
from rlm_core.lm import ScriptedLM

__all__ = ["letta_rig", "mock_script"]  # fixtures, re-exported for pytest

pytestmark = pytest.mark.letta
TOKEN = "letta-test-token"


@pytest.fixture()
def mem(tmp_path: Path) -> Iterator[MemoryManager]:
    m = MemoryManager.open(tmp_path / "store", embedder=HashEmbedder())
    m.recall.append("My favourite colour is teal.", role="user", session_id="s1")
    m.recall.append("Invoice 4411 was paid in March.", role="user", session_id="s1")
    m.archival.insert("The deploy key rotates every 90 days.", tags=("ops",))
    yield m
    m.close()


@pytest.fixture()
def api(mem: MemoryManager) -> Iterator[ServerThread]:
    with ServerThread(mem, token=TOKEN, root=ScriptedLM(default="FINAL(teal, from memory)")) as server:
        yield server


@pytest.fixture()
def agent(letta_rig: Rig) -> Iterator[Any]:
    a = make_agent(letta_rig, "rlmem-test")
    yield a
    letta_rig.client.agents.delete(a.id)


def test_generated_source_is_self_contained() -> None:
    src = letta_tool_source("memory_search")
    assert src.startswith(f"def memory_search(query: str, k: int = {DEFAULTS.k}, tier: str = 'all') -> str:")
    namespace: dict[str, Any] = {}
    exec(compile(src, "<tool>", "exec"), namespace)  # defines the function and nothing else
    assert set(namespace) - {"__builtins__"} == {"memory_search"}
    assert "One of: all, recall, archival." in src and "import urllib.request" in src
    grep = letta_tool_source("memory_grep")
    scope: dict[str, Any] = {}
    exec(compile(grep, "<tool>", "exec"), scope)
    assert "invoice #\\d+" in scope["memory_grep"].__doc__  # backslashes survive the docstring


def test_tools_register_from_source_with_our_schema(letta_rig: Rig, agent: Any) -> None:
    ids = export_tools(letta_rig.client, agent_id=agent.id, url="http://127.0.0.1:9", token=TOKEN)
    assert len(ids) == len(DEFAULT_LETTA_TOOLS)
    assert export_tools(letta_rig.client) == ids  # upsert: same tools, updated in place
    for tool_id, name in zip(ids, DEFAULT_LETTA_TOOLS, strict=True):
        tool = letta_rig.client.tools.retrieve(tool_id)
        ours = tool_schema(name)
        theirs = tool.json_schema
        assert (theirs["name"], theirs["description"]) == (name, ours["description"])
        assert set(theirs["parameters"]["properties"]) == set(ours["input_schema"]["properties"])
        assert theirs["parameters"].get("required", []) == ours["input_schema"].get("required", [])
    attached = {t.name for t in letta_rig.client.agents.tools.list(agent.id)}
    assert set(DEFAULT_LETTA_TOOLS) <= attached
    state = letta_rig.client.agents.retrieve(agent.id, include=["agent.secrets"])
    assert {s.key: s.value for s in state.secrets}["RLMEM_TOKEN"] == TOKEN


def test_each_tool_runs_in_the_letta_sandbox(
    letta_rig: Rig, agent: Any, api: ServerThread, mem: MemoryManager
) -> None:
    client = letta_rig.client
    export_tools(client, agent_id=agent.id, url=api.url, token=TOKEN)

    def run(name: str, **args: Any) -> Any:
        r = client.agents.tools.run(name, agent_id=agent.id, args=args)
        assert r.status == "success", (r.func_return, r.stderr)
        return json.loads(r.func_return)

    hits = run("memory_search", query="favourite colour", k=2)["results"]
    assert hits[0]["text"] == "My favourite colour is teal."
    assert run("memory_grep", pattern=r"Invoice \d+")["matches"][0]["match"] == "Invoice 4411"
    stored = run("archival_insert", text="Letta stored this.", tags=["letta"])
    assert mem.archival.get(stored["id"]).text == "Letta stored this."
    assert run("deep_recall", question="What colour?")["answer"] == "teal, from memory"

    client.agents.update(agent.id, secrets={"RLMEM_URL": api.url, "RLMEM_TOKEN": "wrong"})
    denied = client.agents.tools.run("memory_search", agent_id=agent.id, args={"query": "teal"})
    assert denied.status == "error" and "HTTP 403" in "".join(denied.stderr or [])


def test_agent_step_calls_memory_search(letta_rig: Rig, agent: Any, api: ServerThread, mock_script: Any) -> None:
    export_tools(letta_rig.client, agent_id=agent.id, url=api.url, token=TOKEN)
    mock_script({"queue": [
        {"tool_call": {"name": "memory_search", "arguments": {"query": "favourite colour", "k": 1}}},
        {"content": "From memory: {last_tool_result}"},
    ]})
    resp = letta_rig.client.agents.messages.create(agent.id, messages=[{"role": "user", "content": "What colour do I like?"}])
    kinds = [m.message_type for m in resp.messages]
    assert kinds[:3] == ["tool_call_message", "tool_return_message", "assistant_message"], kinds
    ret = resp.messages[1]
    assert ret.status == "success" and "My favourite colour is teal." in str(ret.tool_return)
    assert "teal" in str(resp.messages[2].content)
    offered = letta_rig.mock("GET", "/mock/calls")
    assert "memory_search" in json.dumps(offered)


def test_client_side_tools_answer_in_this_process(
    letta_rig: Rig, agent: Any, mem: MemoryManager, mock_script: Any
) -> None:
    tools = ClientTools(mem, names=["memory_search", "archival_insert"])
    mock_script({"queue": [
        {"tool_call": {"name": "memory_search", "arguments": {"query": "favourite colour", "k": 1}}},
        {"tool_call": {"name": "archival_insert", "arguments": {"text": "Client-side note.", "tags": ["c"]}}},
        {"content": "Done: {last_tool_result}"},
    ]})
    run = tools.send(letta_rig.client, agent.id, "What colour do I like? Then note it.")
    assert [c["name"] for c in run.tool_calls] == ["memory_search", "archival_insert"]
    assert all(c["ok"] for c in run.tool_calls)
    assert "teal" in run.tool_calls[0]["result"]
    assert run.stop_reason == "end_turn" and run.text.startswith("Done:")
    assert [h.text for h in mem.search_archival("Client-side note", k=1, mode="text")] == ["Client-side note."]
    kinds = [m.message_type for m in run.messages]
    assert kinds.count("approval_request_message") == 2 and kinds.count("tool_return_message") == 2

    mock_script({"queue": [
        {"tool_call": {"name": "memory_search", "arguments": {"query": "x", "k": 5000}}},
        {"content": "Error seen: {last_tool_result}"},
    ]})
    run = tools.send(letta_rig.client, agent.id, "Search badly.")
    assert run.tool_calls[0]["ok"] is False
    assert "'k' must be less than or equal to 1000" in run.tool_calls[0]["result"]
    assert "must be less than or equal to 1000" in run.text


def test_import_blocks_messages_passages_idempotently(
    letta_rig: Rig, agent: Any, mem: MemoryManager, mock_script: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agents.integrations.letta_sync._PAGE", 2)  # every list is read over several pages
    client = letta_rig.client
    client.agents.passages.create(agent.id, text="Letta passage about the blue whale.", tags=["animals"])
    client.agents.passages.create(agent.id, text="Second passage.")
    mock_script({"queue": [
        {"tool_call": {"name": "memory_search", "arguments": {"query": "teal", "k": 1}}},
        {"content": "Hello Ada, noted."},
    ]})
    ClientTools(mem, names=["memory_search"]).send(client, agent.id, "Please note that I like teal.")

    first = import_agent(client, agent.id, mem, memory_agent_id="ada")
    assert (first.blocks, first.passages) == (2, 2) and first.messages >= 2
    wm = mem.blocks("ada")
    assert wm.get("human").value == "Name: Ada" and wm.get("persona").value == "I am a helpful assistant."
    session = f"letta-{agent.id}"
    msgs = mem.recall.session(session, agent_id="ada")
    pairs = [(m.role, m.content) for m in msgs]
    assert ("user", "Please note that I like teal.") in pairs and ("assistant", "Hello Ada, noted.") in pairs
    assert all(m.metadata["letta_agent_id"] == agent.id for m in msgs)
    call = next(m for m in msgs if m.tool_name == "memory_search" and m.role == "assistant")
    ret = next(m for m in msgs if m.role == "tool" and m.tool_name == "memory_search")
    assert call.tool_args == {"query": "teal", "k": 1} and "favourite colour" in ret.content
    assert call.metadata["tool_call_id"] == ret.metadata["tool_call_id"]
    assert [m.id for m in msgs] == sorted(m.id for m in msgs)  # Letta's order kept
    hits = mem.search_archival("blue whale", k=1, mode="text", tags=["animals"])
    assert hits and hits[0].source == f"letta:{agent.id}:" + hits[0].metadata["letta_passage_id"]

    again = import_agent(client, agent.id, mem, memory_agent_id="ada")
    assert (again.blocks, again.messages, again.passages) == (0, 0, 0)
    assert again.skipped_messages == first.messages and again.skipped_passages == 2
    assert len(mem.recall.session(session, agent_id="ada")) == len(msgs)

    wm.append("human", "Likes teal", actor="user")
    wm.create("project", "rlm-memory", limit=500)
    assert sorted(push_blocks(client, agent.id, mem, memory_agent_id="ada")) == ["human", "project"]
    remote = {b.label: b.value for b in client.agents.blocks.list(agent.id)}
    assert remote["human"] == "Name: Ada\nLikes teal" and remote["project"] == "rlm-memory"
    assert push_blocks(client, agent.id, mem, memory_agent_id="ada") == []  # nothing left to push


def test_export_gives_each_letta_agent_a_token_of_its_own(letta_rig: Rig, api: ServerThread, mem: MemoryManager) -> None:
    client = letta_rig.client
    mem.recall.append("Bob's deploy key is amber-42.", role="user", agent_id="bob", session_id="b1")
    mem.recall.append("Alice likes teal.", role="user", agent_id="alice", session_id="a1")
    a, b = make_agent(letta_rig, "rlmem-alice"), make_agent(letta_rig, "rlmem-bob")
    try:
        export_tools(client, agent_id=a.id, url=api.url, memory=mem, memory_agent_id="alice")
        export_tools(client, agent_id=b.id, url=api.url, memory=mem, memory_agent_id="bob")
        export_tools(client, agent_id=a.id, url=api.url, memory=mem, memory_agent_id="alice")  # keeps its token

        def run(agent: Any, name: str, **args: Any) -> Any:
            r = client.agents.tools.run(name, agent_id=agent.id, args=args)
            assert r.status == "success", (r.func_return, r.stderr)
            return json.loads(r.func_return)

        assert "amber" not in json.dumps(run(a, "memory_grep", pattern="deploy key|teal|amber")["matches"])
        assert "amber-42" in json.dumps(run(b, "memory_grep", pattern="amber"))
        secrets = {s.key: s.value for s in client.agents.retrieve(a.id, include=["agent.secrets"]).secrets}
        assert secrets["RLMEM_TOKEN"] != TOKEN
        from agents.server.auth import TokenStore

        # one token each (the third export kept alice's); ids are random, so order by name
        assert sorted(t.agents for t in TokenStore(mem.db, None).list()) == [("alice",), ("bob",)]
    finally:
        client.agents.delete(a.id)
        client.agents.delete(b.id)


def test_export_token_reuse_without_a_letta_server(mem: MemoryManager) -> None:
    from agents.integrations.letta import _agent_token
    from agents.server.auth import TokenStore

    first = _agent_token(mem, "alice", None, read_only=False, label="x")
    assert _agent_token(mem, "alice", first, read_only=False, label="x") == first  # held and exact: kept
    assert _agent_token(mem, "bob", first, read_only=False, label="x") != first  # another agent: a new one
    assert _agent_token(mem, "alice", first, read_only=True, label="x") != first  # other rights: a new one
    assert _agent_token(mem, "alice", "rlm_forged_x", read_only=False, label="x").startswith("rlm_")
    grants = [TokenStore(mem.db, None).check(t) for t in (first,)]
    assert grants[0] is not None and grants[0].agents == ("alice",) and grants[0].write
