"""Memory tools: schemas from signatures and docstrings, argument checking, results, errors.

Real stores (SQLite + embedded Chroma in a temporary directory); the deterministic
``HashEmbedder`` stands in for the model because nothing here measures retrieval quality.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

from agents.tools.bound import bound
from agents.tools.builtin import (
    HIT_TEXT_CHARS,
    TOOLS,
    ToolContext,
    anthropic_tools,
    bound_tools,
    call_tool,
    tool_schema,
)
from memory.errors import (
    BlockLimitError,
    ConfigError,
    NotFoundError,
    QueryError,
    ReadOnlyBlockError,
    ValidationError,
)
from memory.manager import MemoryManager
from memory.ops.schema import Int, Tags, check_arguments, function_schema, parse_docstring
from memory.ops.values import DEFAULTS
from memory.vectors.embeddings import HashEmbedder
from rlm_core.lm import ScriptedLM


class Opaque:
    """A type pydantic cannot describe as JSON."""


@pytest.fixture()
def mem(tmp_path: Path) -> Iterator[MemoryManager]:
    m = MemoryManager.open(tmp_path / "store", embedder=HashEmbedder())
    m.recall.append("My favourite colour is teal.", role="user", session_id="s1")
    m.recall.append("Noted, teal it is.", role="assistant", session_id="s1")
    m.recall.append("Where did we deploy the invoice service?", role="user", session_id="s2")
    m.recall.append("Other agent's secret plan.", role="user", agent_id="other", session_id="o1")
    m.archival.insert("The deploy key rotates every 90 days.", tags=("ops",))
    m.archival.insert("Invoice #4411 was paid on 2024-03-02.", tags=("finance",))
    wm = m.blocks("default")
    wm.create("human", "Name: Ada", limit=200)
    wm.create("rules", "Never delete data.", read_only=True)
    yield m
    m.close()


@pytest.fixture()
def ctx(mem: MemoryManager) -> ToolContext:
    return ToolContext(mem)


# --- schemas -----------------------------------------------------------------------------


def test_every_tool_has_a_complete_anthropic_schema() -> None:
    defs = anthropic_tools()
    assert [d["name"] for d in defs] == list(TOOLS)
    for d in defs:
        assert set(d) == {"name", "description", "input_schema"}
        assert d["description"] and "Args:" not in d["description"]
        schema = d["input_schema"]
        assert schema["type"] == "object" and "ctx" not in schema["properties"]
        for name, prop in schema["properties"].items():
            assert prop.get("description"), f"{d['name']}.{name} has no description"
        json.dumps(d)  # serialisable as sent to the API


def test_schema_details_come_from_the_signature() -> None:
    s = tool_schema("memory_search")["input_schema"]
    assert s["required"] == ["query"]
    assert s["properties"]["k"] == {"type": "integer", "default": DEFAULTS.k, "minimum": 1, "maximum": DEFAULTS.max_k,
                                    "description": s["properties"]["k"]["description"]}
    assert s["properties"]["tier"]["enum"] == ["all", "recall", "archival"]
    tags = tool_schema("archival_search")["input_schema"]["properties"]["tags"]
    assert tags["type"] == "array" and tags["items"] == {"type": "string"} and "default" not in tags
    assert anthropic_tools(["deep_recall"])[0]["input_schema"]["required"] == ["question"]
    with pytest.raises(ValidationError, match="available tools: memory_search"):
        anthropic_tools(["no_such_tool"])


def test_docstring_parser_and_unsupported_types() -> None:
    desc, args = parse_docstring(
        """Do a thing.

        More detail.

        Args:
            a (int): First,
                continued.
            b: Second.

        Returns:
            str: ignored.
        """
    )
    assert desc == "Do a thing.\n\nMore detail." and args == {"a": "First, continued.", "b": "Second."}

    def opaque(ctx: Any, x: Opaque) -> None:
        """Opaque.

        Args:
            x: Something pydantic cannot describe.
        """

    with pytest.raises(TypeError, match="unsupported parameter type"):
        function_schema(opaque)

    def undocumented(ctx: Any) -> None:
        pass

    with pytest.raises(TypeError, match="no docstring"):
        function_schema(undocumented)


# --- argument checking -------------------------------------------------------------------


def test_arguments_are_coerced_or_refused_clearly() -> None:
    def f(ctx: Any, n: Int, flag: bool = False, tags: Tags | None = None,
          mode: Literal["a", "b"] = "a", x: float = 0.0) -> None:
        """F.

        Args:
            n: N.
            flag: Flag.
            tags: Tags.
            mode: Mode.
            x: X.
        """

    assert check_arguments(f, {"n": "5", "flag": "true", "tags": "one", "x": 2}) == {
        "n": 5, "flag": True, "tags": ["one"], "x": 2.0,
    }
    assert check_arguments(f, {"n": 3.0, "tags": None}) == {"n": 3, "tags": None}
    for bad, pattern in [
        ({}, "missing required argument 'n'"),
        ({"n": 1, "zz": 2}, r"unknown argument\(s\) 'zz'; valid arguments: n, flag, tags, mode, x"),
        ({"n": True}, "'n' must be an integer"),
        ({"n": "1.5"}, "'n' must be an integer"),
        ({"n": 1, "mode": "c"}, "must be one of 'a', 'b'"),
        ({"n": 1, "tags": [1]}, r"'tags\.0' must be a string"),
        ({"n": None}, "'n' must be an integer"),
        ({"n": float("inf")}, "'n' must be a finite integer"),
        ({"n": 10**30, "x": float("nan")}, "'x' must be a finite number"),
        ({"n": 1, "flag": "maybe"}, "must be true or false"),
    ]:
        with pytest.raises(ValidationError, match=pattern):
            check_arguments(f, bad)
    with pytest.raises(ValidationError, match="must be a JSON object"):
        check_arguments(f, ["n"])


def test_call_tool_refuses_unknown_tools_and_arguments(ctx: ToolContext) -> None:
    with pytest.raises(ValidationError, match=r"unknown tool 'nope'; available tools: .*deep_recall"):
        call_tool("nope", ctx, {})
    with pytest.raises(ValidationError, match="valid arguments: query, k, tier"):
        call_tool("memory_search", ctx, {"q": "teal"})
    with pytest.raises(ValidationError, match="'k' must be greater than or equal to 1"):
        call_tool("memory_search", ctx, {"query": "teal", "k": 0})
    with pytest.raises(ValidationError, match="'k' must be less than or equal to 1000"):
        call_tool("memory_search", ctx, {"query": "teal", "k": 10**30})
    with pytest.raises(ValidationError, match="'line' must be less than or equal to"):
        call_tool("memory_insert", ctx, {"label": "human", "text": "x", "line": 2**70})
    with pytest.raises(ValidationError, match="ISO 8601"):
        call_tool("conversation_search", ctx, {"query": "teal", "since": "last tuesday"})


# --- each tool against a real store --------------------------------------------------------


def test_search_tools_return_bounded_json(ctx: ToolContext) -> None:
    out = call_tool("memory_search", ctx, {"query": "favourite colour teal", "k": 3})
    assert out["results"][0]["text"] == "My favourite colour is teal."
    assert all(r["agent_id"] == "default" for r in out["results"] if r["tier"] == "recall")
    json.dumps(out)
    arch = call_tool("memory_search", ctx, {"query": "deploy key", "tier": "archival"})
    assert {r["tier"] for r in arch["results"]} == {"archival"}
    conv = call_tool("conversation_search", ctx, {"query": "teal", "session_id": "s1", "role": "assistant",
                                                  "since": "2000-01-01", "until": "2999-01-01T00:00:00Z"})
    assert [r["text"] for r in conv["results"]] == ["Noted, teal it is."]
    tagged = call_tool("archival_search", ctx, {"query": "invoice paid", "tags": ["finance"]})
    assert [r["tags"] for r in tagged["results"]] == [["finance"]]


def test_recall_is_scoped_to_the_agent_unless_store_wide(mem: MemoryManager) -> None:
    scoped = call_tool("memory_grep", ToolContext(mem), {"pattern": "secret plan"})
    assert scoped["matches"] == []
    wide = call_tool("memory_grep", ToolContext(mem, agent_scoped=False), {"pattern": "secret plan"})
    assert [m["agent_id"] for m in wide["matches"]] == ["other"]


def test_grep_and_peek(ctx: ToolContext) -> None:
    g = call_tool("memory_grep", ctx, {"pattern": r"(?i)invoice|TEAL", "tier": "all"})
    assert call_tool("memory_grep", ctx, {"pattern": "TEAL"})["matches"] == []  # case matters by default
    assert len(call_tool("memory_grep", ctx, {"pattern": "(?i)invoice|teal", "limit": 2})["matches"]) == 2
    assert {m["tier"] for m in g["matches"]} == {"recall", "archival"}
    with pytest.raises(QueryError, match="invalid regular expression"):
        call_tool("memory_grep", ctx, {"pattern": "("})
    assert all(m["snippet"] for m in g["matches"])
    first = g["matches"][0]["id"]
    peek = call_tool("memory_peek", ctx, {"message_id": first, "before": 0, "after": 1})
    assert peek["messages"][0]["id"] == first and len(peek["messages"]) == 2
    with pytest.raises(NotFoundError):
        call_tool("memory_peek", ctx, {"message_id": 10_000})


def test_write_tools_edit_blocks_and_archival(ctx: ToolContext, mem: MemoryManager) -> None:
    assert call_tool("core_memory_append", ctx, {"label": "human", "text": "Likes teal"})["value"] == "Name: Ada\nLikes teal"
    assert call_tool("core_memory_replace", ctx, {"label": "human", "old": "Ada", "new": "Ada L."})["value"].startswith("Name: Ada L.")
    assert call_tool("memory_insert", ctx, {"label": "human", "text": "top", "line": 0})["value"].startswith("top\n")
    out = call_tool("memory_rethink", ctx, {"label": "human", "new_value": "Name: Ada"})
    assert out == {"label": "human", "value": "Name: Ada", "chars": 9, "limit": 200}
    edits = {(e.action, e.actor) for e in mem.blocks("default").history("human")}
    assert ("create", "system") in edits and ("rethink", "agent") in edits
    with pytest.raises(BlockLimitError):
        call_tool("core_memory_append", ctx, {"label": "human", "text": "x" * 300})
    with pytest.raises(ReadOnlyBlockError):
        call_tool("memory_rethink", ctx, {"label": "rules", "new_value": "anything goes"})
    with pytest.raises(NotFoundError, match="existing blocks: human, rules"):
        call_tool("core_memory_replace", ctx, {"label": "nope", "old": "a", "new": "b"})
    assert mem.blocks("default").get("human").value == "Name: Ada"  # refused edits changed nothing
    stored = call_tool("archival_insert", ctx, {"text": "Standup moved to 10:00.", "tags": ["team"]})
    assert mem.archival.get(stored["id"]).tags == ("team",)
    with pytest.raises(ValidationError, match="non-empty"):
        call_tool("archival_insert", ctx, {"text": "   "})
    # a block a model writes first is created (a fresh store has none)
    assert call_tool("core_memory_append", ctx, {"label": "todo", "text": "ship"})["value"] == "ship"
    assert mem.blocks("default").get("todo").limit == DEFAULTS.block_limit


def test_results_are_bounded(mem: MemoryManager) -> None:
    for i in range(30):
        mem.recall.append(f"teal report {i} " + "lorem ipsum " * 300, session_id="big")
    ctx = ToolContext(mem, max_result_chars=5000)
    out = call_tool("memory_search", ctx, {"query": "teal report", "k": 30})
    assert len(json.dumps(out)) <= 5000 and out["truncated"] is True
    assert all(len(r["text"]) <= HIT_TEXT_CHARS + 40 for r in out["results"])
    assert bound("x" * 100, 50).endswith("more characters]")


def test_deep_recall_runs_the_rlm_or_says_what_is_missing(ctx: ToolContext, mem: MemoryManager) -> None:
    with pytest.raises(ConfigError, match="deep_recall needs a root model"):
        call_tool("deep_recall", ctx, {"question": "What colour?"})
    root = ScriptedLM(["```repl\nprint(grep('teal'))\n```", "FINAL(teal)"])
    out = call_tool("deep_recall", ToolContext(mem, root=root), {"question": "What colour do I like?"})
    assert out["answer"] == "teal" and out["complete"] is True
    assert "teal" in root.requests[1].prompt  # the model saw its grep output


def test_bound_tools_are_plain_callables(ctx: ToolContext) -> None:
    fns = bound_tools(ctx, ["memory_search", "memory_peek"])
    assert fns["memory_search"]("teal", 2)["results"]
    assert fns["memory_search"].__doc__ == TOOLS["memory_search"].__doc__
    with pytest.raises(ValidationError, match="at most 3 positional"):
        fns["memory_peek"](1, 2, 3, 4)
