"""The long-lived Agent: steps, tools, context overflow, restarts and two processes.

Real SQLite store; the model is scripted (ScriptedLM / FunctionLM), the embedder the
dependency-free HashEmbedder (these tests do not measure retrieval quality).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.agent.context import INTERRUPTED_RESULT, to_chat_messages
from agents.agent.core import Agent
from agents.agent.state import AgentTable
from agents.agent.summary import SUMMARY_SYSTEM
from memory.errors import NotFoundError, StoreBusyError, ValidationError
from memory.manager import MemoryManager
from memory.types import Message
from memory.vectors.embeddings import HashEmbedder
from rlm_core.lm import FunctionLM, LMRequest, LMResponse, ScriptedLM, ToolCall
from rlm_core.lm.types import count_tokens

ROOT = Path(__file__).resolve().parents[1]
SUMMARY_MARK = SUMMARY_SYSTEM.split("{")[0][:60]


def open_store(path: Path) -> MemoryManager:
    return MemoryManager.open(path, embedder=HashEmbedder(), background_embed=False)


@pytest.fixture()
def mem(tmp_path: Path) -> Iterator[MemoryManager]:
    m = open_store(tmp_path / "store")
    yield m
    m.close()


def _is_summary(req: LMRequest) -> bool:
    return (req.system or "").startswith(SUMMARY_MARK)


# --- creating and stepping -----------------------------------------------------------------


def test_create_open_and_several_agents(mem: MemoryManager) -> None:
    a = Agent.create("ada", mem, ScriptedLM(), persona="I am Ada.", human="Name: Sam")
    Agent.create("bob", mem, ScriptedLM())
    assert {b.label for b in a.blocks.list()} == {"persona", "human", "summary"}
    assert a.blocks.get("persona").value == "I am Ada."
    assert [r.agent_id for r in Agent.list_agents(mem)] == ["ada", "bob"]
    with pytest.raises(ValidationError, match="already exists"):
        Agent.create("ada", mem, ScriptedLM())
    with pytest.raises(NotFoundError, match=r"Agent\.create"):
        Agent.open("nobody", mem, ScriptedLM())
    assert Agent.open("ada", mem, ScriptedLM()).blocks.get("human").value == "Name: Sam"
    assert mem.blocks("bob").get("persona").value == ""


def test_step_writes_every_message_and_builds_the_context(tmp_path: Path, mem: MemoryManager) -> None:
    lm = ScriptedLM(["Hello Sam!", "You said your name is Sam."])
    agent = Agent.create("ada", mem, lm, persona="I am Ada.", human="Name: Sam", tools=())
    r1 = agent.step("Hi, I am Sam")
    assert r1.text == "Hello Sam!" and [m.role for m in r1.messages] == ["user", "assistant"]
    assert r1.usage.input_tokens > 0
    r2 = agent.step("What is my name?")
    assert r2.text == "You said your name is Sam."
    req = lm.requests[-1]
    assert req.messages == [
        {"role": "user", "content": "Hi, I am Sam"},
        {"role": "assistant", "content": "Hello Sam!"},
        {"role": "user", "content": "What is my name?"},
    ]
    system = req.system or ""
    assert system.startswith(agent.system_prompt)
    assert "<persona>" in system and "I am Ada." in system and "Name: Sam" in system
    assert "Recall log: 3 messages" in system  # statistics, counted when the call was made
    # durable: a second manager on the same directory sees every message
    other = open_store(tmp_path / "store")
    try:
        rows = other.recall.session(agent.session_id, agent_id="ada")
        assert [(m.role, m.content) for m in rows][-2:] == [
            ("user", "What is my name?"), ("assistant", "You said your name is Sam.")]
    finally:
        other.close()


def test_empty_message_is_refused(mem: MemoryManager) -> None:
    agent = Agent.create("ada", mem, ScriptedLM(), tools=())
    with pytest.raises(ValidationError, match="empty"):
        agent.step("   ")
    assert mem.recall.count(agent_id="ada") == 0


def test_astep(mem: MemoryManager) -> None:
    agent = Agent.create("ada", mem, ScriptedLM(["async hello"]), tools=())
    reply = asyncio.run(agent.astep("hi"))
    assert reply.text == "async hello" and mem.recall.count(agent_id="ada") == 2


# --- tools -----------------------------------------------------------------------------------


def test_tool_calls_edit_memory_and_are_logged(mem: MemoryManager) -> None:
    lm = ScriptedLM([
        LMResponse(text="Noting that.", tool_calls=[ToolCall("t1", "core_memory_append",
                                                              {"label": "human", "text": "Likes green tea"})]),
        LMResponse(text="", tool_calls=[ToolCall("t2", "archival_insert", {"text": "Sam's tea: sencha"})]),
        "Got it: green tea.",
    ])
    agent = Agent.create("ada", mem, lm, human="Name: Sam")
    reply = agent.step("I like green tea, sencha mostly")
    assert reply.text == "Got it: green tea."
    assert [c.name for c in reply.tool_calls] == ["core_memory_append", "archival_insert"]
    assert not any(c.is_error for c in reply.tool_calls)
    assert agent.blocks.get("human").value == "Name: Sam\nLikes green tea"
    assert mem.archival.count() == 1
    rows = reply.messages
    assert [(m.role, m.tool_name) for m in rows] == [
        ("user", None), ("assistant", None), ("assistant", "core_memory_append"),
        ("tool", "core_memory_append"), ("assistant", "archival_insert"), ("tool", "archival_insert"),
        ("assistant", None)]
    # the model saw its tool use and the results as Anthropic blocks, and got the tools
    last = lm.requests[-1]
    kinds = [[b["type"] for b in m["content"]] if isinstance(m["content"], list) else ["str"]
             for m in last.messages]
    assert kinds == [["str"], ["text", "tool_use"], ["tool_result"], ["tool_use"], ["tool_result"]]
    assert "Likes green tea" in (last.system or "")


def test_failing_and_unknown_tools_reach_the_model_as_errors(mem: MemoryManager) -> None:
    lm = ScriptedLM([
        LMResponse(text="", tool_calls=[
            ToolCall("t1", "core_memory_replace", {"label": "human", "old": "absent", "new": "x"}),
            ToolCall("t2", "launch_rockets", {}),
        ]),
        "Sorry, that did not work.",
    ])
    agent = Agent.create("ada", mem, lm)
    reply = agent.step("update my notes")
    assert [c.is_error for c in reply.tool_calls] == [True, True]
    assert "launch_rockets" in reply.tool_calls[1].result
    results = [b for m in lm.requests[-1].messages if isinstance(m["content"], list)
               for b in m["content"] if b["type"] == "tool_result"]
    assert [b.get("is_error") for b in results] == [True, True]


def test_tool_rounds_are_bounded(mem: MemoryManager) -> None:
    n = 0

    def always_search(req: LMRequest) -> LMResponse:
        nonlocal n
        n += 1
        return LMResponse(text="", tool_calls=[ToolCall(f"t{n}", "conversation_search", {"query": "tea"})])

    agent = Agent.create("ada", mem, FunctionLM(always_search), max_tool_rounds=3)
    reply = agent.step("loop forever")
    assert n == 3 + 2  # the rounds, one refused round telling it to answer, one last refused
    assert "tool round limit" in reply.text
    assert sum(c.is_error for c in reply.tool_calls) == 2 and len(reply.tool_calls) == 5


def test_interrupted_step_still_gives_a_valid_conversation(mem: MemoryManager) -> None:
    # a crash between a tool call and its result leaves a dangling call in recall
    rows = mem.recall.append_many([
        {"content": "search please", "role": "user", "agent_id": "x"},
        {"content": "conversation_search({})", "role": "assistant", "agent_id": "x",
         "tool_name": "conversation_search", "tool_args": {"query": "q"},
         "metadata": {"kind": "tool_call", "tool_call_id": "t9"}},
        {"content": "are you there?", "role": "user", "agent_id": "x"},
    ])
    msgs = to_chat_messages(rows)
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert msgs[2]["content"][0] == {"type": "tool_result", "tool_use_id": "t9",
                                     "content": INTERRUPTED_RESULT, "is_error": True}
    assert msgs[2]["content"][1] == {"type": "text", "text": "are you there?"}
    # a buffer cut before its first user message still starts with a user turn
    assert to_chat_messages(rows[1:2])[0]["role"] == "user"


# --- overflow ----------------------------------------------------------------------------


def _scripted_long_chat() -> tuple[FunctionLM, list[LMRequest]]:
    summaries: list[LMRequest] = []

    def reply(req: LMRequest) -> str:
        if _is_summary(req):
            summaries.append(req)
            return f"Summary #{len(summaries)}: the user has been counting; facts so far are kept."
        return f"ack: {req.prompt[:40]}"

    return FunctionLM(reply), summaries


def test_overflow_over_hundreds_of_turns(mem: MemoryManager) -> None:
    lm, summaries = _scripted_long_chat()
    budget = 1500
    agent = Agent.create("ada", mem, lm, tools=(), context_budget_tokens=budget, summary_limit=400)
    turns = 300
    for i in range(turns):
        agent.step(f"turn {i}: the number of the day is {i * 7} " + "blah " * 20)
    conversation = [r for r in lm.requests if not _is_summary(r)]
    assert len(conversation) == turns
    for req in conversation:
        used = count_tokens(req.system or "") + sum(
            count_tokens(m["content"] if isinstance(m["content"], str) else json.dumps(m["content"])) + 4
            for m in req.messages)
        assert used <= budget * 1.05, used
        assert req.messages[0]["role"] == "user" and req.messages[-1]["role"] == "user"
    # summarising is rare (half the buffer leaves each time), and the summary is in the prompt
    assert 10 <= len(summaries) <= turns // 5
    assert agent.blocks.get("summary").value.startswith(f"Summary #{len(summaries)}")
    assert f"Summary #{len(summaries)}" in (conversation[-1].system or "")
    # the summariser saw the previous summary and the leaving messages, oldest first
    assert "Summary #1" in summaries[1].prompt and "turn " in summaries[1].prompt
    # nothing was deleted: every message is still in recall, and the buffer starts a turn
    assert mem.recall.count(agent_id="ada") == 2 * turns
    buf = agent.buffer()
    assert buf[0].role == "user" and buf[-1].content.startswith("ack: turn 299")
    assert len(buf) < 2 * turns


def test_failed_summary_call_leaves_a_note_and_the_step_goes_on(mem: MemoryManager) -> None:
    from memory.errors import LMTransientError

    def reply(req: LMRequest) -> str:
        if _is_summary(req):
            raise LMTransientError("overloaded")
        return "ok"

    agent = Agent.create("ada", mem, FunctionLM(reply), tools=(), context_budget_tokens=600)
    for i in range(30):
        agent.step(f"message {i} " + "words " * 30)
    note = agent.blocks.get("summary").value
    assert "left the prompt without a summary" in note
    assert mem.recall.count(agent_id="ada") == 60


# --- restarts and concurrency ----------------------------------------------------------------

_DRIVER = textwrap.dedent(
    """
    import sys
    from agents.agent.core import Agent
    from memory.vectors.embeddings import HashEmbedder
    from memory.manager import MemoryManager
    from rlm_core.lm import FunctionLM

    store, name, tag, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    mem = MemoryManager.open(store, embedder=HashEmbedder(), background_embed=False)
    def reply(req):
        if (req.system or "").startswith("You maintain the running summary"):
            return "summary written by " + tag
        return "reply to " + req.prompt
    lm = FunctionLM(reply)
    try:
        agent = Agent.open(name, mem, lm)
    except Exception:
        agent = Agent.create(name, mem, lm, tools=(), context_budget_tokens=700)
    for i in range(n):
        agent.step(f"{tag} says {i} " + "padding " * 15)
    mem.close()
    """
)


def _run_driver(store: Path, tag: str, n: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", _DRIVER, str(store), "ada", tag, str(n)], env=env,
                            stderr=subprocess.PIPE)


def test_a_restarted_process_resumes_exactly(tmp_path: Path) -> None:
    store = tmp_path / "store"
    proc = _run_driver(store, "first", 25)
    assert proc.wait(timeout=240) == 0, proc.stderr.read() if proc.stderr else ""
    mem = open_store(store)
    try:
        lm = ScriptedLM(["resumed"])
        agent = Agent.open("ada", mem, lm)
        assert agent.blocks.get("summary").value == "summary written by first"
        _before_system, before_msgs = agent.context()
        assert before_msgs[0]["role"] == "user" and before_msgs[-1]["content"].startswith("reply to first says 24")
        assert AgentTable(mem.db).get("ada").buffer_start_id > 1
        agent.step("are you back?")
        req = lm.requests[0]
        assert req.messages[:-1] == before_msgs
        assert req.messages[-1] == {"role": "user", "content": "are you back?"}
    finally:
        mem.close()


def test_two_processes_take_turns(tmp_path: Path) -> None:
    store = tmp_path / "store"
    mem = open_store(store)
    Agent.create("ada", mem, ScriptedLM(), tools=(), context_budget_tokens=700)
    mem.close()
    procs = [_run_driver(store, tag, 12) for tag in ("p1", "p2")]
    for p in procs:
        assert p.wait(timeout=240) == 0, p.stderr.read() if p.stderr else ""
    mem = open_store(store)
    try:
        rows = mem.recall.range(0, None, agent_id="ada", limit=1000)
        assert len(rows) == 48
        # steps never interleave: each user message is followed by its own reply
        for user, answer in zip(rows[::2], rows[1::2], strict=True):
            assert user.role == "user" and answer.content == "reply to " + user.content
    finally:
        mem.close()


def test_a_busy_agent_gives_a_clear_error_and_dead_holders_are_replaced(mem: MemoryManager) -> None:
    agent = Agent.create("ada", mem, ScriptedLM(default="hi"), tools=())
    agent.lock_timeout_s = 0.3
    table = AgentTable(mem.db)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lease = table.acquire("ada")
        with mem.db.write() as conn:  # the lease now belongs to another live process
            from sqlalchemy import text

            conn.execute(text("UPDATE rlm_agents SET lock_pid = :p WHERE agent_id = 'ada'"), {"p": holder.pid})
        with pytest.raises(StoreBusyError, match=f"process {holder.pid}"):
            agent.step("hello?")
    finally:
        holder.kill()
        holder.wait()
    assert agent.step("hello again").text == "hi"  # its holder died: the lease is taken over
    table.release(lease)


# --- PostgreSQL ----------------------------------------------------------------------------


@pytest.mark.postgres
def test_agent_on_postgres(tmp_path: Path, pg_url: str) -> None:
    memory = MemoryManager.open(tmp_path / "store", database_url=pg_url, embedder=HashEmbedder(),
                                background_embed=False)
    try:
        lm, summaries = _scripted_long_chat()
        lm_tools = ScriptedLM([
            LMResponse(text="", tool_calls=[ToolCall("t1", "core_memory_append",
                                                     {"label": "human", "text": "Uses Postgres"})]),
            "noted",
        ])
        Agent.create("tooly", memory, lm_tools).step("remember I use Postgres")
        assert memory.blocks("tooly").get("human").value == "Uses Postgres"
        agent = Agent.create("ada", memory, lm, tools=(), context_budget_tokens=700)
        for i in range(40):
            agent.step(f"turn {i} " + "words " * 20)
        assert summaries and memory.recall.count(agent_id="ada") == 80
        again = Agent.open("ada", memory, ScriptedLM(["back"]))
        assert again.buffer() == agent.buffer() and again.buffer()[0].role == "user"
        lease = AgentTable(memory.db).acquire("ada")
        again.lock_timeout_s = 0.2
        with pytest.raises(StoreBusyError):
            # same process, lease still held: a second driver waits, then gets a clear error
            again.step("blocked")
        AgentTable(memory.db).release(lease)
        assert again.step("free").text == "back"
    finally:
        memory.close()


# --- the real Anthropic SDK against a fake Messages API ------------------------------------


def test_agent_through_the_anthropic_sdk(mem: MemoryManager, fake_anthropic: Any) -> None:
    from fakes import Reply

    from rlm_core.lm.anthropic import AnthropicLM

    fake_anthropic.add(
        Reply(text="Let me note that.", tool_calls=[("core_memory_append", {"label": "human", "text": "Has a cat."})]),
        "Noted: you have a cat.",
    )
    model = AnthropicLM("claude-haiku-4-5", api_key="test", base_url=fake_anthropic.url, max_retries=0)
    agent = Agent.create("ada", mem, model)
    reply = agent.step("I have a cat")
    assert reply.text == "Noted: you have a cat." and agent.blocks.get("human").value == "Has a cat."
    first, second = (r.body for r in fake_anthropic.requests)
    assert {t["name"] for t in first["tools"]} >= {"core_memory_append", "deep_recall"}
    assert "Recall log" in json.dumps(first["system"])
    call_id = second["messages"][1]["content"][1]["id"]
    assert second["messages"][1]["content"][1]["type"] == "tool_use"
    assert second["messages"][2]["content"][0]["tool_use_id"] == call_id
    # a restarted process sends the very same conversation
    fake_anthropic.add("Still a cat.")
    Agent.open("ada", mem, model).step("what pet do I have?")
    third = fake_anthropic.requests[-1].body
    assert third["messages"][:3] == second["messages"][:3]


def test_the_package_imports_lazily() -> None:
    code = ("import sys, agents\n"
            "assert 'memory.manager' not in sys.modules and 'agents.agent.core' not in sys.modules\n"
            "assert agents.Agent.__name__ == 'Agent' and callable(agents.import_transcript)\n"
            "assert 'torch' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                   timeout=60)


# --- the buffer is always a valid conversation -------------------------------------------------

_ROW = st.sampled_from(["user", "assistant", "call", "result", "orphan", "system"])


def _rows(kinds: list[str], texts: list[str]) -> list[Message]:
    out, calls = [], []
    now = datetime.now(UTC)
    for i, (kind, text) in enumerate(zip(kinds, texts, strict=False), 1):
        meta: dict[str, Any] = {}
        role, tool = kind, None
        if kind == "call":
            role, tool, meta = "assistant", "memory_search", {"kind": "tool_call", "tool_call_id": f"c{i}"}
            calls.append(f"c{i}")
        elif kind == "result":
            role, tool = "tool", "memory_search"
            meta = {"kind": "tool_result", "tool_call_id": calls.pop(0) if calls else f"x{i}"}
        elif kind == "orphan":
            role, tool, meta = "tool", "memory_search", {"kind": "tool_result", "tool_call_id": "nope"}
        out.append(Message(i, "a", "s", role, text, now, tool, {"query": text} if kind == "call" else None,
                           0, meta))
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(_ROW, max_size=25), st.lists(st.text(max_size=20), min_size=25, max_size=25))
def test_any_buffer_becomes_a_valid_conversation(kinds: list[str], texts: list[str]) -> None:
    msgs = to_chat_messages(_rows(kinds, texts))
    if not kinds:
        assert msgs == []
        return
    assert msgs[0]["role"] == "user"
    for a, b in itertools.pairwise(msgs):
        assert a["role"] != b["role"]
    for i, m in enumerate(msgs):
        blocks = m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]
        assert blocks and all(b.get("text", "x").strip() for b in blocks)
        uses = [b["id"] for b in blocks if b["type"] == "tool_use"]
        if uses:  # every tool_use is answered at the start of the very next message
            nxt = msgs[i + 1]["content"]
            assert isinstance(nxt, list)
            answered = [b["tool_use_id"] for b in nxt[: len(uses)] if b["type"] == "tool_result"]
            assert sorted(answered) == sorted(uses)
        results = [b["tool_use_id"] for b in blocks if b["type"] == "tool_result"]
        if results:
            prev = msgs[i - 1]["content"]
            assert isinstance(prev, list) and set(results) <= {b.get("id") for b in prev}


def test_deep_recall_runs_an_rlm_over_the_agents_memory(mem: MemoryManager) -> None:
    mem.recall.append_many([{"content": f"day {i}: ran {i % 5} km", "agent_id": "ada", "session_id": f"d{i}"}
                            for i in range(60)])
    model = ScriptedLM([
        LMResponse(text="", tool_calls=[ToolCall("t1", "deep_recall", {"question": "How often did I run 4 km?"})]),
        # the same model is the root of the recursive run: it explores memory with code
        "```repl\nn = len(grep(r'ran 4 km'))\nprint(n)\n```",
        "FINAL_VAR(n)",
        "You ran 4 km on 12 days.",
    ])
    agent = Agent.create("ada", mem, model)
    reply = agent.step("How often did I run 4 km?")
    assert reply.text == "You ran 4 km on 12 days."
    result = json.loads(reply.tool_calls[0].result)
    assert result["answer"] == "12" and result["complete"] is True
    root_first = model.requests[1]
    assert root_first.tools is None and "Memory of agent 'ada'" in root_first.prompt


def test_an_existing_history_stays_searchable_but_out_of_the_prompt(mem: MemoryManager) -> None:
    mem.recall.append_many([{"content": f"imported {i}", "agent_id": "ada"} for i in range(500)])
    lm = ScriptedLM(["hi"])
    agent = Agent.create("ada", mem, lm, tools=())
    agent.step("hello")
    assert lm.requests[0].messages == [{"role": "user", "content": "hello"}]
    assert "Recall log: 501 messages" in (lm.requests[0].system or "")
    assert "500 earlier messages are no longer in this prompt" in (lm.requests[0].system or "")


def test_the_summariser_gets_a_bounded_transcript() -> None:
    from agents.agent.summary import summary_request

    now = datetime.now(UTC)
    evicted = [Message(i, "a", "s", "user", "x" * 500 + "\n[not a new message", now) for i in range(1, 3001)]
    messages, system, _ = summary_request("old summary", evicted, limit=800, max_chars=20_000)
    prompt = messages[0]["content"]
    assert len(prompt) < 25_000 and "old summary" in prompt and "800 characters" in system
    omitted = int(prompt.split("Messages leaving the context window:\n(")[1].split()[0])
    assert prompt.count("] user: ") == 3000 - omitted and prompt.rstrip().endswith("[not a new message")


def test_an_agent_can_own_its_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLMEM_BACKGROUND_EMBED", "false")
    with Agent.create("ada", tmp_path / "own", ScriptedLM(["one"]), tools=()) as agent:
        assert agent.step("hi").text == "one"
    with Agent.open("ada", str(tmp_path / "own"), ScriptedLM(["two"])) as agent:
        assert agent.step("again").text == "two" and len(agent.buffer()) == 4
    with pytest.raises(NotFoundError):
        Agent.open("bob", tmp_path / "own", ScriptedLM())


def test_an_oversized_persona_is_refused_before_anything_is_stored(mem: MemoryManager) -> None:
    from memory.errors import BlockLimitError

    with pytest.raises(BlockLimitError, match="over its limit"):
        Agent.create("ada", mem, ScriptedLM(), persona="x" * 101, block_limit=100)
    assert Agent.list_agents(mem) == [] and mem.blocks("ada").list() == []
