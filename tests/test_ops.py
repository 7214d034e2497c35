"""One definition per memory operation: every surface shows the same operations with the same
defaults, arguments from outside are refused clearly, and the operations the surfaces did not
have before (log, forget, block edits on a fresh store, get-or-create) work end to end.

Real stores (SQLite + embedded Chroma in a temporary directory) with the deterministic
``HashEmbedder``; nothing here measures retrieval quality.
"""

from __future__ import annotations

import ast
import inspect
import io
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agents.cli.main import build_parser, main
from agents.integrations.letta import letta_tool_source
from agents.repl.binding import _VIEWS, _model_facing, bind_memory
from agents.server.http import ServerThread
from agents.server.operations import OPERATIONS
from agents.tools.builtin import TOOLS, ToolContext, call_tool
from memory.errors import ValidationError
from memory.manager import MemoryManager
from memory.ops.registry import OPERATIONS as OPS
from memory.ops.registry import call, view
from memory.ops.values import DEFAULTS, OpContext, parse_when
from memory.vectors.embeddings import HashEmbedder


@pytest.fixture()
def mem(tmp_path: Path) -> Iterator[MemoryManager]:
    m = MemoryManager.open(tmp_path / "store", embedder=HashEmbedder(), background_embed=False)
    for i in range(4):
        m.recall.append(f"teal note {i}", session_id="s1")
    m.recall.append("other agent teal", agent_id="other", session_id="o1")
    for i in range(4):
        m.archival.insert(f"teal chunk {i}")
    yield m
    m.close()


def _op_defaults(op: Any) -> dict[str, Any]:
    return {p.name: p.default for p in list(inspect.signature(op).parameters.values())[1:]
            if p.default is not inspect.Parameter.empty}  # fmt: skip


def _schema_defaults(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v["default"] for k, v in schema["input_schema"]["properties"].items() if "default" in v}


# --- one definition, every surface ---------------------------------------------------------


def test_every_surface_shows_the_operations_defaults() -> None:
    surfaces: dict[str, list[tuple[Any, dict[str, Any]]]] = {
        "tools/MCP": [(t.view.op, _schema_defaults(t.view.schema())) for t in TOOLS.values()],
        "HTTP": [(o.view.op, _schema_defaults(o.view.schema())) for o in OPERATIONS],
        "REPL": [(v.op, {p.name: p.default for p in inspect.signature(
            _model_facing(n, lambda *a: None)).parameters.values()
            if p.default is not inspect.Parameter.empty}) for n, v in _VIEWS.items()],
    }  # fmt: skip
    letta = []
    for name, tool in TOOLS.items():
        fn = ast.parse(letta_tool_source(name)).body[0]
        assert isinstance(fn, ast.FunctionDef)
        args = fn.args.args
        shown = {a.arg: ast.literal_eval(d) for a, d in zip(args[len(args) - len(fn.args.defaults):],
                                                             fn.args.defaults, strict=True)}  # fmt: skip
        letta.append((tool.view.op, {k: v for k, v in shown.items() if v is not None}))
    surfaces["Letta"] = letta
    for surface, entries in surfaces.items():
        for op, shown in entries:
            own = _op_defaults(op)
            for param, value in shown.items():
                assert value == own[param], f"{surface}: {op.__name__}({param}) shows {value!r}, not {own[param]!r}"
    # the CLI's flags
    sub = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for command, op, flags in (("search", "search", {"k": "k", "tier": "tier", "mode": "mode"}),
                               ("grep", "grep", {"tier": "tier", "limit": "limit", "ignore_case": "ignore_case"}),
                               ("peek", "peek", {"before": "before", "after": "after"}),
                               ("log", "log", {"role": "role"})):  # fmt: skip
        parsed = {a.dest: a.default for a in sub[command]._actions}
        for dest, param in flags.items():
            assert parsed[dest] == _op_defaults(OPS[op])[param], f"rlmem {command} --{dest}"


def test_the_surfaces_cover_the_operations() -> None:
    ops_of = lambda views: {v.op.__name__ for v in views}  # noqa: E731
    tools = ops_of(t.view for t in TOOLS.values())
    http = ops_of(o.view for o in OPERATIONS)
    repl = ops_of(_VIEWS.values())
    reads = {"search", "grep", "peek"}
    assert reads | {"log", "remember", "sessions", "blocks_append", "blocks_set"} <= tools
    assert set(OPS) - {"note", "blocks_delete"} <= http  # note is blocks_append; no DELETE route
    assert reads | {"remember", "note"} <= repl
    cli = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert {"search", "grep", "peek", "sessions", "log", "forget", "blocks"} <= cli


def test_one_date_parser() -> None:
    assert parse_when("2024-05-01").isoformat() == "2024-05-01T00:00:00+00:00"  # type: ignore[union-attr]
    assert parse_when("2024-05-01T10:00Z").isoformat() == "2024-05-01T10:00:00+00:00"  # type: ignore[union-attr]
    assert parse_when("") is None and parse_when(None) is None
    with pytest.raises(ValidationError, match="ISO 8601"):
        parse_when("last tuesday")


# --- hostile arguments ---------------------------------------------------------------------


@pytest.mark.parametrize("name,args,pattern", [
    ("grep", {"pattern": "x", "limit": 10**30}, "'limit' must be less than or equal to 1000"),
    ("search", {"query": "x", "k": math.nan}, "'k' must be a finite integer"),
    ("search", {"query": "x", "k": math.inf}, "'k' must be a finite integer"),
    ("search", {"query": "x", "k": True}, "'k' must be an integer"),
    ("log", {"content": "x", "tokens": 2**70}, "'tokens' must be less than or equal to"),
    ("forget", {"reason": "r", "ids": ["1; DROP"]}, r"'ids\.0' must be an integer"),
    ("forget", {"reason": "r", "ids": [2**70]}, r"'ids\.0' must be less than or equal to"),
    ("forget", {"reason": "r"}, "refusing to forget everything"),
    ("peek", {"message_id": -1}, "'message_id' must be greater than or equal to 1"),
    ("blocks_set", {"label": "a", "value": "v", "limit": 2**70}, "'limit' must be less than or equal to"),
    ("search", {"query": "   "}, "'query' must be a non-empty string"),
    ("grep", {"pattern": "x", "since": "yesterday"}, "'since' must be an ISO 8601 date"),
])  # fmt: skip
def test_bad_arguments_are_validation_errors(mem: MemoryManager, name: str, args: dict[str, Any],
                                             pattern: str) -> None:
    before = mem.recall.count()
    with pytest.raises(ValidationError, match=pattern):
        call(name, OpContext(mem), args)
    assert mem.recall.count() == before


def test_http_answers_400_for_hostile_numbers(mem: MemoryManager) -> None:
    token = "t-" + "0" * 40
    with ServerThread(mem, token=token) as server, httpx.Client(
        base_url=server.url, trust_env=False, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        for path, body in (("/grep", {"pattern": "x", "limit": 10**30}),
                           ("/messages", {"content": "x", "tokens": 2**70}),
                           ("/forget", {"reason": "r", "ids": ["1; DROP"]}),
                           ("/search", {"query": "x", "k": 1e308})):  # fmt: skip
            r = client.post(path, json=body)
            assert r.status_code == 400, (path, r.text)
            assert r.json()["error"]["type"] == "invalid_request"
        r = client.post("/search", content=b'{"query": "x", "k": NaN}', headers={"content-type": "application/json"})
        assert r.status_code == 400
    assert mem.recall.count() == 5


# --- limits and the new operations ---------------------------------------------------------


def test_grep_limit_counts_every_tier(mem: MemoryManager) -> None:
    ctx = OpContext(mem, agent_scoped=False)
    assert len(call("grep", ctx, {"pattern": "teal", "tier": "all", "limit": 3})) == 3
    assert len(call("grep", ctx, {"pattern": "teal", "tier": "all", "limit": 6})) == 6
    assert {h.tier for h in call("grep", ctx, {"pattern": "teal", "limit": 9})} == {"recall", "archival"}


def test_forget_is_a_dry_run_until_told(mem: MemoryManager) -> None:
    ctx = OpContext(mem, actor="tester")
    dry = call("forget", ctx, {"reason": "cleanup", "pattern": r"note [12]"})
    assert dry.dry_run and len(dry.ids) == 2 and mem.recall.count() == 5 and mem.recall.forget_log() == []
    done = call("forget", ctx, {"reason": "cleanup", "pattern": r"note [12]", "dry_run": False})
    assert done.ids == dry.ids and mem.recall.count() == 3
    audit = mem.recall.forget_log()
    assert audit[-1]["actor"] == "tester" and audit[-1]["message_ids"] == dry.ids
    # scoped to the context's agent: the other agent's message is never selected
    assert call("forget", ctx, {"reason": "r", "session_id": "o1"}).ids == []
    every = call("forget", ctx, {"reason": "r", "since": "2000-01-01"})
    assert len(every.ids) == 2


def test_blocks_on_a_fresh_store(mem: MemoryManager) -> None:
    ctx = OpContext(mem, agent_id="fresh", actor="tester")
    assert call("blocks_list", ctx) == []
    assert call("note", ctx, {"label": "human", "text": "Name: Ada"}).value == "Name: Ada"
    assert call("blocks_rethink", ctx, {"label": "persona", "new_value": "Helpful."}).limit == DEFAULTS.block_limit
    b = call("blocks_set", ctx, {"label": "human", "value": "Name: Ada L.", "limit": 50})
    assert (b.value, b.limit) == ("Name: Ada L.", 50)  # the limit of an existing block changes too
    b = call("blocks_set", ctx, {"label": "human", "value": "x" * 80, "limit": 100})
    assert (len(b.value), b.limit) == (80, 100)  # raised before the longer value is written
    assert call("blocks_edit", ctx, {"label": "human", "read_only": True}).read_only
    call("blocks_edit", ctx, {"label": "human", "read_only": False})
    call("blocks_delete", ctx, {"label": "human"})
    assert [b.label for b in call("blocks_list", ctx)] == ["persona"]
    assert call("blocks_history", ctx, {"label": "human"})[0].action == "delete"
    wm = mem.blocks("fresh")
    assert wm.ensure("todo", "first").value == "first"
    assert wm.ensure("todo", "second").value == "first"  # runs twice, changes nothing


def test_memory_log_tool_and_the_repl_agree(mem: MemoryManager) -> None:
    ctx = ToolContext(mem, agent_id="default", actor="mcp")
    out = call_tool("memory_log", ctx, {"content": "logged", "session_id": "s9"})
    assert mem.recall.get(out["id"]).session_id == "s9"
    b = bind_memory(mem)
    assert len(b.grep("teal", limit=3)) == 3
    with pytest.raises(ValidationError, match="'limit' must be less than or equal to 1000"):
        b.grep("teal", limit=10**30)


def test_cli_forget_blocks_and_grep_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLMEM_STORE", str(tmp_path / "cli"))
    monkeypatch.setenv("RLMEM_BACKGROUND_EMBED", "false")

    def rlmem(*argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        return main(list(argv), stdout=out, stderr=err), out.getvalue(), err.getvalue()

    assert rlmem("init")[0] == 0
    for i in range(3):
        assert rlmem("log", f"secret {i}", "--session", "s1")[0] == 0
    rc, _, err = rlmem("log", "  ")
    assert rc == 2 and "TEXT" in err  # an empty message is refused, nothing stored
    rc, out, _ = rlmem("--json", "grep", "secret", "--tier", "all", "--limit", "2")
    assert rc == 0 and len(json.loads(out)) == 2
    rc, out, _ = rlmem("forget", "--pattern", "secret [01]", "--reason", "test")
    assert rc == 0 and "would forget 2" in out and "--yes" in out
    rc, out, _ = rlmem("--json", "forget", "--pattern", "secret [01]", "--reason", "test", "--yes")
    assert json.loads(out)["deleted"] == 2
    rc, out, _ = rlmem("--json", "sessions")
    assert json.loads(out)[0]["message_count"] == 1
    rc, _, err = rlmem("forget", "--id", "1", "--reason", " ")
    assert rc == 2 and "--reason" in err
    assert rlmem("blocks", "append", "human", "Name: Sam")[0] == 0  # fresh store: created
    assert rlmem("blocks", "set", "human", "Name: Sam", "--limit", "20")[0] == 0
    rc, out, _ = rlmem("--json", "blocks", "show", "human")
    assert json.loads(out)["limit"] == 20
    assert rlmem("blocks", "edit", "human", "--limit", "30", "--description", "the user")[0] == 0
    assert rlmem("blocks", "replace", "human", "Sam", "Sam K.")[0] == 0
    rc, out, _ = rlmem("--json", "blocks", "show", "human")
    assert (json.loads(out)["limit"], json.loads(out)["value"]) == (30, "Name: Sam K.")
    assert rlmem("blocks", "delete", "human")[0] == 0
    rc, _, err = rlmem("blocks", "show", "human")
    assert rc == 2 and "no block" in err
    rc, out, _ = rlmem("peek", "3", "--before", "0")
    assert rc == 0 and "> #3" in out


def test_view_refuses_parameters_the_operation_lacks() -> None:
    with pytest.raises(TypeError, match="not parameters of search"):
        view("bad", "search", ("query", "nope"))


def test_agent_open_or_create_runs_twice(mem: MemoryManager) -> None:
    from agents.agent.core import Agent
    from rlm_core.lm import ScriptedLM

    first = Agent.open_or_create("helper", mem, ScriptedLM(default="hi"), persona="Kind.")
    again = Agent.open_or_create("helper", mem, ScriptedLM(default="hi"), persona="Other.")
    assert again.session_id == first.session_id
    assert mem.blocks("helper").get("persona").value == "Kind."  # options apply only when new
    with pytest.raises(ValidationError, match="context_budget_tokens"):
        Agent.open_or_create("fresh", mem, ScriptedLM(), context_budget_tokens=1)  # the real error
